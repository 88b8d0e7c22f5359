"""End to end: two retrain runs under dag.test() leave the whole story in the audit trail.

The first run is approved by the policy; the second waits for a reviewer who approves it with
the CLI while the run waits. The audit table then holds every event of both runs in order, the
version's run carries the same events as JSON, and one command answers who put v2 in
production, when, and on what evidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog
from include.governance.registry import get_aliases

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL = "movie_recommender"
SMALL_DATA = "synthetic:n_users=200,n_movies=800,n_ratings=20000,seed=11"


@pytest.fixture
def retrain_dag(parse_dag):
    return parse_dag("movie_recommender_retrain")


@pytest.fixture
def audit_path(tmp_path, monkeypatch):
    path = tmp_path / "audit.db"
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(path))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    return path


def run(dag, **conf):
    from airflow.utils.state import DagRunState

    dag_run = dag.test(run_conf={"data_source": SMALL_DATA, **conf})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == DagRunState.SUCCESS, states
    return dag_run.run_id


def approve_when_waiting(client, tracking_uri: str, audit_path: Path, seen: dict) -> None:
    """A reviewer who approves the first waiting version from the command line."""
    from include.governance.cli import main

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for mv in client.search_model_versions(f"name = '{MODEL}'"):
            if mv.tags.get(lc.APPROVAL_STATUS) == "pending":
                seen["code"] = main([
                    "--tracking-uri", tracking_uri, "--audit-db", str(audit_path),
                    "approve", MODEL, str(mv.version), "--reviewer", "alice", "--notes", "holdout report looks right",
                ])
                return
        time.sleep(0.5)


def test_every_event_of_two_runs_is_in_the_audit_trail_in_order(
    retrain_dag, parse_dag, mlflow_connection, mlflow_client, audit_path, tmp_path
):
    first_run = run(retrain_dag)

    seen: dict = {}
    reviewer = threading.Thread(
        target=approve_when_waiting,
        args=(mlflow_client, mlflow_connection["tracking_uri"], audit_path, seen),
        daemon=True,
    )
    reviewer.start()
    fresh = parse_dag("movie_recommender_retrain")
    second_run = run(fresh, approval_mode="manual", approval_timeout_minutes=4)
    reviewer.join(timeout=5)
    assert seen == {"code": 0}
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: "2", lc.PREVIOUS_CHAMPION: "1"}

    events = AuditLog(f"sqlite:///{audit_path}").events()
    assert [(e.event.value, e.version, e.actor) for e in events] == [
        ("registered", "1", "dag_test"),
        ("validated", "1", "dag_test"),
        ("approval_requested", "1", "dag_test"),
        ("approved", "1", "policy"),
        ("promoted", "1", "dag_test"),
        ("registered", "2", "dag_test"),
        ("validated", "2", "dag_test"),
        ("approval_requested", "2", "dag_test"),
        ("approved", "2", "alice"),  # one row: the CLI and the sensor record the same decision
        ("promoted", "2", "dag_test"),
        ("archived", "1", "dag_test"),
    ]
    runs = {e.dag_run_id for e in events if e.source == "airflow"}
    assert runs == {first_run, second_run}
    assert {e.dag_run_id for e in events[:5]} == {first_run}
    assert {e.dag_run_id for e in events[5:] if e.source == "airflow"} == {second_run}
    occurred = [e.occurred_at for e in events]
    assert occurred[:5] == sorted(occurred[:5])
    promoted = events[9]
    assert (promoted.counterpart_version, promoted.details["approved_by"]) == ("1", "alice")
    assert set(promoted.metrics) >= {"accuracy", "precision", "recall"}
    # Whichever of the CLI and the sensor got there first wrote it; the other added nothing.
    assert events[8].source in ("cli", "airflow") and events[8].details["notes"] == "holdout report looks right"

    # The same events for v2, in order, on v2's run.
    v2 = mlflow_client.get_model_version(MODEL, "2")
    with open(mlflow_client.download_artifacts(v2.run_id, "audit/events_v2.json", str(tmp_path))) as handle:
        mirrored = json.load(handle)["events"]
    assert [e["id"] for e in mirrored] == [e.id for e in events if e.version == "2"]

    # "Who put v2 in production, when, on what evidence": one command.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "include.governance", "--tracking-uri", mlflow_connection["tracking_uri"],
         "--audit-db", str(audit_path), "audit", "--model", MODEL, "--version", "2"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    promoted_line = next(line for line in result.stdout.splitlines() if " promoted " in line)
    assert "dag_test" in promoted_line and "challenger -> champion" in promoted_line
    assert f"accuracy={promoted.metrics['accuracy']:.4f}" in promoted_line
    assert "Approved by alice" in promoted_line and second_run in promoted_line


# ---- one full run per channel, step by step: each event once, written by the step that made it ----

CHANNEL_RUNS = ("tags+sensor", "cli", "review", "hitl")


def _step_context(user: str = "trainer") -> dict:
    from types import SimpleNamespace

    return {
        "task_instance": SimpleNamespace(id="ti-1", task_id="task"),
        "dag": SimpleNamespace(dag_id="movie_recommender_retrain"),
        "run_id": "manual__2025-01-01",
        "dag_run": SimpleNamespace(triggering_user_name=user),
    }


@pytest.mark.parametrize("channel", CHANNEL_RUNS)
def test_a_run_through_each_channel_records_every_event_once_when_it_happens(
    channel, mlflow_connection, mlflow_client, audit_path, capsys, monkeypatch
):
    from datetime import datetime, timezone

    from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
    from mlflow_governance.operators import (
        PromoteModelVersionOperator,
        RegisterModelVersionOperator,
        RequestApprovalOperator,
        ValidateModelVersionOperator,
    )
    from mlflow_governance.review import RecordReviewOperator
    from mlflow_governance.sensors import ModelVersionApprovalSensor
    from tests.include.governance.support import GOOD_METRICS, log_tiny_model

    audit = AuditLog(f"sqlite:///{audit_path}")
    kinds = lambda: [(e.event.value, e.actor) for e in audit.events(model_name="test_model")]  # noqa: E731
    ctx = _step_context()
    experiment = mlflow_client.create_experiment("trail", artifact_location=mlflow_connection["artifact_location"])
    run_id, uri = log_tiny_model(mlflow_client, experiment, GOOD_METRICS)
    common = {"model_name": "test_model"}
    version = RegisterModelVersionOperator(task_id="register", run_id=run_id, model_uri=uri, data_fingerprint="sha256:t",
                                           submitted_by="trainer", **common).execute(ctx)["version"]
    ValidateModelVersionOperator(task_id="validate", version=version, **common).execute(ctx)
    RequestApprovalOperator(task_id="approve", version=version, approval_mode="manual", **common).execute(ctx)
    assert kinds() == [("registered", "trainer"), ("validated", "trainer"), ("approval_requested", "trainer")]

    if channel == "tags+sensor":
        for key, value in {lc.APPROVED_BY: "alice", lc.APPROVAL_STATUS: "approved"}.items():
            mlflow_client.set_model_version_tag("test_model", version, key, value)
    elif channel == "cli":
        from include.governance.cli import main

        assert main(["--tracking-uri", mlflow_connection["tracking_uri"], "--audit-db", str(audit_path),
                     "approve", "test_model", version, "--reviewer", "alice"]) == 0
    elif channel == "review":
        RecordReviewOperator(task_id="record_decision", version=version, decision="approve", **common).execute(
            _step_context(user="alice"))
    else:
        monkeypatch.setattr("airflow.sdk.execution_time.hitl.upsert_hitl_detail", lambda **request: None)
        answer = {"chosen_options": ["Approve"], "params_input": {"notes": ""}, "responded_at": datetime.now(timezone.utc),
                  "responded_by_user": {"id": "7", "name": "alice"}}
        ModelVersionHITLApprovalOperator(task_id="review_in_airflow", version=version, approval_mode="hitl",
                                         **common).execute_complete(ctx, answer)
    # Written when it happened: by the step that recorded it (the sensor, for tags set by hand).
    decided = kinds()[3:]
    assert decided == ([] if channel == "tags+sensor" else [("approved", "alice")])

    sensor = ModelVersionApprovalSensor(task_id="wait_for_approval", version=version, **common)
    assert sensor.poke(ctx).is_done
    assert sensor.poke(ctx).is_done  # a second look (a cleared task) adds nothing
    PromoteModelVersionOperator(task_id="promote", version=version, **common).execute(ctx)
    PromoteModelVersionOperator(task_id="promote", version=version, **common).execute(ctx)  # a retry adds nothing

    events = audit.events(model_name="test_model")
    assert [(e.event.value, e.actor) for e in events] == [
        ("registered", "trainer"), ("validated", "trainer"), ("approval_requested", "trainer"),
        ("approved", "alice"), ("promoted", "trainer"),
    ]
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    assert events[3].source == ("cli" if channel == "cli" else "airflow")
