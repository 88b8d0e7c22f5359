"""Read the model server's /metrics and record each served version's figures in the registry.

The server is found through the Airflow connection ``model_server`` (e.g.
``AIRFLOW_CONN_MODEL_SERVER=http://model-server:8000``). Without it there is no server to read:
the task skips and says so. The figures go on the versions as the governance identity, the one
that writes the other evidence reviewers and the canary rule rely on.

Kept free of MLflow and the include/ packages at import time: DAG files import it at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException, AirflowSkipException

from mlflow_governance.common import GOVERNANCE_CONN_ID, GovernanceStepMixin
from mlflow_governance.hooks import runs_as_connection_identity

__all__ = ["MODEL_SERVER_CONN_ID", "RecordServingFiguresOperator", "fetch_metrics", "server_url"]

MODEL_SERVER_CONN_ID = "model_server"


def server_url(conn_id: str) -> str | None:
    """The server's base URL from an Airflow connection; None when the connection is not defined.

    The host may be a whole URL (``http://model-server:8000``); otherwise scheme (the schema
    field, default http), host and port make it, as the MLflow connections do.
    """
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise AirflowFailException(f"Airflow connection {conn_id!r} has no host (the model server's URL)")
    if "://" in host:
        return host
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{host}{port}"


def fetch_metrics(url: str, timeout: float) -> str:
    """GET ``<url>/metrics``; an unreachable server or an error status raises (the task retries)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise AirflowException(f"{url}/metrics answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise AirflowException(f"model server {url} is unreachable: {exc}") from exc


class RecordServingFiguresOperator(GovernanceStepMixin, BaseOperator):
    """Record requests, error rate, p50/p95 latency and canary share on every served version.

    Returns one entry per version recorded (model, version, serving run, totals, this window).

    :param model_name: only this model's versions (empty: every model the server reports).
    :param server_conn_id: the Airflow connection of the model server.
    :param mlflow_conn_id: the MLflow identity the figures are written as.
    :param timeout: seconds to wait for /metrics.
    """

    template_fields: Sequence[str] = ("model_name",)

    def __init__(
        self,
        *,
        model_name: str | None = None,
        server_conn_id: str = MODEL_SERVER_CONN_ID,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.server_conn_id = server_conn_id
        self.mlflow_conn_id = mlflow_conn_id
        self.timeout = timeout

    @runs_as_connection_identity
    def execute(self, context: Context) -> list[dict[str, Any]]:
        from include.governance.serving_figures import ServingMetricsError
        from include.governance.serving_record import record_serving_figures

        url = server_url(self.server_conn_id)
        if url is None:
            raise AirflowSkipException(
                f"No Airflow connection {self.server_conn_id!r}: no model server to read figures from "
                f"(define it, e.g. AIRFLOW_CONN_{self.server_conn_id.upper()}=http://model-server:8000)"
            )
        text = fetch_metrics(url, self.timeout)
        try:
            recorded = record_serving_figures(
                self.hook.get_conn(), text, server_url=url,
                model_name=self.model_name or None, artifact_location=self.hook.artifact_location,
            )
        except ServingMetricsError as exc:
            raise AirflowFailException(f"{url}/metrics: {exc}") from exc
        for entry in recorded:
            self.log.info("%s v%s: %s (this window: %s)", entry.model_name, entry.version, entry.totals, entry.window)
        if not recorded:
            self.log.info("%s serves no version of %s yet: nothing recorded", url, self.model_name or "any model")
        return [entry.as_dict() for entry in recorded]
