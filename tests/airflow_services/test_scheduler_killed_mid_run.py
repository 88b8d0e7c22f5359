"""Fault: the Airflow scheduler is killed (SIGKILL to its process group) mid-run and restarted.

The deployment is the real one of tests/airflow_services (api-server, scheduler with
LocalExecutor, dag-processor, triggerer on a fresh PostgreSQL metadata database; MLflow on a
SQLite store). A retrain run (approval_mode=auto) is triggered; while ``train`` runs the
scheduler's whole process group is SIGKILLed; a few seconds later a new scheduler starts (checking
for orphaned tasks every 20 s and with a 60 s task heartbeat timeout instead of 300 s each, so the
orphaned try is noticed sooner).

Expected: the run ends (success or failed, not stuck), no task is left running or queued, and
the registry holds at most one version for that run (exactly one when the run succeeded).

A reliability scenario (docs/reliability.md) that lives here to share the package's deployment
instead of starting one of its own; it kills the scheduler, so it runs last (file order).
"""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from include.governance import lifecycle as lc
from tests.airflow_services import stack as st
from tests.airflow_services.test_approval_by_clearing import FIRST_RUN_CONF

pytestmark = pytest.mark.services

MODEL = "movie_recommender"
RUN_TIMEOUT = 480
KILLED_WHILE = ("train", "log", "register")
HEARTBEAT_TIMEOUT_SECONDS = 60
ORPHAN_CHECK_SECONDS = 20


def test_a_run_survives_the_scheduler_being_killed_and_restarted(airflow_stack):
    stack, api = airflow_stack, airflow_stack.api
    api.set_paused(st.DAG_ID, False)
    run_id = api.trigger(st.DAG_ID, {**FIRST_RUN_CONF, "approval_mode": "auto"})["dag_run_id"]

    running = stack.wait_until(
        "a task of the run to be running",
        lambda: next((t for t, state in api.task_states(st.DAG_ID, run_id).items() if state == "running" and t in KILLED_WHILE), None),
        RUN_TIMEOUT,
        interval=0.5,
    )
    stack.kill_service("scheduler")
    killed_at = time.monotonic()
    print(f"scheduler killed while {running} was running")
    time.sleep(5)
    # The task the dead scheduler ran loses its supervisor. The new scheduler first adopts the
    # dead one's task instances (checked every orphaned_tasks_check_interval, default 300 s, once
    # the old scheduler's heartbeat is older than scheduler_health_check_threshold, 30 s), then
    # fails those whose heartbeat is older than the timeout (default 300 s); the retry reruns it.
    # Production keeps the defaults; the test shortens both waits.
    stack.env["AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL"] = str(ORPHAN_CHECK_SECONDS)
    stack.env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = str(HEARTBEAT_TIMEOUT_SECONDS)
    st.start_service(stack, "scheduler", 0)

    def finished():
        run = api.dag_run(st.DAG_ID, run_id)
        return run if run["state"] in ("success", "failed") else None

    run = stack.wait_until(f"run {run_id} to end after the scheduler restart", finished, RUN_TIMEOUT)
    stack.timings[f"scheduler kill -> run ended ({run['state']}, killed during {running})"] = time.monotonic() - killed_at
    tis = api.task_instances(st.DAG_ID, run_id)
    states = {task: ti["state"] for task, ti in tis.items()}
    print(f"run {run['state']}: {states}; {running} try {tis[running]['try_number']}")
    assert not {state for state in states.values()} & {"running", "queued", "scheduled", "restarting", "up_for_retry"}, states

    client = MlflowClient(tracking_uri=stack.mlflow_tracking_uri)
    mine = [mv for mv in client.search_model_versions(f"name = '{MODEL}'") if mv.tags.get(lc.AIRFLOW_RUN_ID) == run_id]
    assert len(mine) <= 1, mine
    if run["state"] == "success":
        assert len(mine) == 1 and states["promote"] == "success", states
        assert client.get_model_version_by_alias(MODEL, lc.CHAMPION).version == mine[0].version
