"""The compose stack without Docker: every service of docker-compose.yaml as a local process.

``python -m scripts.stack up`` (``make stack``) resolves docker-compose.yaml with Compose v2
(``docker-compose config``), translates each service's command, environment and health check
from container terms (service host names, container ports and paths) to this machine's, and
starts it in its own process group; ``down`` (``make stack-down``) stops every process it
started. Modules: ``compose`` reads the resolved file and the project's Dockerfiles, ``images``
says what each image's base provides and what stands in for images that cannot run here,
``translate`` maps names, ports and paths, ``postgres`` runs the private PostgreSQL cluster,
``processes`` starts, checks and stops processes, ``runner`` orders the services and keeps the
state, ``envfile`` makes an ``.env`` of generated secrets.
"""
