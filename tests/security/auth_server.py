"""A real ``mlflow server --app-name governance-auth`` with the two accounts Airflow logs in with.

As docker-compose.yaml runs it: PostgreSQL backend store and a PostgreSQL user store (fresh
databases), proxied artifacts, the ini file of the image, the admin from the environment, and
the training account (EDIT) and governance account (MANAGE on models) created by the same
provisioning code as the compose service mlflow-init.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from tests.services.conftest import _server_environment, fresh_database, start_service

ROOT = Path(__file__).resolve().parents[2]
AUTH_INI = ROOT / "docker" / "mlflow" / "basic_auth.ini"
ADMIN = ("mlflow-admin", "admin-password-for-tests")
TRAINER = ("airflow-trainer", "trainer-password-for-tests")
APPROVER = ("airflow-governance", "approver-password-for-tests")
# MLflow's basic-auth credentials in the environment: what the project must never rely on.
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextmanager
def governance_auth_server(work: Path) -> Iterator[SimpleNamespace]:
    """Start the server with trainer and approver provisioned; stop it and drop its databases after.

    :param work: a directory for its artifacts and log.
    """
    from mlflow_governance_auth.provision import GOVERNANCE_GRANTS, TRAINER_GRANTS, Account, AdminSession, provision

    started = time.monotonic()
    with fresh_database("mlflow_sec") as backend, fresh_database("mlflow_sec_auth") as auth_db:
        env = _server_environment(
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_AUTH_CONFIG_PATH=str(AUTH_INI),
            MLFLOW_AUTH_ADMIN_USERNAME=ADMIN[0],
            MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1],
            MLFLOW_AUTH_DATABASE_URI=auth_db.replace("postgresql://", "postgresql+psycopg2://", 1),
            MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret-key",
        )

        def build(port: int):
            command = [
                sys.executable, "-m", "mlflow", "server", "--app-name", "governance-auth",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", backend.replace("postgresql://", "postgresql+psycopg2://", 1),
                "--serve-artifacts", "--artifacts-destination", str(work / "artifacts"),
            ]
            return command, env, f"Uvicorn running on http://127.0.0.1:{port}"

        process, url = start_service("mlflow governance-auth server", build, work / "mlflow.log", "/health")
        try:
            print(f"\ngovernance-auth server start-up: {time.monotonic() - started:.1f} s (load {os.getloadavg()[0]:.1f})")
            provision(AdminSession(url, *ADMIN), [Account(*TRAINER, TRAINER_GRANTS), Account(*APPROVER, GOVERNANCE_GRANTS)])
            yield SimpleNamespace(url=url, log=work / "mlflow.log", auth_db=auth_db)
        finally:
            process.stop()


def connection_json(url: str, user: tuple[str, str], **extra) -> str:
    """An Airflow connection (AIRFLOW_CONN_* JSON) to the server as ``user``, as airflow-init writes it."""
    return json.dumps({"conn_type": "http", "host": url, "login": user[0], "password": user[1], **extra})


def permission(url: str, username: str, resource_type: str, resource_id: str) -> str:
    """The permission the server resolves for a user on a resource, asked as the admin."""
    import requests

    answer = requests.get(
        f"{url}/api/3.0/mlflow/users/permissions/get",
        params={"username": username, "resource_type": resource_type, "resource_id": resource_id},
        auth=ADMIN, timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["permission"]
