"""The lifecycle against a real MLflow server: PostgreSQL backend store, S3 (moto) artifacts.

Train and evaluate through the server, register/validate/approve/promote with the plugin's
operators (as Airflow calls execute()), then load ``@champion`` in a fresh interpreter that knows
only the tracking URI: the artifacts must come back from S3 through the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases
from include.recommender.evaluation import evaluate_and_log
from include.recommender.synthetic import generate_movielens
from include.recommender.training import train_and_log
from mlflow_governance.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RequestApprovalOperator,
    ValidateModelVersionOperator,
)

pytestmark = pytest.mark.services

MODEL = "movie_recommender_services"
CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_retrain"), "run_id": "manual__services"}
# Small data keeps training to seconds; the gates are relaxed to what such data supports, so the
# test is about the services, not the model's quality (tests/include covers that).
RELAXED_GATES = {"min_accuracy": 0.5, "min_precision": 0.3, "min_recall": 0.1}

LOAD_CHAMPION = """
import json, sys
import mlflow.pyfunc, pandas as pd
pairs = pd.DataFrame(json.loads(sys.argv[1])).astype("int64")
model = mlflow.pyfunc.load_model(sys.argv[2])
print(json.dumps({
    "model_id": model.metadata.model_id,
    "run_id": model.metadata.run_id,
    "predictions": [float(p) for p in model.predict(pairs)],
}))
"""


@pytest.fixture(autouse=True)
def _single_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait on a shared 2-core box."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def mlflow_default(mlflow_server, monkeypatch) -> str:
    """Point Airflow's mlflow_default connection at the server, as airflow-init does in compose."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": mlflow_server.url}))
    # The client side must not hold S3 credentials: artifacts go through the server.
    for name in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    return mlflow_server.url


def test_train_govern_and_serve_the_champion_from_s3(mlflow_default, mlflow_server, s3_server, tmp_path):
    from mlflow import MlflowClient

    url = mlflow_default
    data = generate_movielens(n_users=60, n_movies=200, n_ratings=4000, seed=3)

    trained = train_and_log(
        data=data, model_type="hist_gradient_boosting", hyperparameters={"max_iter": 50},
        experiment_name="services-stack", tracking_uri=url, cutoff=None,
        run_tags={"airflow_dag_id": "movie_recommender_retrain", "airflow_run_id": "manual__services"},
    )
    metrics = evaluate_and_log(run_id=trained.run_id, data=data, cutoff=None, tracking_uri=url)
    assert {"accuracy", "precision", "recall", "f1_score", "roc_auc"} <= metrics.keys()

    registered = RegisterModelVersionOperator(
        task_id="register", model_name=MODEL, run_id=trained.run_id, model_uri=trained.model_uri,
        data_fingerprint=trained.data_fingerprint, submitted_by="trainer",
    ).execute(CONTEXT)
    version = registered["version"]
    assert registered["created"] is True
    validated = ValidateModelVersionOperator(task_id="validate", model_name=MODEL, version=version, policy_overrides=RELAXED_GATES).execute(CONTEXT)
    assert validated["passed"] is True, validated
    approved = RequestApprovalOperator(task_id="approve", model_name=MODEL, version=version, policy_overrides=RELAXED_GATES).execute(CONTEXT)
    assert approved["status"] == "approved", approved
    promoted = PromoteModelVersionOperator(task_id="promote", model_name=MODEL, version=version, policy_overrides=RELAXED_GATES).execute(CONTEXT)
    assert promoted["champion_version"] == version and promoted["changed"] is True

    client = MlflowClient(tracking_uri=url)
    assert get_aliases(client, MODEL)[lc.CHAMPION] == version
    tags = client.get_model_version(MODEL, version).tags
    assert tags[lc.VALIDATION_STATUS] == "passed"
    assert tags[lc.DATA_FINGERPRINT] == trained.data_fingerprint
    # Proxied artifacts, as in docker-compose.yaml: the client only ever sees mlflow-artifacts:/.
    experiment = client.get_experiment_by_name("services-stack")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    # A fresh interpreter with nothing but the tracking URI (no S3 credentials, not in the repo).
    pairs = data.ratings[["userId", "movieId"]].head(25)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_", "AIRFLOW_CONN_"))}
    env.pop("PYTHONPATH", None)
    env["MLFLOW_TRACKING_URI"] = url
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_CHAMPION, json.dumps(pairs.to_dict(orient="list")), f"models:/{MODEL}@{lc.CHAMPION}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    served = json.loads(loaded.stdout.strip().splitlines()[-1])
    model_id = trained.model_uri.removeprefix("models:/")
    assert (served["model_id"], served["run_id"]) == (model_id, trained.run_id)
    predictions = np.array(served["predictions"])
    assert predictions.shape == (len(pairs),)
    assert np.all((predictions >= 0) & (predictions <= 1)) and np.ptp(predictions) > 0

    keys = _bucket_keys(s3_server.client(), mlflow_server.artifact_bucket)
    assert any(key.endswith("MLmodel") and model_id in key for key in keys), sorted(keys)[:20]
    assert any(key.endswith(f"{trained.run_id}/artifacts/evaluation/report.json") for key in keys), sorted(keys)[:20]
    assert any(f"{trained.run_id}/artifacts/validation/validation_report_v{version}.json" in key for key in keys)


def test_the_registry_lives_in_the_postgresql_backend_store(mlflow_server):
    """The server really keeps runs and versions in PostgreSQL (not a silent local fallback)."""
    import psycopg

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    name = "services_backend_probe"
    client.create_registered_model(name, description="written through the server")
    with psycopg.connect(mlflow_server.database_url) as conn:
        row = conn.execute("SELECT description FROM registered_models WHERE name = %s", (name,)).fetchone()
    assert row == ("written through the server",)


def _bucket_keys(s3, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys
