"""train_and_log against a real MLflow (SQLite store, local artifacts). Loading in a fresh
interpreter, for every model type, is in test_model_registry."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from include.recommender import training
from include.recommender.features import FEATURE_NAMES
from include.recommender.snapshot import fingerprint, ratings_before
from include.recommender.synthetic import generate_movielens
from include.recommender.run_tags import EXPERIMENT_TAGS, configured_experiment_name, run_name
from include.recommender.training import TrainingResult, pip_requirements, train_and_log

EXPERIMENT = "recommender-test"
RUN_TAGS = {"submitted_by": "tester", "airflow_dag_id": "retrain", "airflow_run_id": "manual__1"}
DATASET_PARAMS = (
    "dataset_source",
    "dataset_fingerprint",
    "dataset_cutoff",
    "dataset_train_size",
    "dataset_test_size",
    "dataset_feature_count",
    "dataset_n_users",
    "dataset_n_movies",
    "dataset_duplicate_count",
    "dataset_missing_values",
    "dataset_out_of_range",
)


@pytest.fixture(scope="module", autouse=True)
def _single_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait; on a shared CI box that turns seconds
    into minutes. One thread keeps the tests' wall time stable."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def data():
    return generate_movielens(n_users=80, n_movies=300, n_ratings=6000, seed=11)


@pytest.fixture(scope="module")
def store(tmp_path_factory, _empty_mlflow_db):
    root = tmp_path_factory.mktemp("mlflow")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")  # already migrated: saves seconds
    return {"uri": f"sqlite:///{root}/mlflow.db", "artifacts": str(root / "artifacts")}


@pytest.fixture(scope="module")
def cutoff(data):
    # A cutoff inside the span, so the snapshot really drops the latest ratings.
    ts = data.ratings["timestamp"].quantile(0.9)
    return datetime.fromtimestamp(int(ts), tz=timezone.utc)


@pytest.fixture(scope="module")
def trained(data, store, cutoff) -> TrainingResult:
    return train_and_log(
        data=data,
        model_type="hist_gradient_boosting",
        hyperparameters={"max_iter": 60},
        experiment_name=EXPERIMENT,
        tracking_uri=store["uri"],
        cutoff=cutoff,
        run_tags=RUN_TAGS,
        artifact_location=store["artifacts"],
    )


def test_run_holds_params_metrics_and_tags(trained, data, store, cutoff):
    client = MlflowClient(store["uri"])
    run = client.get_run(trained.run_id)
    params, metrics = run.data.params, run.data.metrics
    snapshot = ratings_before(data.ratings, cutoff)

    assert run.info.status == "FINISHED"
    assert params["model_type"] == "hist_gradient_boosting"
    assert params["max_iter"] == "60"
    assert "learning_rate" in params
    assert set(DATASET_PARAMS) <= set(params)
    assert params["dataset_fingerprint"] == trained.data_fingerprint == fingerprint(snapshot)
    assert params["dataset_cutoff"] == cutoff.isoformat()
    assert int(params["dataset_train_size"]) + int(params["dataset_test_size"]) == len(snapshot)
    assert len(snapshot) < len(data.ratings)
    assert params["dataset_feature_count"] == str(len(FEATURE_NAMES))
    assert params["dataset_duplicate_count"] == "0"
    assert params["dataset_source"] == data.source
    assert 0.0 <= metrics["train_accuracy"] <= 1.0
    assert metrics["training_time_seconds"] == pytest.approx(trained.training_seconds)
    assert {k: run.data.tags[k] for k in RUN_TAGS} == RUN_TAGS
    assert client.get_metric_history(trained.run_id, "train_loss")


def test_experiment_created_with_artifact_location(trained, store):
    experiment = MlflowClient(store["uri"]).get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location.endswith(store["artifacts"])


def test_experiment_and_run_carry_the_design_guides_tags_and_a_telling_run_name(trained, store, cutoff):
    client = MlflowClient(store["uri"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    run = client.get_run(trained.run_id)

    assert {k: experiment.tags.get(k) for k in EXPERIMENT_TAGS} == dict(EXPERIMENT_TAGS)
    tags = run.data.tags
    assert tags["project"] == "mlops-movie-recommendation"
    assert tags["stage"] == "development"
    assert tags["model_type"] == "hist_gradient_boosting"
    assert tags["training_stage"] == "supervised_learning"
    started = datetime.fromisoformat(tags["timestamp"])
    assert started.utcoffset().total_seconds() == 0
    assert int(started.timestamp() * 1000) == run.info.start_time
    assert run.info.run_name == f"hist_gradient_boosting@{cutoff.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"


def test_existing_experiment_gains_missing_tags_and_keeps_set_ones(store):
    client = MlflowClient(store["uri"])
    experiment_id = client.create_experiment("recommender-pre-existing", tags={"description": "team's own words"})

    assert training.ensure_experiment(client, "recommender-pre-existing", None) == experiment_id
    assert training.ensure_experiment(client, "recommender-pre-existing", None) == experiment_id  # idempotent

    tags = client.get_experiment(experiment_id).tags
    assert tags["description"] == "team's own words"
    assert tags["project"] == "mlops-movie-recommendation"
    assert tags["version"] == "1.0"


def test_an_account_that_may_not_edit_the_experiment_still_trains(store, monkeypatch, caplog):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    client = MlflowClient(store["uri"])
    experiment_id = client.create_experiment("recommender-someone-elses")

    def refused(*args, **kwargs):  # what an MLflow auth server answers a READ-only account
        raise MlflowException("Permission denied", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(client, "set_experiment_tag", refused)
    assert training.ensure_experiment(client, "recommender-someone-elses", None) == experiment_id
    assert "may not set it" in caplog.text


def test_run_name_without_cutoff_and_for_a_naive_cutoff():
    assert run_name("popularity", None) == "popularity@all-data"
    assert run_name("torch_ncf", datetime(2025, 6, 1)) == "torch_ncf@2025-06-01T00:00Z"


def test_experiment_name_comes_from_the_guides_variable(monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert configured_experiment_name() == "movie_recommendation"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "  ")
    assert configured_experiment_name() == "movie_recommendation"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-b-recommender")
    assert configured_experiment_name() == "team-b-recommender"


def test_model_logged_with_signature_and_pinned_requirements(trained, store):
    assert trained.model_uri.startswith("models:/m-")
    with training.tracking_uri_scope(store["uri"]):
        info = mlflow.models.get_model_info(trained.model_uri)
        with open(mlflow.pyfunc.get_model_dependencies(trained.model_uri)) as handle:
            requirements = handle.read().split()
    assert info.run_id == trained.run_id
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["userId", "movieId"]
    assert set(pip_requirements()) <= set(requirements)


def test_model_uri_registers_with_run_lineage(trained, store):
    with training.tracking_uri_scope(store["uri"]):
        version = mlflow.register_model(trained.model_uri, "recommender_lineage_test")
    assert version.run_id == trained.run_id


def test_tracking_uri_is_restored(data, store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent/caller.db")
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
    before = mlflow.get_tracking_uri()
    train_and_log(
        data=data,
        model_type="logistic_regression",
        hyperparameters={},
        experiment_name=EXPERIMENT,
        tracking_uri=store["uri"],
        cutoff=None,
        run_tags={},
    )
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////nonexistent/caller.db"
    assert mlflow.get_tracking_uri() == before
    assert mlflow.active_run() is None


def test_failure_inside_training_ends_the_run_failed(data, store, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("injected failure during feature building")

    monkeypatch.setattr(training, "fit_model", explode)
    experiment = "recommender-failure"
    with pytest.raises(RuntimeError, match="injected failure"):
        train_and_log(
            data=data,
            model_type="hist_gradient_boosting",
            hyperparameters={},
            experiment_name=experiment,
            tracking_uri=store["uri"],
            cutoff=None,
            run_tags={"submitted_by": "tester"},
        )
    client = MlflowClient(store["uri"])
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert mlflow.active_run() is None


@pytest.mark.parametrize(
    ("model_type", "params", "message"),
    [
        ("svm", {}, "'svm'"),
        ("hist_gradient_boosting", {"learning_rate": -1}, "learning_rate"),
        ("torch_ncf", {"hidden_size": 0}, "hidden_size"),
    ],
)
def test_bad_configuration_fails_before_any_run(data, store, model_type, params, message):
    experiment = f"recommender-bad-{model_type}"
    with pytest.raises(ValueError, match=message):
        train_and_log(
            data=data,
            model_type=model_type,
            hyperparameters=params,
            experiment_name=experiment,
            tracking_uri=store["uri"],
            cutoff=None,
            run_tags={},
        )
    assert MlflowClient(store["uri"]).get_experiment_by_name(experiment) is None
