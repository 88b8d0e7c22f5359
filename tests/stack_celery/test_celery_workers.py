"""The celery profile for real: CeleryExecutor, Redis broker, PostgreSQL results, two workers.

Train and log go to the `training` queue (both workers take it, as the compose file's default
AIRFLOW_WORKER_QUEUES says). A worker SIGKILLed while it trains (every process of it, as when
its container or machine dies) loses the task; the scheduler notices the missing heartbeat,
retries it, and the other worker finishes the run with exactly one registered version.
"""

from __future__ import annotations

import time
import pytest

from scripts.stack.processes import descendants
from tests.stack.conftest import TIMINGS
from tests.stack.harness import DAG_ID, LONG_TRAIN_RUN_CONF, run_finished, wait_until

pytestmark = pytest.mark.services
MODEL = "stack_celery_recommender"
RUN_TIMEOUT = 1200


def service_running(stack, pid: int | None) -> str | None:
    """The stack service whose process tree holds ``pid`` (a task process of a worker)."""
    if not pid:
        return None
    for name, entry in stack.state["services"].items():
        if entry.get("pid") and pid in descendants({entry["pid"]}):
            return name
    return None


def test_a_worker_killed_during_train_loses_nothing_and_registers_one_version(compose_stack):
    api = compose_stack.api()
    wait_until("the DAG to be parsed", lambda: api.get_dag(DAG_ID), 300, compose_stack)
    api.set_paused(DAG_ID, False)
    started = time.monotonic()
    run_id = api.trigger(DAG_ID, {**LONG_TRAIN_RUN_CONF, "model_name": MODEL})["dag_run_id"]

    def training_worker():
        train = api.task_instances(DAG_ID, run_id).get("train") or {}
        return train.get("state") == "running" and service_running(compose_stack, train.get("pid"))

    worker = wait_until("train to run on a worker", training_worker, RUN_TIMEOUT, compose_stack, interval=1.0)
    assert worker.startswith("airflow-worker-"), worker
    killed = compose_stack.runner("kill", worker)
    assert killed.returncode == 0, killed.stdout

    def retried_on():
        train = api.task_instances(DAG_ID, run_id).get("train") or {}
        if train.get("try_number", 1) >= 2 and train.get("state") in ("running", "success"):
            return service_running(compose_stack, train.get("pid")) or train["state"]
        return None

    retry = wait_until("train to be retried", retried_on, RUN_TIMEOUT, compose_stack, interval=1.0)
    assert retry != worker, f"train was retried on the worker that was killed ({worker})"
    state = wait_until(f"run {run_id} to finish", lambda: run_finished(api, run_id), RUN_TIMEOUT, compose_stack)
    TIMINGS["trigger -> @champion with a worker killed (Celery), seconds"] = time.monotonic() - started
    assert state == "success", compose_stack.diagnostics()
    tasks = api.task_instances(DAG_ID, run_id)
    assert tasks["train"]["try_number"] == 2
    assert tasks["train"]["queue"] == tasks["log"]["queue"] == "training"
    assert tasks["register"]["queue"] == "default"
    versions = compose_stack.mlflow("ADMIN", "GET", "model-versions/search", params={"filter": f"name='{MODEL}'"}).json()
    assert [mv["version"] for mv in versions["model_versions"]] == ["1"]
    assert compose_stack.alias(MODEL, "champion") == "1"
    api.close()
