"""Every model type: trains on a small dataset, logs, registers, loads from the registry in a
fresh interpreter (without the repository) and both scores pairs and recommends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from include.governance.registry import register_version
from include.recommender import training
from include.recommender.models import MODEL_TYPES
from include.recommender.snapshot import temporal_split
from include.recommender.synthetic import generate_movielens
from include.recommender.training import pip_requirements, train_and_log

MODEL_NAME = "movie_recommender"
# Small settings: this checks the wiring end to end, not the quality (bench/ does that).
FAST = {
    "hist_gradient_boosting": {"max_iter": 20},
    "logistic_regression": {},
    "torch_ncf": {"epochs": 3, "embedding_dim": 8, "hidden_size": 16},
    "popularity": {},
}
K = 4


@pytest.fixture(scope="module")
def data():
    return generate_movielens(n_users=60, n_movies=200, n_ratings=4000, seed=21)


@pytest.fixture(scope="module")
def registered(data, tmp_path_factory, _empty_mlflow_db):
    """Train, log and register every model type; @champion points at the torch version."""
    root = tmp_path_factory.mktemp("registry")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")  # already migrated: saves seconds
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    versions = {}
    with threadpool_limits(limits=1, user_api="openmp"):
        for model_type in MODEL_TYPES:
            result = train_and_log(
                data=data,
                model_type=model_type,
                hyperparameters=FAST[model_type],
                experiment_name="registry-roundtrip",
                tracking_uri=uri,
                cutoff=None,
                run_tags={"submitted_by": "tester"},
                artifact_location=str(root / "artifacts"),
            )
            version, created = register_version(
                client,
                model_name=MODEL_NAME,
                model_uri=result.model_uri,
                run_id=result.run_id,
                tags={"submitted_by": "tester"},
            )
            assert created
            versions[model_type] = {"version": str(version.version), "run_id": result.run_id}
    client.set_registered_model_alias(MODEL_NAME, "champion", versions["torch_ncf"]["version"])
    return {"uri": uri, "root": root, "versions": versions}


def test_torch_run_logs_hyperparameters_and_epoch_curves(registered):
    client = MlflowClient(registered["uri"])
    run_id = registered["versions"]["torch_ncf"]["run_id"]
    run = client.get_run(run_id)
    params, metrics = run.data.params, run.data.metrics
    # The governance gates warn on these two.
    assert params["hidden_size"] == "16" and float(params["learning_rate"]) > 0
    assert params["model_type"] == "torch_ncf"
    assert {"embedding_dim", "epochs", "batch_size", "patience", "weight_decay"} <= set(params)
    epochs = int(metrics["epochs_run"])
    for key in ("train_loss", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == list(range(epochs))
    assert 1 <= metrics["best_epoch"] <= epochs
    assert 0.0 <= metrics["train_accuracy"] <= 1.0


def test_every_version_carries_the_shared_signature(registered):
    client = MlflowClient(registered["uri"])
    with training.tracking_uri_scope(registered["uri"]):
        import mlflow

        for model_type, entry in registered["versions"].items():
            info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/{entry['version']}")
            inputs = {c["name"]: c.get("required", True) for c in info.signature.inputs.to_dict()}
            assert inputs == {"userId": True, "movieId": False}, model_type
            assert {p.name for p in info.signature.params} == {"mode", "k"}
            with open(mlflow.pyfunc.get_model_dependencies(f"models:/{MODEL_NAME}/{entry['version']}")) as f:
                requirements = f.read().split()
            extra = ("torch",) if model_type == "torch_ncf" else ()
            assert set(pip_requirements(extra)) <= set(requirements), model_type
            assert any(r.startswith("torch==") for r in requirements) == bool(extra)
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").run_id == (
        registered["versions"]["torch_ncf"]["run_id"]
    )


_LOAD_SCRIPT = """
import json, sys
try:
    import include
    sys.exit("include is importable before loading the model: " + include.__file__)
except ImportError:
    pass
import mlflow.pyfunc, pandas as pd
uris, user, movies, k = json.loads(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
out = {}
for uri in uris:
    model = mlflow.pyfunc.load_model(uri)
    proba = model.predict(pd.DataFrame({"userId": [user] * len(movies), "movieId": movies}))
    recs = model.predict(pd.DataFrame({"userId": [user, 10**9]}), params={"mode": "recommend", "k": k})
    out[uri] = {"proba": [float(p) for p in proba], "recs": recs.to_dict(orient="list")}
import include
out["include"] = include.__file__
print(json.dumps(out))
"""


def test_every_version_loads_in_a_fresh_interpreter_and_recommends(registered, data, tmp_path):
    versions = registered["versions"]
    uris = [f"models:/{MODEL_NAME}/{v['version']}" for v in versions.values()]
    uris.append(f"models:/{MODEL_NAME}@champion")
    uris.append(f"runs:/{versions['popularity']['run_id']}/model")
    train, _ = temporal_split(data.ratings, 0.2)
    user = int(train["userId"].iloc[0])
    seen = set(train.loc[train["userId"] == user, "movieId"])
    movies = [int(m) for m in data.movies["movieId"].head(3)] + [10**9]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = registered["uri"]
    completed = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, json.dumps(uris), str(user), json.dumps(movies), str(K)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    # The package came from the model's shipped code, not from this checkout.
    assert not result["include"].startswith(os.path.dirname(os.path.dirname(training.__file__)))
    for uri in uris:
        out = result[uri]
        assert len(out["proba"]) == len(movies) and all(0.0 <= p <= 1.0 for p in out["proba"])
        recs = out["recs"]
        assert set(recs) == {"userId", "movieId", "score", "probability", "rank"}
        mine = [m for u, m in zip(recs["userId"], recs["movieId"]) if u == user]
        assert len(mine) == K and not seen & set(mine), uri
        assert [r for u, r in zip(recs["userId"], recs["rank"]) if u == 10**9] == list(range(1, K + 1))
    champion = result[f"models:/{MODEL_NAME}@champion"]
    assert champion == result[f"models:/{MODEL_NAME}/{versions['torch_ncf']['version']}"]
