"""The monitor DAG under dag.test() on the sources the retrain DAG accepts beyond files:
an ``s3://`` prefix on an S3 server over HTTP (moto) and ``postgres://`` tables in a real PostgreSQL.

Same champions as tests/e2e/test_monitor_dag.py: one that knows nothing degrades and triggers
a retrain with the same source; one that knows every rating holds.
"""

from __future__ import annotations

import io
import json
from urllib.parse import urlsplit

import pandas as pd
import psycopg
import pytest

from include.governance import champion_monitor as cm
from include.recommender.loading import load_movielens
from include.recommender.warehouse import write_movielens
from tests.e2e.test_monitor_dag import MODEL, experiment_id, monitor_dag, monitoring_runs, run, triggered_runs  # noqa: F401
from tests.include.governance import monitor_support as ms
from tests.services.conftest import fresh_database

pytestmark = [pytest.mark.services, pytest.mark.e2e]

BUCKET = "monitor-data"
CONN_ID = "monitor_ratings"


@pytest.fixture(scope="module")
def small_data():
    return load_movielens(ms.SMALL_DATA)


@pytest.fixture
def s3_source(s3_server, small_data, monkeypatch) -> str:
    """ms.SMALL_DATA as MovieLens CSVs under an S3 prefix; the worker's environment points at the server."""
    s3 = s3_server.client()
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    for name, frame in (("ratings", small_data.ratings), ("movies", small_data.movies)):
        buffer = io.BytesIO()
        frame.to_csv(buffer, index=False)
        s3.put_object(Bucket=BUCKET, Key=f"small/{name}.csv", Body=buffer.getvalue())
    for key, value in s3_server.environment.items():
        monkeypatch.setenv(key, value)
    return f"s3://{BUCKET}/small"


@pytest.fixture
def postgres_source(small_data, monkeypatch) -> str:
    """ms.SMALL_DATA in the tables ml_ratings and ml_movies, behind an Airflow connection."""
    with fresh_database("monitor_ratings") as url:
        with psycopg.connect(url) as conn:
            write_movielens(conn, small_data, prefix="ml_")
            conn.commit()
        parts = urlsplit(url)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
            "conn_type": "postgres", "host": parts.hostname, "port": parts.port or 5432,
            "login": parts.username, "password": parts.password, "schema": parts.path.lstrip("/"),
        }))
        yield f"postgres://{CONN_ID}/ml_"


def test_an_s3_source_scores_the_champion_and_triggers_a_retrain_on_it(
    monitor_dag, mlflow_client, experiment_id, triggered_runs, s3_source  # noqa: F811
):
    version = ms.make_champion(mlflow_client, experiment_id, MODEL, ms.CoinModel(), ms.HIGH_VALIDATION)
    dag_run, states = run(monitor_dag, data_source=s3_source)
    assert str(dag_run.state) == "success", states
    assert states["score_champion"] == "success" and states["trigger_retrain"] == "success", states

    (monitoring,) = monitoring_runs(mlflow_client)
    assert monitoring.data.tags["data_source"] == s3_source
    assert monitoring.data.tags[cm.CHAMPION_VERSION_TAG] == version
    assert monitoring.data.tags[cm.STATUS_TAG] == "degraded"
    assert monitoring.data.metrics["n_ratings"] > 0
    (triggered,) = triggered_runs(dag_run.run_id)
    assert triggered["conf"] == {"model_name": MODEL, "data_source": s3_source}


def test_a_postgres_source_scores_the_champion_that_holds(
    monitor_dag, mlflow_client, experiment_id, triggered_runs, postgres_source, small_data  # noqa: F811
):
    version = ms.make_champion(mlflow_client, experiment_id, MODEL, ms.LookupModel(small_data.ratings), ms.MODEST_VALIDATION)
    dag_run, states = run(monitor_dag, data_source=postgres_source)
    assert str(dag_run.state) == "success", states
    assert states["no_retrain"] == "success" and states["trigger_retrain"] == "skipped", states

    (monitoring,) = monitoring_runs(mlflow_client)
    assert monitoring.data.tags["data_source"] == postgres_source
    assert monitoring.data.tags[cm.CHAMPION_VERSION_TAG] == version
    assert monitoring.data.tags[cm.STATUS_TAG] == "holds"
    # The same window of the same rows as the file source would give.
    window = pd.Timedelta(days=60).total_seconds()
    assert 0 < monitoring.data.metrics["n_ratings"] <= (small_data.ratings["timestamp"] >= small_data.ratings["timestamp"].max() - window).sum()
    assert triggered_runs(dag_run.run_id) == []


def test_an_unknown_postgres_connection_fails_scoring_with_its_name(monitor_dag, mlflow_client, experiment_id, capfd):  # noqa: F811
    ms.make_champion(mlflow_client, experiment_id, MODEL, ms.CoinModel(), ms.HIGH_VALIDATION)
    dag_run, states = run(monitor_dag, data_source="postgres://no_such_warehouse")
    assert states["score_champion"] == "failed", states
    assert states["assess"] == "upstream_failed"
    output = capfd.readouterr().out
    assert "Bad monitoring data" in output and "no_such_warehouse" in output
    assert monitoring_runs(mlflow_client) == []
