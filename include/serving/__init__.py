"""The model server: serves ``models:/<name>@champion`` and follows the registry (issue #16).

One module per concern:

- ``settings``: the environment variables (model, tracking URI, poll interval, canary share, mode);
- ``loading``: load one version through MLflow's pyfunc loader, check it on its input example;
- ``recommendations``: every known user's top list, computed once per loaded version;
- ``following``: the background poll of the aliases and the atomic swap;
- ``routing``: sticky canary / shadow assignment per user;
- ``answering``: /recommend and /score on the routed version, counted per variant;
- ``metrics``: the Prometheus series; ``failures``: a failed load's log line, metric and audit event;
- ``app``: the FastAPI routes; ``__main__``: ``python -m include.serving`` (uvicorn).

Nothing here imports Airflow; the server needs the registry (and the audit table) only.
"""
