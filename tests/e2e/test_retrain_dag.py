"""End to end: the retrain DAG under dag.test() against a real MLflow store.

Each test runs the whole DAG in-process (Airflow on the session's SQLite database, MLflow on the
test's own SQLite store) and then asserts on the registry, the single source of truth.
"""

from __future__ import annotations

import threading
import time

import pytest

from include.governance import lifecycle as lc
from include.governance.approval import record_review
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases

pytestmark = pytest.mark.e2e

MODEL = "movie_recommender"
# Small generated data keeps each run to seconds; the gates still apply in full.
SMALL_DATA = "synthetic:n_users=200,n_movies=800,n_ratings=20000,seed=11"


@pytest.fixture
def retrain_dag(parse_dag):
    return parse_dag("movie_recommender_retrain")


def run(dag, **conf):
    from airflow.utils.state import DagRunState

    dag_run = dag.test(run_conf={"data_source": SMALL_DATA, **conf})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run.state == DagRunState.SUCCESS, states


def versions(client):
    return sorted(
        (mv for mv in client.search_model_versions(f"name = '{MODEL}'")), key=lambda mv: int(mv.version)
    )


def test_first_run_auto_approves_and_promotes_v1(retrain_dag, mlflow_connection, mlflow_client, monkeypatch):
    from include.recommender.data_snapshot import SNAPSHOT_ARTIFACT_DIR, SNAPSHOT_PATH_TAG
    from mlflow_governance import data_sources

    reads = []
    real_load = data_sources.load_training_data
    # A spy, not a fake: every read goes to the real loader and is counted.
    monkeypatch.setattr(data_sources, "load_training_data", lambda source: reads.append(source) or real_load(source))
    # "42" renders as a number under native rendering: the note must still land as text.
    succeeded, states = run(retrain_dag, submission_notes="42")
    assert succeeded, states
    # The run read its source once (train); log evaluated the snapshot train kept.
    assert reads == [SMALL_DATA]
    (v1,) = versions(mlflow_client)
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: "1"}
    tags = v1.tags
    assert tags[lc.VALIDATION_STATUS] == "passed"
    assert tags[lc.APPROVAL_STATUS] == "approved"
    assert tags[lc.APPROVAL_REASON] == "First model meets validation criteria"
    assert tags[lc.AUTO_PROMOTED] == "true"
    assert tags[lc.AIRFLOW_DAG_ID] == "movie_recommender_retrain"
    assert tags[lc.DATA_FINGERPRINT].startswith("sha256:")
    run_data = mlflow_client.get_run(v1.run_id).data
    assert {"accuracy", "precision", "recall", "f1_score", "roc_auc"} <= set(run_data.metrics)
    assert run_data.params["dataset_fingerprint"] == tags[lc.DATA_FINGERPRINT]
    assert run_data.tags[SNAPSHOT_PATH_TAG] == SNAPSHOT_ARTIFACT_DIR
    assert tags[lc.SUBMISSION_NOTES] == "42" and v1.description.endswith("\n\nSubmitter's note: 42")
    assert (run_data.tags["project"], run_data.tags["stage"]) == ("mlops-movie-recommendation", "development")
    assert mlflow_client.get_run(v1.run_id).info.run_name.startswith("hist_gradient_boosting@")
    kept = {a.path for a in mlflow_client.list_artifacts(v1.run_id, SNAPSHOT_ARTIFACT_DIR)}
    assert f"{SNAPSHOT_ARTIFACT_DIR}/ratings.parquet" in kept


def test_manual_approval_waits_for_a_reviewer_then_promotes(retrain_dag, mlflow_connection, mlflow_client):
    assert run(retrain_dag)[0]
    reviewer_saw = {}

    def reviewer():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for mv in versions(mlflow_client):
                if mv.tags.get(lc.APPROVAL_STATUS) == "pending":
                    reviewer_saw["version"] = str(mv.version)
                    reviewer_saw["champion_while_waiting"] = get_aliases(mlflow_client, MODEL).get(lc.CHAMPION)
                    record_review(
                        mlflow_client, MODEL, mv.version, approve=True, reviewer="alice",
                        notes="checked the holdout report", policy=GovernancePolicy.load().approval,
                    )
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    succeeded, states = run(retrain_dag, approval_mode="manual", approval_timeout_minutes=4)
    thread.join(timeout=5)
    assert succeeded, states
    assert reviewer_saw == {"version": "2", "champion_while_waiting": "1"}
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: "2", lc.PREVIOUS_CHAMPION: "1"}
    tags = mlflow_client.get_model_version(MODEL, "2").tags
    assert tags[lc.APPROVED_BY] == "alice"
    assert tags[lc.AUTO_PROMOTED] == "false"
    assert lc.ARCHIVED_TIMESTAMP in mlflow_client.get_model_version(MODEL, "1").tags


def test_a_rejected_version_leaves_the_champion_where_it_was(retrain_dag, mlflow_connection, mlflow_client):
    assert run(retrain_dag)[0]
    succeeded, states = run(retrain_dag, min_accuracy=0.99)
    assert not succeeded
    assert states["validate"] == "success"
    assert states["approve"] == "failed"
    assert states["promote"] == "upstream_failed"
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: "1"}
    tags = mlflow_client.get_model_version(MODEL, "2").tags
    assert tags[lc.VALIDATION_STATUS] == "failed"
    assert tags[lc.APPROVAL_STATUS] == "rejected"
    assert "accuracy" in tags[lc.APPROVAL_REASON]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "ratings"),  # nothing there
        ({"ratings.csv": "userId,movieId,rating\n1,1,4.0\n", "movies.csv": "movieId,title,genres\n1,A,Drama\n"}, "timestamp"),
    ],
    ids=["missing-files", "missing-column"],
)
def test_bad_data_fails_in_train_and_registers_nothing(retrain_dag, mlflow_connection, mlflow_client, tmp_path, files, message, capfd):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name, text in files.items():
        (data_dir / name).write_text(text)
    succeeded, states = run(retrain_dag, data_source=str(data_dir))
    assert not succeeded
    assert states["train"] == "failed"
    assert all(states[t] == "upstream_failed" for t in ("log", "register", "validate", "approve", "promote"))
    assert versions(mlflow_client) == []
    # The task log (printed by dag.test) names the file and the problem.
    output = capfd.readouterr().out
    assert "Bad training data" in output
    assert message in output and str(data_dir) in output
