"""Real services for the tests under tests/services: PostgreSQL databases, an S3 server, MLflow.

PostgreSQL must already run (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres,
a role that may create databases); every database made here is fresh and dropped at the end.
moto's server mode plays S3 over HTTP, and an ``mlflow server`` process runs the topology of
docker-compose.yaml: PostgreSQL backend store, artifacts proxied by the server to an S3 bucket.
Both servers run in their own process groups and the whole group is stopped at teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "services-test-key",
    "AWS_SECRET_ACCESS_KEY": "services-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# The bucket name of .env.example, so the test stack matches the compose stack.
ARTIFACT_BUCKET = "mlflow-artifacts"
# As docker-compose.yaml's mlflow service: webhooks to http on private addresses (loopback here),
# secrets stored encrypted. The webhook list is cached 1 s instead of 60 s: this server is shared
# by the package, so an event of another test may have cached an empty list just before a test
# creates its webhook.
WEBHOOK_SERVER_ENVIRONMENT = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "0AcYdHDIVyi8ZoXyJrJxAPzK6AMbfEDpQdovw7Ao6Ek=",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
}
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 15
# Figures measured while the session runs, printed in pytest's terminal summary.
TIMINGS: dict[str, float] = {}
MOTO = "moto S3 server start-up"
MLFLOW = "mlflow server start-up (fresh PostgreSQL store, bucket created)"


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible endpoint with credentials it accepts."""

    endpoint_url: str
    credentials: dict[str, str]

    def client(self):
        """Return a boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
            region_name=self.credentials["AWS_DEFAULT_REGION"],
        )

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 and MLflow at this endpoint."""
        return {**self.credentials, "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url}


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server`` and where its data lives."""

    url: str
    backend_store_uri: str
    database_url: str
    artifact_bucket: str
    log_path: Path


def free_port() -> int:
    """Return a TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(name: str) -> str:
    """Return POSTGRES_URL with its database replaced by name.

    :param name: database name.
    """
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


def _admin_connection():
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable (set TEST_POSTGRES_URL): {exc}")


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database named <prefix>_<random>, yield its URL, drop it afterwards.

    :param prefix: start of the database name.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with _admin_connection() as admin:
            # FORCE ends sessions a failed test may have left open.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServiceProcess:
    """A server process in its own session, so stopping it stops every child it spawned.

    :param name: used in messages.
    :param command: the command line.
    :param env: its environment.
    :param log_path: where its stdout and stderr go.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_until(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT_SECONDS) -> bool:
        """Poll ready() until it returns True; False if the port was taken; else fail with the log.

        :param ready: the readiness check.
        :param timeout: seconds to wait.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log_text().lower():
                    return False
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if ready():
                return True
            time.sleep(0.2)
        pytest.fail(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        """The process's output so far."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's output."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the whole process group, killing it if it does not exit in time."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        # Children may outlive the leader (or ignore SIGTERM): make sure the group is gone.
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _group_alive(self.process.pid):
            if time.monotonic() > deadline:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
                break
            time.sleep(0.1)


def start_service(
    name: str,
    build: Callable[[int], tuple[list[str], dict[str, str], str]],
    log_path: Path,
    health_path: str,
    attempts: int = 3,
) -> tuple[ServiceProcess, str]:
    """Start a server on a free port and wait until it is healthy; return it and its base URL.

    A port is only known free when it is picked, and servers here take seconds to bind it, so
    readiness also needs the server's own log line announcing the URL (a foreign server that
    took the port answers health checks too), and a lost race is retried on a new port.

    :param name: used in messages.
    :param build: port -> (command, environment, log line that proves this server bound it).
    :param log_path: where its output goes.
    :param health_path: path answering 200 once the server serves, e.g. "/health".
    :param attempts: ports to try.
    """
    for _ in range(attempts):
        port = free_port()
        command, env, bound_line = build(port)
        server = ServiceProcess(name, command, env, log_path)
        url = f"http://127.0.0.1:{port}"
        try:
            if server.wait_until(lambda: bound_line in server.log_text() and _http_ok(url + health_path)):
                return server, url
        except BaseException:
            server.stop()
            raise
        server.stop()
    pytest.fail(f"{name}: no free port after {attempts} attempts:\n{server.log_tail()}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _server_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3 server on a free port, over HTTP."""
    started = time.monotonic()

    def build(port: int) -> tuple[list[str], dict[str, str], str]:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        return command, _server_environment(), f"Running on http://127.0.0.1:{port}"

    server, endpoint = start_service("moto_server", build, tmp_path_factory.mktemp("moto") / "moto.log", "/moto-api/")
    try:
        TIMINGS[MOTO] = time.monotonic() - started
        yield S3Server(endpoint_url=endpoint, credentials=dict(S3_CREDENTIALS))
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory) -> Iterator[MlflowServer]:
    """``mlflow server`` with a fresh PostgreSQL backend store and artifacts proxied to S3 (moto)."""
    started = time.monotonic()
    s3_server.client().create_bucket(Bucket=ARTIFACT_BUCKET)
    with fresh_database("mlflow_test") as db_url:
        # The driver named explicitly: the compose image ships psycopg2 only, and SQLAlchemy 2.1
        # maps a bare postgresql:// to psycopg 3.
        backend_store_uri = db_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        # No MLflow jobs (GenAI scoring, trace archival): the project uses none, and the job
        # runner's extra processes double the start-up CPU and leave a huey store in /dev/shm.
        env = _server_environment(**s3_server.environment, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                                  **WEBHOOK_SERVER_ENVIRONMENT)

        def build(port: int) -> tuple[list[str], dict[str, str], str]:
            # The same topology as docker-compose.yaml's mlflow service.
            command = [
                sys.executable, "-m", "mlflow", "server",
                "--host", "127.0.0.1",
                "--port", str(port),
                "--workers", "1",
                "--backend-store-uri", backend_store_uri,
                "--serve-artifacts",
                "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}/",
                "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
            ]
            return command, env, f"Uvicorn running on http://127.0.0.1:{port}"

        log_path = tmp_path_factory.mktemp("mlflow-server") / "mlflow.log"
        server, url = start_service("mlflow server", build, log_path, "/health")
        try:
            TIMINGS[MLFLOW] = time.monotonic() - started
            yield MlflowServer(url=url, backend_store_uri=backend_store_uri, database_url=db_url,
                               artifact_bucket=ARTIFACT_BUCKET, log_path=log_path)
        finally:
            server.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the figures measured by the service fixtures."""
    if TIMINGS:
        terminalreporter.section("service timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
        if {MOTO, MLFLOW} <= TIMINGS.keys():
            terminalreporter.write_line(f"stack start-up (moto + mlflow server healthy): {TIMINGS[MOTO] + TIMINGS[MLFLOW]:.1f} s")
