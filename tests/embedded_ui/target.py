"""`make airflow-ui` started as a user starts it, once for the package: the ``airflow_ui`` fixture.

The target runs from a clean environment: a minimal PATH (no venv), HOME and LANG, nothing of
Airflow's; only the DAG's own knobs (no schedule, the approval poke interval) are passed, as a
user may export them. State goes to a temp dir through the target's ``LOCAL=``, the port
through ``AIRFLOW_UI_PORT=``, so a user's .local/ and port 8080 are left alone. One start
serves the package's tests (they keep apart by model name); every process it started is
stopped afterwards (SIGTERM to its process group, then SIGKILL) and none may survive.

Users are the embedded default's: ``admin`` triggers the runs (and so submits the versions),
``reviewer`` (role ``user``) approves, answers the Required Actions form and clears tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog
from tests.airflow_services import stack as st
from tests.airflow_services.rest import AirflowApi

# Measured figures of this session, printed in the terminal summary (never asserted).
TIMINGS: dict[str, float] = {}
REPO = Path(__file__).resolve().parents[2]
DAG_ID = "movie_recommender_retrain"
MODEL = "movie_recommender"
# A user who runs the UI may export the DAG's knobs; these are the services tests' (stack.py
# explains why the poke interval may not be shorter: apache/airflow#71172).
DAG_KNOBS = {"MOVIE_RECOMMENDER_SCHEDULE": "none", "MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS": str(st.APPROVAL_POKE_SECONDS)}
ADMIN, REVIEWER = "admin", "reviewer"
START_TIMEOUT = 300
RUN_TIMEOUT = 420
FINISHED = ("success", "failed")


@dataclass
class AirflowUi:
    """The running target: its state dir, its REST clients, the MLflow store and audit table."""

    local: Path
    stack: st.AirflowStack
    admin: AirflowApi
    reviewer: AirflowApi
    mlflow: MlflowClient
    audit: AuditLog

    def wait_for_run(self, run_id: str) -> dict:
        return self.stack.wait_until(
            f"run {run_id} to finish",
            lambda: (run := self.admin.dag_run(DAG_ID, run_id))["state"] in FINISHED and run,
            RUN_TIMEOUT,
        )

    def version_of(self, run_id: str) -> str:
        """The model version the run registered."""
        found = [mv for mv in self.mlflow.search_model_versions(f"name = '{MODEL}'") if mv.tags.get(lc.AIRFLOW_RUN_ID) == run_id]
        assert len(found) == 1, f"run {run_id} registered {len(found)} versions"
        return str(found[0].version)

    def hitl_detail(self, run_id: str, task_id: str) -> dict:
        return self.admin.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails")


def clean_environment() -> dict[str, str]:
    """What a user's fresh shell has: no venv on PATH, no AIRFLOW_* settings."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        **DAG_KNOBS,
    }


@pytest.fixture(scope="package")
def airflow_ui(request):
    """`make airflow-ui LOCAL=<tmp> AIRFLOW_UI_PORT=<free>` up, healthy, logged in, the DAG parsed."""
    if subprocess.run(["make", "-C", str(REPO), "-q", ".venv/.installed"], capture_output=True).returncode != 0:
        pytest.skip(".venv is missing or older than requirements.txt: `make airflow-ui` would install it (run `make venv`)")
    failures_before = request.session.testsfailed
    local = Path(tempfile.mkdtemp(prefix="make-airflow-ui-"))
    port = st.free_port()
    base_url = f"http://127.0.0.1:{port}"
    output = local / "make-airflow-ui.out"
    env = clean_environment()
    started = time.monotonic()
    with output.open("wb") as out:
        process = subprocess.Popen(
            ["make", "-C", str(REPO), "airflow-ui", f"LOCAL={local}", f"AIRFLOW_UI_PORT={port}"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    # stop_services finds leftovers by the target's AIRFLOW_HOME, which the Makefile derives from LOCAL.
    stack = st.AirflowStack(
        home=local / "airflow", base_url=base_url, env=env, database="",
        mlflow_tracking_uri=f"sqlite:///{local / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_location=(local / "mlflow" / "artifacts").as_uri(),
        services=[st.Service("make airflow-ui", process, output)],
    )
    apis: list[AirflowApi] = []
    try:
        stack.wait_until(
            "the api-server up and scheduler, dag-processor and triggerer heartbeats",
            lambda: st.all_healthy(st.healthy_components(base_url)),
            START_TIMEOUT,
        )
        TIMINGS["make airflow-ui -> healthy"] = time.monotonic() - started
        passwords = json.loads((stack.home / "simple_auth_manager_passwords.json.generated").read_text())
        apis += [AirflowApi.login(base_url, ADMIN, passwords[ADMIN]), AirflowApi.login(base_url, REVIEWER, passwords[REVIEWER])]
        admin, reviewer = apis
        stack.wait_until(f"the DAG {DAG_ID} to be parsed", lambda: admin.get_dag(DAG_ID), START_TIMEOUT)
        TIMINGS["make airflow-ui -> DAG parsed"] = time.monotonic() - started
        stack.api = admin
        yield AirflowUi(
            local, stack, admin, reviewer, MlflowClient(tracking_uri=stack.mlflow_tracking_uri),
            AuditLog(f"sqlite:///{stack.home / 'governance_audit.db'}"),
        )
    except BaseException:
        failures_before = -1  # keep the state of a failed start-up
        raise
    finally:
        for api in apis:
            api.close()
        stopping = time.monotonic()
        forced, survivors = st.stop_services(stack)
        TIMINGS["stop (SIGTERM, then SIGKILL)"] = time.monotonic() - stopping
        if forced:
            print(f"\nmake airflow-ui: stopped by SIGKILL: {', '.join(forced)}")
        if failures_before == request.session.testsfailed and not survivors:
            shutil.rmtree(local, ignore_errors=True)
        else:
            print(f"\nmake airflow-ui state and output kept in {local}")
        assert not survivors, f"processes started by make airflow-ui survived teardown: {survivors}"
