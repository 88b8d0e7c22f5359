"""The serving figures task: /metrics read over HTTP from a real exposition server, into a real store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from include.governance.registry import register_version
from mlflow_governance.serving_figures import RecordServingFiguresOperator, server_url
from tests.include.governance.serving_support import ServerMetrics
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_serving_figures"), "run_id": "manual__2026-12-02"}


@pytest.fixture
def metrics_server():
    """prometheus_client's own HTTP exposition of a ServerMetrics registry, on a free port."""
    from prometheus_client import start_http_server

    metrics = ServerMetrics()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    yield metrics, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def version(mlflow_connection, mlflow_client):
    experiment_id = mlflow_client.create_experiment("serving", artifact_location=mlflow_connection["artifact_location"])
    run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags={})
    return str(mv.version)


def record():
    return RecordServingFiguresOperator(task_id="record_serving_figures", model_name=MODEL).execute(CONTEXT)


def test_without_the_connection_the_task_skips_saying_what_to_define(mlflow_connection, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MODEL_SERVER", raising=False)
    with pytest.raises(AirflowSkipException, match="No Airflow connection 'model_server'.*AIRFLOW_CONN_MODEL_SERVER="):
        record()


def test_the_servers_figures_land_on_the_served_version(metrics_server, version, mlflow_client, monkeypatch):
    metrics, url = metrics_server
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_SERVER", url)
    metrics.serve(MODEL, version, "champion", 25, errors=1, seconds=0.003)
    (entry,) = record()
    assert (entry["model_name"], entry["version"]) == (MODEL, version)
    assert entry["totals"]["champion"]["requests"] == 25
    tags = mlflow_client.get_model_version(MODEL, version).tags
    assert tags["serving_champion_requests"] == "25" and float(tags["serving_champion_error_rate"]) == 0.04
    assert 0 < float(tags["serving_champion_p95_ms"]) <= 5.0


def test_an_unreachable_server_is_a_retryable_error_naming_it(mlflow_connection, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_SERVER", f"http://127.0.0.1:{port}")
    with pytest.raises(AirflowException, match=f"model server http://127.0.0.1:{port} is unreachable") as caught:
        record()
    assert not isinstance(caught.value, AirflowFailException)


def test_a_host_and_port_connection_makes_the_url(monkeypatch):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_MODEL_SERVER", json.dumps({"conn_type": "http", "host": "model-server", "port": 8000}))
    assert server_url("model_server") == "http://model-server:8000"
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_SERVER", json.dumps({"conn_type": "http", "host": ""}))
    with pytest.raises(AirflowFailException, match="'model_server' has no host"):
        server_url("model_server")


def test_the_dag_runs_every_15_minutes_one_run_at_a_time(parse_dag):
    dag = parse_dag("movie_recommender_serving_figures")
    assert dag.max_active_runs == 1 and [t.task_id for t in dag.tasks] == ["record_serving_figures"]
    assert dag.schedule == "*/15 * * * *"
