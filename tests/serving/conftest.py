"""One real MLflow store of the project's own models, and real model-server processes on it.

The store (SQLite file, local artifacts) holds runs trained, evaluated, registered, validated
and approved by the functions the retrain DAG's tasks call, on small synthetic data; each server
is ``python -m include.serving`` on a free port, started once for the package.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from include.governance import steps
from include.governance.audit import AuditContext, AuditLog, AuditTrail
from include.governance.policy import GovernancePolicy
from include.governance.registry import register_version
from tests.services.conftest import ServiceProcess, start_service

REPO = Path(__file__).resolve().parents[2]
FOLLOWED = "served_recommender"
SHADOWED = "shadowed_recommender"
FAST = {"hist_gradient_boosting": {"max_iter": 20}, "logistic_regression": {}, "popularity": {}}
# The tiny data cannot reach the production gates; what these tests prove is the serving path.
LENIENT = GovernancePolicy.load().with_overrides(
    {
        "min_accuracy": 0.0, "min_precision": 0.0, "min_recall": 0.0, "max_degradation_vs_champion": 1.0,
        "auto_approve_max_degradation": 1.0, "max_inference_time_ms": 60000, "min_data_quality_score": 0.0,
    }
)
ACTOR = AuditContext(actor="serving-tests", source="cli")
SWAP_WAIT_SECONDS = 90


@dataclass
class Store:
    """The package's MLflow store: its URI, audit file, and the trained runs by name."""

    uri: str
    root: Path
    audit_path: Path
    runs: dict[str, dict[str, str]] = field(default_factory=dict)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def trail(self) -> AuditTrail:
        return AuditTrail(AuditLog(f"sqlite:///{self.audit_path}"), self.client())

    def register(self, model_name: str, run: str) -> str:
        """Register a trained run as a new version of model_name (the register task's function)."""
        entry = self.runs[run]
        version, _ = register_version(
            self.client(), model_name=model_name, model_uri=entry["model_uri"], run_id=entry["run_id"],
            tags={"submitted_by": "trainer", "data_fingerprint": entry["fingerprint"]},
        )
        return str(version.version)

    def validate_and_approve(self, model_name: str, version: str) -> None:
        """Validate (sets @challenger) and let the policy approve, through the project's steps."""
        client, trail = self.client(), self.trail()
        outcome = steps.validate(client, LENIENT, trail, ACTOR, model_name, version)
        assert outcome.passed, outcome
        steps.request_approval(client, LENIENT, trail, ACTOR, model_name, version)

    def promote(self, model_name: str, version: str) -> None:
        steps.promote(self.client(), LENIENT, self.trail(), ACTOR, model_name, version)

    def rollback(self, model_name: str) -> str:
        client = self.client()
        plan = steps.plan_rollback(client, model_name)
        return steps.rollback(client, LENIENT, self.trail(), ACTOR, plan, reason="serving test").champion


def _train(store: Store, name: str, model_type: str, data) -> None:
    from include.recommender.evaluation import evaluate_run_snapshot
    from include.recommender.training import train_and_log

    result = train_and_log(
        data=data, model_type=model_type, hyperparameters=FAST[model_type], experiment_name="serving-tests",
        tracking_uri=store.uri, cutoff=None, run_tags={"submitted_by": "trainer"},
        artifact_location=str(store.root / "artifacts"),
    )
    evaluate_run_snapshot(run_id=result.run_id, data_fingerprint=result.data_fingerprint, cutoff=None,
                          tracking_uri=store.uri)
    store.runs[name] = {"run_id": result.run_id, "model_uri": result.model_uri, "fingerprint": result.data_fingerprint}


