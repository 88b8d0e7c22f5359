"""MlflowHook: the one place an MlflowClient is built from an Airflow connection."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

if TYPE_CHECKING:
    from mlflow import MlflowClient


class MlflowHook(BaseHook):
    """Build an ``MlflowClient`` from the ``mlflow_default`` connection.

    The connection's host is the tracking URI (``http://mlflow:5000``, ``sqlite:////abs/mlflow.db``);
    a host without a scheme is completed from the connection's schema (default ``http``) and port.
    Login and password are passed to MLflow's basic auth. Extras: ``registry_uri`` and
    ``artifact_location`` (where new experiments keep their artifacts). Without the connection the
    hook falls back to the ``MLFLOW_TRACKING_URI`` environment variable.

    :param mlflow_conn_id: the Airflow connection id.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "generic"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def _settings(self) -> dict[str, Any]:
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                raise AirflowException(
                    f"No Airflow connection {self.mlflow_conn_id!r} and MLFLOW_TRACKING_URI is not "
                    "set: tell the project where MLflow is"
                ) from None
            return {"tracking_uri": uri, "registry_uri": None, "artifact_location": None, "login": None, "password": None}
        host = (conn.host or "").strip()
        if not host:
            raise AirflowException(f"Airflow connection {self.mlflow_conn_id!r} has no host (the tracking URI)")
        if "://" not in host:
            port = f":{conn.port}" if conn.port else ""
            host = f"{conn.schema or 'http'}://{host}{port}"
        extra = conn.extra_dejson or {}
        return {
            "tracking_uri": host,
            "registry_uri": extra.get("registry_uri"),
            "artifact_location": extra.get("artifact_location"),
            "login": conn.login,
            "password": conn.password,
        }

    @property
    def tracking_uri(self) -> str:
        return self._settings["tracking_uri"]

    @property
    def artifact_location(self) -> str | None:
        return self._settings["artifact_location"]

    def get_conn(self) -> "MlflowClient":
        """Return an MlflowClient for the connection (credentials set for MLflow's basic auth)."""
        from mlflow import MlflowClient

        settings = self._settings
        # MLflow reads basic-auth credentials only from the environment; the task process is
        # the client, so setting them here scopes them to this task.
        if settings["login"]:
            os.environ["MLFLOW_TRACKING_USERNAME"] = settings["login"]
            os.environ["MLFLOW_TRACKING_PASSWORD"] = settings["password"] or ""
        return MlflowClient(tracking_uri=settings["tracking_uri"], registry_uri=settings["registry_uri"])
