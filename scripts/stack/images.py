"""What each image of docker-compose.yaml is here: its base image's settings, or a local stand-in.

The project builds two images (docker/airflow, docker/mlflow): their Dockerfiles are read for
files, environment and entrypoint, and what their base images add is written down below. The
images the project pulls (PostgreSQL, MinIO, its client, Redis) cannot run without Docker; each
has a stand-in that does the same job on this machine (README: "What the twin runs differently").
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BaseImage:
    """Settings a base image gives every container, which no project file states.

    :param env: its ENV.
    :param command_prefix: its entrypoint's rule: prefix a command whose first word is not in
        ``passthrough`` (the official Airflow image runs ``airflow <command>``).
    :param listens: container port -> the setting that moves it, per command word: a container
        has ports of its own, processes on one machine share them.
    """

    env: dict[str, str] = field(default_factory=dict)
    command_prefix: tuple[str, ...] = ()
    passthrough: frozenset[str] = frozenset()
    listens: dict[str, dict[int, str]] = field(default_factory=dict)


AIRFLOW_BASE = BaseImage(
    env={"AIRFLOW_HOME": "/opt/airflow", "AIRFLOW_USER_HOME_DIR": "/home/airflow"},
    command_prefix=("airflow",),
    passthrough=frozenset({"bash", "python", "sh"}),
    listens={
        "api-server": {8080: "AIRFLOW__API__PORT"},
        "scheduler": {8974: "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
                      8793: "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"},
        "triggerer": {8794: "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"},
        "celery": {8793: "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"},
    },
)
# python:3.11-slim adds nothing the project's services rely on.
PYTHON_BASE = BaseImage()


def base_image(name: str) -> BaseImage:
    if name.startswith("apache/airflow:"):
        return AIRFLOW_BASE
    if name.startswith("python:"):
        return PYTHON_BASE
    raise KeyError(f"base image {name!r}: the stack runner does not know what it provides (scripts/stack/images.py)")


# Pulled images and what stands in for each (scripts/stack/standins.py implements them).
STANDINS = {
    "postgres": "postgres",
    "quay.io/minio/minio": "s3",
    "quay.io/minio/mc": "bucket",
    "redis": "redis",
}


def standin_of(image: str) -> str | None:
    """The stand-in kind for a pulled image (``postgres:15-bookworm`` -> ``postgres``), or None."""
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return STANDINS.get(repository)
