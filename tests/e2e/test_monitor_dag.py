"""End to end: the monitor DAG under dag.test() against a real MLflow store and Airflow's DB.

A champion that knows every rating holds; one that knows none, crowned with inflated validation
metrics, degrades and the DAG triggers the retrain DAG: a queued DagRun of it in the metadata DB,
with only the params it declares as conf and the reason as its note.
"""

from __future__ import annotations

import os

import pytest

from include.governance import champion_monitor as cm
from include.governance.audit import AuditLog, EventType

from tests.include.governance import monitor_support as ms

pytestmark = pytest.mark.e2e

MODEL = "movie_recommender"
RETRAIN = "movie_recommender_retrain"


@pytest.fixture
def monitor_dag(parse_dag):
    return parse_dag("movie_recommender_monitor")


@pytest.fixture
def experiment_id(mlflow_client, mlflow_connection):
    return mlflow_client.create_experiment("champions", artifact_location=mlflow_connection["artifact_location"])


@pytest.fixture
def triggered_runs(airflow_db):
    """Read the retrain DagRuns a monitor run triggered; delete them afterwards."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    def find(monitor_run_id: str) -> list[dict]:
        with create_session() as session:
            runs = session.scalars(
                select(DagRun).where(DagRun.dag_id == RETRAIN, DagRun.run_id == f"monitor__{monitor_run_id}")
            ).all()
            return [
                {"run_id": r.run_id, "run_type": str(r.run_type), "state": str(r.state), "conf": r.conf, "note": r.note}
                for r in runs
            ]

    yield find
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == RETRAIN, DagRun.run_id.like("monitor__%")))


def run(dag, **conf):
    dag_run = dag.test(run_conf={"model_name": MODEL, "data_source": ms.SMALL_DATA, "window_days": 60, **conf})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states


def monitoring_runs(client):
    experiment = client.get_experiment_by_name(cm.MONITORING_EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_a_degraded_champion_triggers_a_retrain(monitor_dag, mlflow_client, experiment_id, triggered_runs):
    version = ms.make_champion(mlflow_client, experiment_id, MODEL, ms.CoinModel(), ms.HIGH_VALIDATION)
    dag_run, states = run(monitor_dag)
    assert str(dag_run.state) == "success", states
    assert states == {"score_champion": "success", "assess": "success", "trigger_retrain": "success", "no_retrain": "skipped",
                      "verify_audit_trail": "success"}

    (monitoring,) = monitoring_runs(mlflow_client)
    tags = monitoring.data.tags
    assert tags[cm.CHAMPION_VERSION_TAG] == version
    assert tags[cm.STATUS_TAG] == "degraded"
    assert "accuracy" in tags[cm.TRIGGER_REASON_TAG] and "policy minimum" in tags[cm.TRIGGER_REASON_TAG]
    assert tags["airflow_run_id"] == dag_run.run_id
    assert monitoring.data.metrics["accuracy"] < 0.75
    assert monitoring.data.params["window_days"] == "60"

    (triggered,) = triggered_runs(dag_run.run_id)
    assert triggered["conf"] == {"model_name": MODEL, "data_source": ms.SMALL_DATA}
    assert "operator" in triggered["run_type"].lower()
    assert "queued" in triggered["state"].lower()  # dag.test() runs no scheduler for it
    assert triggered["note"].startswith(f"{MODEL} v{version} degraded: ")
    assert "policy minimum" in triggered["note"]
    # Audited (and so notifiable) as retrain_triggered, naming the degraded champion and the run.
    (audited,) = AuditLog(f"sqlite:///{os.environ['MOVIE_RECOMMENDER_AUDIT_DB']}").events(kinds=[EventType.RETRAIN_TRIGGERED])
    assert (audited.version, audited.details["retrain_run_id"]) == (version, triggered["run_id"])


def test_a_champion_that_holds_triggers_nothing(monitor_dag, mlflow_client, experiment_id, triggered_runs):
    from include.recommender.loading import load_movielens

    lookup = ms.LookupModel(load_movielens(ms.SMALL_DATA).ratings)
    version = ms.make_champion(mlflow_client, experiment_id, MODEL, lookup, ms.MODEST_VALIDATION)
    dag_run, states = run(monitor_dag)
    assert str(dag_run.state) == "success", states
    assert states == {"score_champion": "success", "assess": "success", "trigger_retrain": "skipped", "no_retrain": "success",
                      "verify_audit_trail": "success"}
    (monitoring,) = monitoring_runs(mlflow_client)
    assert monitoring.data.tags[cm.CHAMPION_VERSION_TAG] == version
    assert monitoring.data.tags[cm.STATUS_TAG] == "holds"
    assert cm.TRIGGER_REASON_TAG not in monitoring.data.tags
    assert triggered_runs(dag_run.run_id) == []


def test_drift_past_the_margin_alone_triggers_a_retrain(monitor_dag, mlflow_client, experiment_id, triggered_runs):
    """Above every policy minimum, but far below its own validation metrics: degraded."""
    from include.recommender.loading import load_movielens

    # Wrong on ~1 pair in 7: accuracy ~0.86, above every policy minimum, yet far below the 0.99
    # it claims to have validated at.
    decent = ms.LookupModel(load_movielens(ms.SMALL_DATA).ratings, wrong_every=7)
    ms.make_champion(mlflow_client, experiment_id, MODEL, decent, ms.NEAR_PERFECT_VALIDATION)
    dag_run, states = run(monitor_dag, margin=0.1)
    assert states["trigger_retrain"] == "success", states
    (monitoring,) = monitoring_runs(mlflow_client)
    reason = monitoring.data.tags[cm.TRIGGER_REASON_TAG]
    assert "accuracy" in reason and "beyond the margin 0.1" in reason and "policy minimum" not in reason
    assert 0.75 < monitoring.data.metrics["accuracy"] < 0.89
    assert len(triggered_runs(dag_run.run_id)) == 1


def test_no_champion_means_no_retrain_and_no_monitoring_run(monitor_dag, mlflow_client, mlflow_connection, triggered_runs):
    dag_run, states = run(monitor_dag)
    assert str(dag_run.state) == "success", states
    assert states["no_retrain"] == "success" and states["trigger_retrain"] == "skipped"
    assert monitoring_runs(mlflow_client) == []
    assert triggered_runs(dag_run.run_id) == []
