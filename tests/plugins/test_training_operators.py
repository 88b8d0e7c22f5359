"""TrainModelOperator and EvaluateModelOperator against a real MLflow store, called as Airflow calls execute().

The evaluation reads the snapshot training kept, never the source: it still works once the
source directory is gone, and refuses a snapshot that is missing, altered or not the one named.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.recommender.data_snapshot import RATINGS_FILE, SNAPSHOT_ARTIFACT_DIR
from include.recommender.evaluation import METRIC_NAMES
from include.recommender.holdout_metrics import DEFAULT_RANKING_USERS
from include.recommender.loading import load_movielens
from include.recommender.snapshot import fingerprint, ratings_before
from include.recommender.synthetic import write_movielens
from mlflow_governance.training import (
    DEFAULT_RANKING_USER_SAMPLE,
    EvaluateModelOperator,
    TrainModelOperator,
    training_cutoff,
)

SOURCE = "synthetic:n_users=60,n_movies=200,n_ratings=3000,seed=17"
INTERVAL_END = datetime(2025, 9, 1, tzinfo=timezone.utc)


def context(**extra):
    return {
        "dag": SimpleNamespace(dag_id="movie_recommender_retrain"),
        "run_id": "manual__2025-09-01",
        "ti": SimpleNamespace(try_number=1),
        "data_interval_end": INTERVAL_END,
        **extra,
    }


def train_op(data_source: str, **kwargs) -> TrainModelOperator:
    return TrainModelOperator(
        task_id="train", model_type="popularity", data_source=data_source, hyperparameters={},
        holdout_fraction=0.2, policy_overrides={}, **kwargs,
    )


def evaluate_op(trained: dict, **overrides) -> EvaluateModelOperator:
    return EvaluateModelOperator(
        task_id="log",
        run_id=overrides.get("run_id", trained["run_id"]),
        data_fingerprint=overrides.get("data_fingerprint", trained["data_fingerprint"]),
        cutoff=trained["cutoff"],
        holdout_fraction=0.2,
        ranking_user_sample_size=overrides.get("ranking_user_sample_size"),
    )


@pytest.fixture
def source_dir(tmp_path) -> Path:
    return write_movielens(load_movielens(SOURCE), tmp_path / "movielens")


@pytest.fixture
def trained(mlflow_connection, source_dir) -> dict:
    return train_op(str(source_dir)).execute(context())


def test_train_reports_the_cutoff_snapshot_it_kept(trained, source_dir, mlflow_client):
    expected = fingerprint(ratings_before(load_movielens(str(source_dir)).ratings, INTERVAL_END))
    assert trained["data_fingerprint"] == expected
    assert trained["cutoff"] == INTERVAL_END.isoformat()
    assert trained["snapshot_path"] == SNAPSHOT_ARTIFACT_DIR
    assert set(trained) == {"run_id", "model_uri", "data_fingerprint", "training_seconds", "cutoff", "snapshot_path"}
    assert mlflow_client.get_run(trained["run_id"]).data.params["dataset_fingerprint"] == expected


def test_log_evaluates_the_snapshot_even_when_the_source_is_gone(trained, source_dir, mlflow_client):
    shutil.rmtree(source_dir)
    metrics = evaluate_op(trained).execute(context())
    assert set(METRIC_NAMES) <= set(metrics)
    logged = mlflow_client.get_run(trained["run_id"]).data.metrics
    assert {name: logged[name] for name in METRIC_NAMES} == pytest.approx({name: metrics[name] for name in METRIC_NAMES})


def test_log_refuses_a_snapshot_other_than_the_one_train_reported(trained):
    other = "sha256:" + "1" * 64
    with pytest.raises(AirflowFailException) as failure:
        evaluate_op(trained, data_fingerprint=other).execute(context())
    message = str(failure.value)
    assert trained["run_id"] in message and other in message and trained["data_fingerprint"] in message


def test_log_refuses_an_altered_snapshot(trained, mlflow_client):
    root = Path(urlparse(mlflow_client.get_run(trained["run_id"]).info.artifact_uri).path)
    ratings = root / SNAPSHOT_ARTIFACT_DIR / RATINGS_FILE
    ratings.write_bytes(ratings.read_bytes()[:100])
    with pytest.raises(AirflowFailException, match=f"run {trained['run_id']}: .*{RATINGS_FILE} was altered"):
        evaluate_op(trained).execute(context())


def test_log_refuses_a_run_that_kept_no_snapshot(mlflow_connection, mlflow_client):
    experiment_id = mlflow_client.create_experiment("bare", artifact_location=mlflow_connection["artifact_location"])
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    bare = {"run_id": run_id, "data_fingerprint": "sha256:abc", "cutoff": None}
    with pytest.raises(AirflowFailException, match=f"run {run_id} kept no data snapshot"):
        evaluate_op(bare).execute(context())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_cutoff": "2025-06-01T00:00:00"}, "needs a time zone"),
        ({"data_cutoff": "next tuesday"}, "not an ISO 8601"),
    ],
)
def test_a_bad_cutoff_fails_train_without_retry(mlflow_connection, source_dir, mlflow_client, kwargs, message):
    with pytest.raises(AirflowFailException, match=f"Bad training data: .*{message}"):
        train_op(str(source_dir), **kwargs).execute(context())
    assert mlflow_client.search_experiments(filter_string="name = 'movie_recommendation'") == []


def test_bad_hyperparameters_fail_train_without_retry(mlflow_connection, source_dir):
    op = TrainModelOperator(
        task_id="train", model_type="logistic_regression", data_source=str(source_dir),
        hyperparameters={"C": -1.0}, policy_overrides={},
    )
    with pytest.raises(AirflowFailException, match="Training refused"):
        op.execute(context())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"min_accuracy": float("nan")}, "min_accuracy=nan"), ({"min_acuracy": 0.8}, "unknown policy override")],
)
def test_a_bad_policy_override_fails_before_anything_is_trained(mlflow_connection, source_dir, mlflow_client, overrides, message):
    op = TrainModelOperator(
        task_id="train", model_type="popularity", data_source=str(source_dir), policy_overrides=overrides,
    )
    with pytest.raises(AirflowFailException, match=f"Invalid governance policy: .*{message}"):
        op.execute(context())
    assert mlflow_client.search_experiments(filter_string="name = 'movie_recommendation'") == []


def test_cutoff_falls_back_to_the_interval_end_and_keeps_an_offset():
    assert training_cutoff(None, INTERVAL_END) == INTERVAL_END
    assert training_cutoff("", None) is None
    parsed = training_cutoff("2025-06-01T00:00:00+02:00", INTERVAL_END)
    assert parsed == datetime(2025, 5, 31, 22, tzinfo=timezone.utc)


def test_the_train_task_takes_its_experiment_from_mlflow_experiment_name(monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-b-recommender")
    assert TrainModelOperator(task_id="train", model_type="popularity", data_source="synthetic").experiment_name == "team-b-recommender"
    explicit = TrainModelOperator(task_id="train", model_type="popularity", data_source="synthetic", experiment_name="mine")
    assert explicit.experiment_name == "mine"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    assert TrainModelOperator(task_id="train", model_type="popularity", data_source="synthetic").experiment_name == "movie_recommendation"


def test_log_ranks_the_user_sample_the_param_asks_for_and_reports_it(trained, mlflow_client, tmp_path):
    evaluate_op(trained, ranking_user_sample_size="7").execute(context())
    path = mlflow_client.download_artifacts(trained["run_id"], "evaluation/report.json", str(tmp_path))
    ranking = json.loads(Path(path).read_text())["ranking"]
    assert ranking["user_sample_size"] == 7
    assert ranking["users"] == 7 < ranking["holdout_users"]
    assert ranking["users_sampled"] is True


@pytest.mark.parametrize("value", [0, -3, "ten", 2.5, True])
def test_a_bad_ranking_user_sample_size_fails_log_naming_it(value):
    # Refused before any MLflow call: no store needed.
    op = evaluate_op({"run_id": "r", "data_fingerprint": "sha256:x", "cutoff": None}, ranking_user_sample_size=value)
    with pytest.raises(AirflowFailException, match=r"ranking_user_sample_size must be a positive integer, got"):
        op.execute(context())


def test_the_dag_default_ranking_sample_is_the_evaluation_default():
    assert DEFAULT_RANKING_USER_SAMPLE == DEFAULT_RANKING_USERS
