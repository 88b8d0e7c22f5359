"""The links a message carries: the Airflow run, its Required Actions page, the MLflow version page.

Base URLs come from configuration, read when a message is built:
- Airflow: ``MOVIE_RECOMMENDER_AIRFLOW_UI_URL`` (where reviewers' browsers reach the UI, which a
  deployment behind a port mapping or a proxy knows and Airflow does not); unset, ``[api] base_url``
  (``AIRFLOW__API__BASE_URL``); unset too, ``http://localhost:<[api] port>``.
- MLflow: ``MOVIE_RECOMMENDER_MLFLOW_UI_URL``; unset, the tracking URI when it is http(s). A
  local store (sqlite:, a path) has no UI address, so the message carries no MLflow link.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from urllib.parse import quote

MLFLOW_UI_URL_ENV = "MOVIE_RECOMMENDER_MLFLOW_UI_URL"
AIRFLOW_UI_URL_ENV = "MOVIE_RECOMMENDER_AIRFLOW_UI_URL"


@dataclass(frozen=True)
class LinkBases:
    """Where the UIs are; None: that UI has no known address and its links are left out."""

    airflow: str | None
    mlflow: str | None

    def airflow_run(self, dag_id: str | None, run_id: str | None) -> str | None:
        if not (self.airflow and dag_id and run_id):
            return None
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def required_actions(self, dag_id: str | None, run_id: str | None) -> str | None:
        run = self.airflow_run(dag_id, run_id)
        return f"{run}/required_actions" if run else None

    def mlflow_version(self, model_name: str, version: str) -> str | None:
        if not (self.mlflow and model_name and version):
            return None
        return f"{self.mlflow}/#/models/{quote(model_name, safe='')}/versions/{quote(str(version), safe='')}"


def configured_bases(tracking_uri: str | None = None, environ: dict[str, str] | None = None) -> LinkBases:
    """The base URLs from configuration (see the module docstring)."""
    env = os.environ if environ is None else environ
    mlflow = env.get(MLFLOW_UI_URL_ENV) or None
    if mlflow is None and tracking_uri and tracking_uri.split(":", 1)[0] in ("http", "https"):
        mlflow = tracking_uri
    airflow = env.get(AIRFLOW_UI_URL_ENV) or _airflow_base_url()
    return LinkBases(airflow=_strip(airflow), mlflow=_strip(mlflow))


def _airflow_base_url() -> str | None:
    if importlib.util.find_spec("airflow") is None:
        return None
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None)
    if base:
        return base
    return f"http://localhost:{conf.get('api', 'port', fallback='8080')}"


def _strip(url: str | None) -> str | None:
    return url.rstrip("/") if url else None
