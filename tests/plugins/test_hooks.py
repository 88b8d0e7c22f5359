from __future__ import annotations

import json

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
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_SERVER",
        json.dumps({"conn_type": "generic", "host": "mlflow", "port": 5000, "login": "bot", "password": "s3cret"}),
    )
    hook = MlflowHook(mlflow_conn_id="mlflow_server")
    assert hook.tracking_uri == "http://mlflow:5000"
    hook.get_conn()
    import os

    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("bot", "s3cret")


def test_falls_back_to_the_environment(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert MlflowHook().tracking_uri == "http://elsewhere:5000"


def test_no_connection_and_no_environment_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(AirflowException, match="No Airflow connection 'mlflow_default' and MLFLOW_TRACKING_URI"):
        MlflowHook().tracking_uri
