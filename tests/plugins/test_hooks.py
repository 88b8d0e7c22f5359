from __future__ import annotations

import base64
import json
import os

import pytest
from airflow.sdk.exceptions import AirflowException

from mlflow_governance.hooks import MlflowHook


def test_connection_host_is_the_tracking_uri(mlflow_connection):
    hook = MlflowHook()
    assert hook.tracking_uri == mlflow_connection["tracking_uri"]
    assert hook.artifact_location == mlflow_connection["artifact_location"]
    client = hook.get_conn()
    assert client.tracking_uri == mlflow_connection["tracking_uri"]
    client.search_experiments()  # a real store answers


def test_host_without_scheme_is_completed_and_credentials_reach_mlflow(monkeypatch):
    from mlflow.tracking.request_header.registry import resolve_request_headers

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_SERVER",
        json.dumps({"conn_type": "generic", "host": "mlflow", "port": 5000, "login": "bot", "password": "s3cret"}),
    )
    hook = MlflowHook(mlflow_conn_id="mlflow_server")
    assert hook.tracking_uri == "http://mlflow:5000"
    hook.get_conn()
    with hook.identity():
        # What MLflow's http_request puts on every request of the block.
        assert resolve_request_headers()["Authorization"] == "Basic " + base64.b64encode(b"bot:s3cret").decode()
    assert "Authorization" not in resolve_request_headers()
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ and "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_an_identity_in_the_process_environment_is_refused(monkeypatch):
    """MLflow sends MLFLOW_TRACKING_USERNAME/PASSWORD over any header: it would replace the connection's login."""
    from mlflow_governance.identity import AmbientCredentialsError

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SERVER", json.dumps({"conn_type": "http", "host": "http://mlflow:5000", "login": "bot", "password": "pw"}))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone-else")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "their-password")
    hook = MlflowHook(mlflow_conn_id="mlflow_server")
    with pytest.raises(AmbientCredentialsError, match="MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD set.*'mlflow_server'"):
        with hook.identity():
            pass
    with pytest.raises(AmbientCredentialsError):
        hook.get_conn().search_experiments()


def test_falls_back_to_the_environment(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert MlflowHook().tracking_uri == "http://elsewhere:5000"


def test_no_connection_and_no_environment_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(AirflowException, match="No Airflow connection 'mlflow_default' and MLFLOW_TRACKING_URI"):
        MlflowHook().tracking_uri
