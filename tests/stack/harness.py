"""The compose stack as a user starts it, for the tests: ``python -m scripts.stack up``.

The runner is started as its command line (what ``make stack`` runs), from a clean environment,
with an .env of generated secrets (``scripts.stack.envfile``, what a user without an .env gets)
and free ports. Everything else the tests learn from the runner's state file and the .env, as a
user would: URLs, logins, and ``exec SERVICE -- CMD`` for commands inside a service.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scripts.stack import envfile, processes
from scripts.stack.compose import env_file_values
from tests.airflow_services.rest import AirflowApi

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "movie_recommender_retrain"
REVIEW_DAG_ID = "movie_recommender_review"
# The latency gate loosened: on two shared cores the p95 of a 100-row request is not what these
# tests are about (bench/ and the validation tests cover it).
POLICY_OVERRIDES = {"max_inference_time_ms": 20000}
# The smallest data the default gates pass on (as tests/airflow_services'): each task is seconds
# of work, so a run is mostly the stack's own scheduling, which is what these tests are about.
RUN_CONF = {"data_source": "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=3", "policy_overrides": POLICY_OVERRIDES}
# Enough data that train runs for a while: long enough to catch it running and kill its worker.
LONG_TRAIN_RUN_CONF = {"data_source": "synthetic:n_ratings=20000,seed=7", "policy_overrides": POLICY_OVERRIDES}
UP_TIMEOUT = 900
T = TypeVar("T")


@dataclass
class ComposeStack:
    state_dir: Path
    env_file: Path
    up_seconds: float

    @property
    def env(self) -> dict[str, str]:
        return env_file_values(self.env_file)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "stack.json").read_text())

    def port(self, service: str, container_port: int) -> int:
        return next(h for s, c, h in self.state["ports"] if s == service and c == container_port)

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.port('airflow-apiserver', 8080)}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.port('mlflow', 5000)}"

    def runner(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``python -m scripts.stack --state-dir <state> ARGS`` from a clean environment."""
        return run_runner(self.state_dir, *args, timeout=timeout)

    def exec(self, service: str, *command: str, extra_env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
        """A command with a service's environment (``exec``), plus ``extra_env``."""
        args = ["exec", service, "--"]
        if extra_env:
            args += ["env", *(f"{k}={v}" for k, v in extra_env.items())]
        return self.runner(*args, *command, timeout=timeout)

    def api(self, user: str | None = None, password: str | None = None) -> AirflowApi:
        return AirflowApi.login(self.airflow_url, user or self.env["AIRFLOW_ADMIN_USERNAME"],
                                password or self.env["AIRFLOW_ADMIN_PASSWORD"])

    def mlflow(self, role: str, method: str, path: str, api: str = "2.0", **kwargs: Any) -> "requests.Response":
        """One MLflow REST call as the stack's ``TRAINER``, ``GOVERNANCE`` or ``ADMIN`` account.

        :param path: under /api/<api>/mlflow/, e.g. ``registered-models/alias``.
        """
        import requests

        user, password = self.env[f"MLFLOW_{role}_USERNAME"], self.env[f"MLFLOW_{role}_PASSWORD"]
        return requests.request(method, f"{self.mlflow_url}/api/{api}/mlflow/{path}", auth=(user, password), timeout=60, **kwargs)

    def version(self, model: str, version: str) -> dict[str, Any]:
        response = self.mlflow("ADMIN", "GET", "model-versions/get", params={"name": model, "version": version})
        response.raise_for_status()
        mv = response.json()["model_version"]
        mv["tags"] = {tag["key"]: tag["value"] for tag in mv.get("tags", [])}
        return mv

    def alias(self, model: str, alias: str) -> str | None:
        response = self.mlflow("ADMIN", "GET", "registered-models/alias", params={"name": model, "alias": alias})
        return response.json()["model_version"]["version"] if response.status_code == 200 else None

    def logs(self, service: str, lines: int = 40) -> str:
        return processes.tail(self.state_dir / "logs" / f"{service}.log", lines)

    def diagnostics(self) -> str:
        if not (self.state_dir / "stack.json").exists():
            return f"(the stack's state in {self.state_dir} is gone)"
        parts = [f"--- {name}\n{self.logs(name, 25)}" for name in self.state["services"]]
        task_logs = sorted((self.state_dir / "volumes" / "airflow-logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
        parts += [f"--- task log {p.relative_to(self.state_dir)}\n{processes.tail(p, 25)}" for p in task_logs[-5:]]
        return "\n".join(parts)


def clean_env() -> dict[str, str]:
    """What a user's shell has before anything is activated."""
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def run_runner(state_dir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    process = subprocess.Popen([sys.executable, "-m", "scripts.stack", "--state-dir", str(state_dir), *args],
                               cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM: the runner stops what it half-started.
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=120)
        raise AssertionError(f"stack {' '.join(args)} ran longer than {timeout:.0f} s:\n{out[-6000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, out, None)


def start_stack(root: Path, overrides: dict[str, str], up_args: list[str]) -> ComposeStack:
    env_file = envfile.generate(REPO / ".env.example", root / "stack.env", overrides)
    state_dir = root / "state"
    started = time.monotonic()
    up = run_runner(state_dir, "up", "--env-file", str(env_file), "--free-ports", *up_args, timeout=UP_TIMEOUT)
    if up.returncode != 0:
        raise AssertionError(f"stack up failed ({up.returncode}):\n{up.stdout[-8000:]}")
    return ComposeStack(state_dir=state_dir, env_file=env_file, up_seconds=time.monotonic() - started)


@contextmanager
def running_stack(request, prefix: str, overrides: dict[str, str], up_args: list[str]) -> Iterator[ComposeStack]:
    """A stack for a package's tests: stopped (``down``) afterwards, also on failure; its
    files are kept when a test failed or a process survived ``down``."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    failed_before = request.session.testsfailed
    try:
        yield start_stack(root, overrides, up_args)
    finally:
        survivors = stop_stack(root / "state") if (root / "state" / "stack.json").exists() else []
        if request.session.testsfailed == failed_before and not survivors:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\ncompose stack files kept in {root}")
        assert not survivors, "processes of the stack survived `down`: " + "; ".join(
            f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}" for pid in survivors if Path(f"/proc/{pid}").exists())


def stop_stack(state_dir: Path) -> list[int]:
    """``down``; return the pids of stack processes still alive afterwards (those that
    carry the stack's marker, and every process that descended from a service before)."""
    state = json.loads((state_dir / "stack.json").read_text())
    leaders = {e["pid"] for e in state["services"].values() if e.get("pid")}
    family = {**processes.descendants(leaders), **processes.with_start_times(leaders)}
    # Data and logs kept: the caller deletes them, or keeps them when a test failed.
    down = run_runner(state_dir, "down", timeout=300)
    assert down.returncode == 0, down.stdout
    alive = set(processes.still_alive(family))
    return sorted(alive | set(processes.marked(f"{processes.STACK_MARKER}={state_dir}".encode())))


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, stack: ComposeStack, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{stack.diagnostics()}")
        time.sleep(interval)


def run_finished(api: AirflowApi, run_id: str, dag_id: str = DAG_ID) -> str | None:
    state = api.dag_run(dag_id, run_id)["state"]
    return state if state in ("success", "failed") else None
