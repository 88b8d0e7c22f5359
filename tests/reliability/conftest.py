"""Fixtures of the fault-injection tests: a crashable MLflow stack, a private PostgreSQL.

``mlflow_stack`` is the topology of docker-compose.yaml (``mlflow server`` with a PostgreSQL
backend store, artifacts proxied to S3 played by moto), one for the package (the modules keep
apart by model and experiment name, and each leaves both servers running again; moto's restart
empties S3, so the S3-outage module runs last, in file order),
with both servers crashable and restartable (see servers.py). Every process is stopped and every database dropped
at teardown, also when a test failed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from tests.reliability.servers import PrivatePostgres, RestartableServer, mlflow_build, moto_build
from tests.services.conftest import ARTIFACT_BUCKET, S3_CREDENTIALS, S3Server, fresh_database

# Figures measured while the session runs (restart times and the like), printed, never asserted.
FIGURES: dict[str, str] = {}


@dataclass
class MlflowStack:
    """moto S3 + ``mlflow server`` on a PostgreSQL database, both restartable."""

    s3: RestartableServer
    mlflow: RestartableServer
    database_url: str
    bucket: str = ARTIFACT_BUCKET
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.mlflow.url

    def s3_server(self) -> S3Server:
        return S3Server(endpoint_url=self.s3.url, credentials=dict(S3_CREDENTIALS))

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url)


@contextmanager
def running_stack(database_url: str, log_dir: Path) -> Iterator[MlflowStack]:
    """Start moto and ``mlflow server`` on ``database_url``; stop both afterwards."""
    s3 = RestartableServer("moto_server", moto_build, "/moto-api/", log_dir / "moto")
    (log_dir / "moto").mkdir()
    (log_dir / "mlflow").mkdir()
    try:
        s3.start()
        s3_environment = {**S3_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3.url}
        S3Server(s3.url, dict(S3_CREDENTIALS)).client().create_bucket(Bucket=ARTIFACT_BUCKET)
        backend = database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        mlflow = RestartableServer("mlflow server", mlflow_build(backend, s3_environment, ARTIFACT_BUCKET), "/health", log_dir / "mlflow")
        try:
            seconds = mlflow.start()
            yield MlflowStack(s3=s3, mlflow=mlflow, database_url=database_url, timings={"mlflow_start_seconds": seconds})
        finally:
            mlflow.stop()
    finally:
        s3.stop()


@pytest.fixture(scope="package")
def mlflow_stack(tmp_path_factory) -> Iterator[MlflowStack]:
    """The stack on a fresh database of the machine's PostgreSQL (dropped at the end)."""
    with fresh_database("reliability") as database_url:
        with running_stack(database_url, tmp_path_factory.mktemp("stack")) as stack:
            yield stack


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this module's own, which a test may restart."""
    cluster = PrivatePostgres()
    try:
        started = time.monotonic()
        cluster.init_and_start()
        FIGURES["private PostgreSQL initdb + start"] = f"{time.monotonic() - started:.1f} s"
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def client_retries(monkeypatch):
    """Set the MLflow client's HTTP retry budget: ``client_retries(n)`` (backoff 1 s, 2 s, 4 s ...).

    MLflow's default (7 retries, factor 2) waits about four minutes before giving up; the tests
    keep the same mechanism with a shorter clock.
    """

    def configure(max_retries: int) -> None:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")

    configure(6)
    return configure


@pytest.fixture
def mlflow_default(mlflow_stack, monkeypatch, client_retries) -> str:
    """Point Airflow's ``mlflow_default`` connection at the stack; the client holds no S3 keys."""
    return connect_airflow_to(mlflow_stack.url, monkeypatch)


def connect_airflow_to(url: str, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": url}))
    for name in list(os.environ):
        if name.startswith("AWS_") or name == "MLFLOW_S3_ENDPOINT_URL":
            monkeypatch.delenv(name)
    return url


@pytest.fixture(autouse=True)
def _single_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait on a shared 2-core box."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability: measured (not asserted)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
