"""Real servers that a fault-injection test can crash and bring back on the same address.

``RestartableServer`` runs one server (``mlflow server``, moto's S3) in its own process group:
``kill()`` is a crash (SIGKILL to the whole group, no shutdown code runs), ``start()`` after it
brings the server back on the same port with the same data (for ``mlflow server``: the same
PostgreSQL backend store). ``PrivatePostgres`` is a PostgreSQL cluster of the test's own in a
temp dir, so it can be restarted without touching the machine's shared PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.services.conftest import ServiceProcess, _group_alive, _http_ok, _server_environment, free_port, start_service

# port -> (command, environment, the log line that proves this server bound the port)
Build = Callable[[int], tuple[list[str], dict[str, str], str]]
POSTGRES_BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
KILL_TIMEOUT_SECONDS = 15


class RestartableServer:
    """A server that can be crashed and restarted on the port it first bound.

    :param name: used in messages and log file names.
    :param build: port -> (command, environment, bound log line).
    :param health_path: answers 200 once the server serves.
    :param log_dir: one log file per start goes here.
    """

    def __init__(self, name: str, build: Build, health_path: str, log_dir: Path) -> None:
        self.name = name
        self.build = build
        self.health_path = health_path
        self.log_dir = log_dir
        self.port: int | None = None
        self.process: ServiceProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start (first time: on a free port; later: on the same port); return seconds until healthy."""
        started = time.monotonic()
        self.starts += 1
        log_path = self.log_dir / f"{self.name.replace(' ', '-')}-{self.starts}.log"
        if self.port is None:
            self.process, url = start_service(self.name, self.build, log_path, self.health_path)
            self.port = int(url.rsplit(":", 1)[1])
        else:
            command, env, bound_line = self.build(self.port)
            self.process = ServiceProcess(self.name, command, env, log_path)
            if not self.process.wait_until(lambda: bound_line in self.process.log_text() and _http_ok(self.url + self.health_path)):
                raise AssertionError(f"{self.name} could not bind its old port {self.port} again:\n{self.process.log_tail()}")
        return time.monotonic() - started

    def kill(self) -> None:
        """Crash the server: SIGKILL to its whole process group, then wait until the group is gone."""
        pgid = self.process.process.pid
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.process.process.wait(timeout=KILL_TIMEOUT_SECONDS)
        deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_text(self) -> str:
        """Everything every start of the server has logged."""
        return "".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))


def moto_build(port: int) -> tuple[list[str], dict[str, str], str]:
    """moto's S3 server (in-memory: a restart starts empty)."""
    env = _server_environment()
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env, f"Running on http://127.0.0.1:{port}"


def mlflow_build(backend_store_uri: str, s3_environment: dict[str, str], bucket: str) -> Build:
    """``mlflow server`` as in docker-compose.yaml: PostgreSQL store, artifacts proxied to S3."""

    def build(port: int) -> tuple[list[str], dict[str, str], str]:
        env = _server_environment(**s3_environment, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
            "--backend-store-uri", backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination", f"s3://{bucket}/",
            "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
        ]
        return command, env, f"Uvicorn running on http://127.0.0.1:{port}"

    return build


class PrivatePostgres:
    """A PostgreSQL 15 cluster in a temp dir on a free port, run as the ``postgres`` OS user.

    Trust authentication on 127.0.0.1 only. ``restart()`` is ``pg_ctl restart -m fast``: every
    session is cut, as when a managed database fails over or is patched.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="reliability-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.running = False
        shutil.chown(self.root, user="postgres", group="postgres")

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def init_and_start(self) -> None:
        self._as_postgres([str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], timeout=120)
        self.running = True
        self._pg_ctl("start")

    def restart(self) -> float:
        """Restart with fast shutdown (sessions cut, transactions rolled back); return seconds."""
        started = time.monotonic()
        self._pg_ctl("restart", "-m", "fast")
        return time.monotonic() - started

    def down(self) -> None:
        """Stop the server (fast shutdown: sessions cut, open transactions rolled back)."""
        self._pg_ctl("stop", "-m", "fast")

    def up(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        """Stop the cluster (immediate) and delete its files."""
        try:
            if self.running:
                self._as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate", "-w"], timeout=60, check=False)
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            [str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", action, *extra],
            timeout=120,
        )

    def _as_postgres(self, command: list[str], timeout: float, check: bool = True) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise AssertionError(f"{' '.join(command[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{log}")