@pytest.fixture(scope="package")
def store(tmp_path_factory, _empty_mlflow_db) -> Store:
    """Runs a (boosting), b (logistic regression) and c (popularity), trained and evaluated."""
    from threadpoolctl import threadpool_limits

    from include.recommender.synthetic import generate_movielens

    root = tmp_path_factory.mktemp("serving-store")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    built = Store(uri=f"sqlite:///{root / 'mlflow.db'}", root=root, audit_path=root / "audit.db")
    data = generate_movielens(n_users=60, n_movies=200, n_ratings=4000, seed=21)
    with threadpool_limits(limits=1, user_api="openmp"):
        for name, model_type in (("a", "hist_gradient_boosting"), ("b", "logistic_regression"), ("c", "popularity")):
            _train(built, name, model_type, data)
    return built


@dataclass
class Server:
    """A running model server: its base URL and its process (for the log)."""

    url: str
    process: ServiceProcess

    def get(self, path: str) -> tuple[int, dict | str]:
        return _request(self.url + path, None)

    def post(self, path: str, body: dict) -> tuple[int, dict | str]:
        return _request(self.url + path, body)

    def version(self) -> dict:
        status, body = self.get("/version")
        assert status == 200, body
        return body

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            return response.read().decode()

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait (bounded) until predicate holds; fail with the server's log if it never does."""
        deadline = time.monotonic() + SWAP_WAIT_SECONDS
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        pytest.fail(f"{what}: not within {SWAP_WAIT_SECONDS} s\n{self.process.log_tail(60)}")

    def wait_for_versions(self, champion: str, challenger: str | None) -> None:
        def matches() -> bool:
            body = self.version()
            loaded = body["challenger"]["version"] if body["challenger"] else None
            return (body["champion"] or {}).get("version") == champion and loaded == challenger

        self.wait_for(matches, f"serving champion v{champion}, challenger {challenger}")


def _request(url: str, body: dict | None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        try:
            return error.code, json.loads(text)
        except json.JSONDecodeError:
            return error.code, text


def start_server(store: Store, model_name: str, log_path: Path, **settings: str) -> Server:
    """``python -m include.serving`` on a free port, healthy (a champion loaded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "MOVIE_RECOMMENDER_"))}
    env.update(
        PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=store.uri, MLFLOW_DISABLE_TELEMETRY="true",
        MOVIE_RECOMMENDER_AUDIT_DB=str(store.audit_path), MOVIE_RECOMMENDER_SERVING_MODEL=model_name,
        MOVIE_RECOMMENDER_SERVING_POLL_SECONDS="1", **settings,
    )

    def build(port: int) -> tuple[list[str], dict[str, str], str]:
        command = [sys.executable, "-m", "include.serving", "--port", str(port)]
        return command, env, f"Uvicorn running on http://127.0.0.1:{port}"

    process, url = start_service(f"model server ({model_name})", build, log_path, "/health")
    return Server(url, process)


@pytest.fixture(scope="package")
def followed(store, tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    """The follower server (canary share 0.3) on FOLLOWED, whose champion is run a's version."""
    versions = {run: store.register(FOLLOWED, run) for run in ("a", "b")}
    store.validate_and_approve(FOLLOWED, versions["a"])
    store.promote(FOLLOWED, versions["a"])
    server = start_server(store, FOLLOWED, tmp_path_factory.mktemp("followed") / "server.log",
                          MOVIE_RECOMMENDER_SERVING_CANARY_SHARE="0.3")
    try:
        yield server, versions
    finally:
        server.process.stop()


@pytest.fixture(scope="package")
def shadowed(store, tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A shadow-mode server (share 0.5) on SHADOWED: champion run a, challenger run c.

    Not run b: the follower's tests remove b's artifact.
    """
    versions = {run: store.register(SHADOWED, run) for run in ("a", "c")}
    store.validate_and_approve(SHADOWED, versions["a"])
    store.promote(SHADOWED, versions["a"])
    store.validate_and_approve(SHADOWED, versions["c"])
    server = start_server(store, SHADOWED, tmp_path_factory.mktemp("shadowed") / "server.log",
                          MOVIE_RECOMMENDER_SERVING_CANARY_SHARE="0.5", MOVIE_RECOMMENDER_SERVING_MODE="shadow")
    try:
        yield server, versions
    finally:
        server.process.stop()
