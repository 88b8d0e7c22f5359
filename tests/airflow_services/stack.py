"""Start and stop a real Airflow 3 deployment for the services tests.

PostgreSQL metadata database (a fresh one per session), then api-server, scheduler (LocalExecutor),
dag-processor and triggerer as separate processes, each in its own process group, logging to
files in the stack's temp dir. MLflow is a SQLite store in the same temp dir, reached by the
tasks through the ``mlflow_default`` connection.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from scripts.stack.processes import _process_table, descendants as _descendants
from tests.airflow_services.rest import AirflowApi

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "movie_recommender_retrain"
# The admin connection used to create and drop the session's database (trust auth in CI).
POSTGRES_ADMIN_URL = os.environ.get("SERVICES_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Started together; stopped together (each group gets SIGTERM, then SIGKILL).
SERVICE_COMMANDS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
}
API_USER = "ops"
# A second person: who answers the human-in-the-loop form (the submitter may not approve).
REVIEWER_USER = "alice"
APPROVAL_POKE_SECONDS = 20
# What the scheduler logs when it fails a task over a late executor event (apache/airflow#71172).
STALE_EVENT_MESSAGE = "but the task instance's state attribute is"
# What it logs once it has handled the end of a task's process; answering a paused task before
# that makes Airflow 3.3.2 fail the resumed task over the late event (apache/airflow#71172).
EXECUTOR_EVENT = "Received executor event with state success for task instance"
AFTER_EXECUTOR_EVENT_SECONDS = 2

T = TypeVar("T")


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_path: Path


@dataclass
class AirflowStack:
    """A running deployment: where it is, how to reach it, and what it started."""

    home: Path
    base_url: str
    env: dict[str, str]
    database: str
    mlflow_tracking_uri: str
    mlflow_artifact_location: str
    api: AirflowApi | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.home / "service-logs"

    def check_alive(self) -> None:
        """Fail at once, with its log, when a service has exited."""
        for service in self.services:
            code = service.process.poll()
            if code is not None:
                raise AssertionError(
                    f"airflow {service.name} exited with code {code}\n{tail(service.log_path, 60)}"
                )

    def kill_service(self, name: str) -> Service:
        """Crash one service: SIGKILL to its process group. It leaves ``services`` (so
        ``check_alive`` does not fail on it); its log is kept as ``<name>-killed.log``."""
        service = next(s for s in self.services if s.name == name)
        _kill_group(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=30)
        self.services.remove(service)
        service.log_path = service.log_path.rename(service.log_path.with_name(f"{name}-killed.log"))
        return service

    def wait_until(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the services' logs on timeout.

        :param what: what is awaited, for the failure message.
        :param probe: returns the awaited value, or a falsy value to keep waiting.
        :param timeout: seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)

    def scheduler_log(self) -> Path:
        """The scheduler's output: its own log, or the one output of ``airflow standalone``."""
        return next((s.log_path for s in self.services if s.name == "scheduler"), self.services[0].log_path)

    def wait_for_executor_events(self, run_id: str, task_id: str, count: int, timeout: float = 120) -> None:
        """Wait until the scheduler has handled ``count`` ends of the task's processes (as it logs
        them), so that an answer to the paused task cannot race the last one."""
        needle = f"task_id='{task_id}', run_id='{run_id}'"

        def handled():
            lines = self.scheduler_log().read_text(errors="replace").splitlines()
            return sum(EXECUTOR_EVENT in line and needle in line for line in lines) >= count

        self.wait_until(f"the scheduler to handle end #{count} of {task_id}", handled, timeout)
        time.sleep(AFTER_EXECUTOR_EVENT_SECONDS)

    def stale_event_failures(self) -> list[str]:
        """Scheduler log lines where a task was failed over a late executor event."""
        log = next((s.log_path for s in self.services if s.name == "scheduler"), None)
        if log is None or not log.exists():
            return []
        return [line[:400] for line in log.read_text(errors="replace").splitlines() if STALE_EVENT_MESSAGE in line]

    def diagnostics(self, lines: int = 40) -> str:
        """The tails of every service log and of the latest task logs."""
        parts = [f"--- {s.name} ({s.log_path}) ---\n{tail(s.log_path, lines)}" for s in self.services]
        task_logs = sorted((self.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
        for path in task_logs[-6:]:
            parts.append(f"--- task log {path.relative_to(self.home)} ---\n{tail(path, 25)}")
        return "\n".join(parts)

    def airflow(self, *args: str, timeout: float, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run one airflow CLI command in the stack's environment, in its own process group.

        :param timeout: seconds; the command's whole group is killed when it runs longer.
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env={**self.env, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)
            out, _ = process.communicate()
            raise AssertionError(f"airflow {' '.join(args)} ran longer than {timeout:.0f} s:\n{out[-6000:]}") from None
        return subprocess.CompletedProcess(process.args, process.returncode, out, None)


def tail(path: Path, lines: int) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_connection():
    import psycopg2

    connection = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=10)
    connection.autocommit = True
    return connection


def create_database(name: str) -> str:
    """Create an empty database; return its SQLAlchemy URL for Airflow (psycopg2 driver)."""
    import psycopg2

    try:
        connection = _admin_connection()
    except psycopg2.OperationalError as exc:
        raise AssertionError(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} (set SERVICES_POSTGRES_URL, or deselect "
            f"these tests with -m 'not services'): {exc}"
        ) from exc
    # Not `with connection`: psycopg2 opens a transaction there, and CREATE DATABASE refuses one.
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    parts = urlsplit(POSTGRES_ADMIN_URL)
    return urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{name}", "", ""))


def drop_database(name: str) -> None:
    connection = _admin_connection()
    with connection.cursor() as cursor:
        # FORCE: a connection left over by a killed process must not keep the database alive.
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def build_env(home: Path, database_url: str, port: int, tracking_uri: str, artifact_location: str) -> dict[str, str]:
    """The environment shared by every Airflow process of the stack (and the CLI commands).

    :param home: AIRFLOW_HOME; also the marker that finds the stack's processes at teardown.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        # Nothing of the test process's own Airflow or MLflow setup leaks into the stack.
        if not key.startswith(("AIRFLOW", "MLFLOW_TRACKING")) and key != "PYTHONPATH"
    }
    secret = secrets.token_urlsafe(32)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
            "AIRFLOW_PROJECT_DIR": str(REPO),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Tasks reach the api-server's Execution API with JWTs every process signs and checks
            # with the same secret, as in docker-compose.yaml.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            # The scheduler's and triggerer's log servers default to fixed ports (8793, 8794).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__API_AUTH__JWT_ISSUER": "movie-recommender-services-test",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # Simple auth manager with a named admin and a password file, as docker-compose.yaml.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:admin,{REVIEWER_USER}:op",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
            # Two cores shared with other work: few parallel task processes and parsers.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "OMP_NUM_THREADS": "1",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "generic", "host": tracking_uri, "extra": {"artifact_location": artifact_location}}
            ),
            # Triggered runs only: a schedule could start a run of its own when the DAG is unpaused.
            "MOVIE_RECOMMENDER_SCHEDULE": "none",
            # Not shorter: Airflow 3.3 fails a reschedule-mode sensor when a poke's executor
            # "success" arrives after the next poke already started (apache/airflow#71172), and on
            # a loaded machine a finished poke's process takes seconds to exit. With a 15 s
            # approval timeout the sensor reschedules once and times out on its second poke.
            "MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS": str(APPROVAL_POKE_SECONDS),
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_service(stack: AirflowStack, name: str, port: int) -> Service:
    """Start one Airflow service in a new session (its own process group), logging to a file."""
    args = [arg.format(port=port) for arg in SERVICE_COMMANDS[name]]
    log_path = stack.logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=stack.env,
            cwd=stack.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(name, process, log_path)
    stack.services.append(service)
    return service


def healthy_components(base_url: str) -> dict[str, Any] | None:
    """The api-server's health report, or None while it does not answer."""
    try:
        response = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=10.0)
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


def all_healthy(report: dict[str, Any] | None) -> bool:
    names = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return bool(report) and all((report.get(name) or {}).get("status") == "healthy" for name in names)


def stop_services(stack: AirflowStack, grace: float = 30.0) -> tuple[list[str], list[int]]:
    """Stop every process the stack started; return what had to be killed hard, and survivors.

    SIGTERM to each service's process group (the service and its children: LocalExecutor
    workers, log servers, parser processes, the uvicorn worker), the api-server's once the
    scheduler is gone; SIGKILL to a group whose leader is still alive after the grace period.
    Then SIGTERM, and SIGKILL after 10 s, to every process that descended from a service before
    the stop and is still alive (task processes run in groups of their own), and to any process
    still carrying the stack's AIRFLOW_HOME in its environment.
    """
    family = _descendants({service.process.pid for service in stack.services})
    forced = []
    deadline = time.monotonic() + grace
    # The api-server last: a task the scheduler still runs reports its end through it.
    for service in stack.services:
        if service.name != "api-server":
            _kill_group(service.process.pid, signal.SIGTERM)
    for service in stack.services:
        if service.name == "scheduler":
            _wait(service, deadline)
    for service in stack.services:
        if service.name == "api-server":
            _kill_group(service.process.pid, signal.SIGTERM)
    for service in stack.services:
        if not _wait(service, deadline):
            # The leader is alive, so its group id is still ours to kill.
            _kill_group(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout=10)
            forced.append(service.name)
    marker = f"AIRFLOW_HOME={stack.home}".encode()

    def leftovers() -> list[int]:
        table = _process_table()
        alive = {pid for pid, started in family.items() if pid in table and table[pid][1] == started}
        return sorted(alive | set(_pids_with_env(marker)))

    remaining = leftovers()
    for pid in remaining:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while remaining and time.monotonic() < deadline:
        time.sleep(0.2)
        remaining = leftovers()
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
        forced.append(f"pid {pid}")
    if remaining:
        time.sleep(1)
    return forced, leftovers()


def _wait(service: Service, deadline: float) -> bool:
    """Wait for a service to exit until the deadline; return whether it did."""
    try:
        service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _pids_with_env(marker: bytes) -> list[int]:
    """Processes whose environment holds ``marker`` (not those that rewrote it: setproctitle)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if marker in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids
