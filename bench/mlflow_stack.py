"""A real ``mlflow server`` on a PostgreSQL database, for benchmarks (no pytest needed).

The server runs in its own process group (``mlflow server`` spawns workers) and the whole group
is stopped on exit. The database is either fresh (dropped afterwards) or a named one kept between
runs, so a populated registry can be measured again without repopulating it.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START_TIMEOUT_SECONDS = 180
STOP_TIMEOUT_SECONDS = 15


class StackError(RuntimeError):
    """The server or the database could not be brought up; the message says which and why."""


@dataclass(frozen=True)
class MlflowStack:
    """A running server and the database behind it."""

    url: str
    database_url: str
    log_path: Path


def database_url(name: str) -> str:
    """POSTGRES_URL with its database replaced by ``name``."""
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


def _admin():
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise StackError(f"PostgreSQL at {POSTGRES_URL} is not reachable (set TEST_POSTGRES_URL): {exc}") from exc


def database_exists(name: str) -> bool:
    with _admin() as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(name: str) -> str:
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(name: str) -> None:
    with _admin() as admin:
        # FORCE ends sessions a killed server may have left open.
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            return
        time.sleep(0.1)


@contextmanager
def mlflow_server(db_url: str, workdir: Path, *, workers: int = 1) -> Iterator[MlflowStack]:
    """Run ``mlflow server`` on ``db_url`` with a local artifact root under ``workdir``.

    :param db_url: PostgreSQL URL of the backend store (migrated by the server on start).
    :param workdir: directory for the artifact root and the server log.
    :param workers: uvicorn workers.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # psycopg2 named explicitly, as the compose image and tests/services do.
    backend = db_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--backend-store-uri", backend,
        "--default-artifact-root", str(workdir / "artifacts"),
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
    ]
    log_path = workdir / "mlflow-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not (f"127.0.0.1:{port}" in log_path.read_text(errors="replace") and _healthy(url)):
            if process.poll() is not None:
                raise StackError(f"mlflow server exited with {process.returncode}; log: {log_path}")
            if time.monotonic() > deadline:
                raise StackError(f"mlflow server not healthy after {START_TIMEOUT_SECONDS} s; log: {log_path}")
            time.sleep(0.3)
        yield MlflowStack(url=url, database_url=db_url, log_path=log_path)
    finally:
        _stop_group(process)
