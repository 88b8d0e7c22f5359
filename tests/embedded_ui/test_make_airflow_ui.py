"""README's `make airflow-ui`, started the way a user starts it (tests/embedded_ui/target.py),
driven through the REST API: ``admin`` triggers the runs (and so submits the versions),
``reviewer`` (role ``user``) approves, answers the Required Actions form and clears tasks.
"""

from __future__ import annotations

import json
import time

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import EventType
from include.governance.registry import get_aliases
from tests.embedded_ui.target import ADMIN, DAG_ID, FINISHED, MODEL, REVIEWER, RUN_TIMEOUT, TIMINGS, AirflowUi

pytestmark = pytest.mark.services

# Small generated data: each task is seconds of work, and the default quality gates pass on it.
DATA = "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=3"
# The latency gate times the registered model on a shared, loaded machine (p95 of 650 ms seen
# here); what these tests check is the approval flow, not the latency of a 2-core CI box.
POLICY_OVERRIDES = {"max_inference_time_ms": 60_000}
# Shorter than one poke of the approval sensor takes, so it times out on its first poke (or on
# its second, one poke interval later, on a fast machine): 0.6 s.
SHORT_APPROVAL_TIMEOUT_MINUTES = 0.01


def test_the_target_keeps_its_secrets_private_and_creates_what_the_dag_needs(airflow_ui):
    home = airflow_ui.stack.home
    secrets_file = home / "airflow_ui_secrets.json"
    stored = json.loads(secrets_file.read_text())
    output = airflow_ui.stack.services[0].log_path.read_text(errors="replace")
    for path in (secrets_file, home / "simple_auth_manager_passwords.json.generated"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    # Printed: where to go and where the passwords are; never the secrets or the passwords.
    assert airflow_ui.stack.base_url in output
    assert "simple_auth_manager_passwords.json.generated" in output
    passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    leaked = [name for name, value in {**stored, **passwords}.items() if value in output]
    assert not leaked, f"printed by make airflow-ui: {leaked}"
    assert airflow_ui.admin.missing_pools(DAG_ID) == set()


def test_a_timed_out_approval_resumes_by_clearing_the_task(airflow_ui):
    """Manual approval times out (expired, nothing promoted); the reviewer approves in the
    registry and clears wait_for_approval; the same run promotes the version."""
    ui = airflow_ui
    ui.admin.set_paused(DAG_ID, False)
    started = time.monotonic()
    run_id = ui.admin.trigger(
        DAG_ID, {"data_source": DATA, "approval_mode": "manual", "approval_timeout_minutes": SHORT_APPROVAL_TIMEOUT_MINUTES, "policy_overrides": POLICY_OVERRIDES}
    )["dag_run_id"]
    run = ui.wait_for_run(run_id)
    TIMINGS["manual run: trigger -> timed out"] = time.monotonic() - started
    states = ui.admin.task_states(DAG_ID, run_id)
    assert run["state"] == "failed", states
    assert (states["wait_for_approval"], states["promote"]) == ("failed", "upstream_failed"), (states, ui.stack.stale_event_failures())
    version = ui.version_of(run_id)
    tags = ui.mlflow.get_model_version(MODEL, version).tags
    assert tags[lc.APPROVAL_STATUS] == "expired", tags
    assert tags[lc.SUBMITTED_BY] == ADMIN
    assert lc.CHAMPION not in get_aliases(ui.mlflow, MODEL)

    # The reviewer decides in the registry, as in the MLflow UI: who first, the status last.
    ui.mlflow.set_model_version_tag(MODEL, version, lc.APPROVED_BY, REVIEWER)
    ui.mlflow.set_model_version_tag(MODEL, version, lc.APPROVAL_STATUS, "approved")
    cleared_at = time.monotonic()
    cleared = ui.reviewer.clear_tasks(DAG_ID, run_id, ["wait_for_approval"])
    assert sorted(ti["task_id"] for ti in cleared) == ["promote", "wait_for_approval"]
    resumed = ui.wait_for_run(run_id)
    TIMINGS["manual run: clear -> success"] = time.monotonic() - cleared_at
    assert resumed["state"] == "success", ui.admin.task_states(DAG_ID, run_id)
    assert get_aliases(ui.mlflow, MODEL)[lc.CHAMPION] == version
    assert ui.mlflow.get_model_version(MODEL, version).tags[lc.APPROVED_BY] == REVIEWER


def test_the_submitters_hitl_answer_is_refused_and_asked_again_then_the_reviewer_decides(airflow_ui):
    """approval_mode=hitl: admin (who triggered the run) answers Approve and is refused without
    failing the run; the form waits again, saying why; the reviewer's answer promotes."""
    ui = airflow_ui
    ui.admin.set_paused(DAG_ID, False)
    started = time.monotonic()
    run_id = ui.admin.trigger(
        DAG_ID, {"data_source": DATA, "approval_mode": "hitl", "approval_timeout_minutes": 10, "policy_overrides": POLICY_OVERRIDES}
    )["dag_run_id"]
    ui.stack.wait_until(
        "review_in_airflow to wait for an answer",
        lambda: _failed_early(ui, run_id) or ui.admin.task_states(DAG_ID, run_id).get("review_in_airflow") == "awaiting_input",
        RUN_TIMEOUT,
    )
    TIMINGS["hitl run: trigger -> awaiting input"] = time.monotonic() - started
    version = ui.version_of(run_id)
    reason = f"{ADMIN} submitted this version and cannot also approve it"
    assert reason in ui.hitl_detail(run_id, "review_in_airflow")["body"]

    ui.stack.wait_for_executor_events(run_id, "review_in_airflow", 1)
    answered = ui.admin.answer_hitl(DAG_ID, run_id, "review_in_airflow", ["Approve"], {"notes": "my own model"})
    assert answered["chosen_options"] == ["Approve"]  # Airflow takes the answer; the policy refuses it
    refused_at = time.monotonic()

    def asked_again():
        refusals = ui.audit.events(model_name=MODEL, version=version, kinds=[EventType.APPROVAL_REFUSED])
        ti = ui.admin.task_instances(DAG_ID, run_id)["review_in_airflow"]
        if ti["state"] not in ("awaiting_input", "scheduled", "queued", "running"):
            raise AssertionError(f"review_in_airflow is {ti['state']} after the refused answer")
        detail = ui.hitl_detail(run_id, "review_in_airflow")
        return refusals and ti["state"] == "awaiting_input" and not detail["response_received"] and (refusals, ti, detail)

    refusals, ti, detail = ui.stack.wait_until("review_in_airflow to ask again", asked_again, RUN_TIMEOUT)
    TIMINGS["hitl run: refused answer -> asked again"] = time.monotonic() - refused_at
    assert ti["try_number"] == 1  # the same try waits again: nothing failed
    assert reason in detail["body"]
    assert ui.admin.dag_run(DAG_ID, run_id)["state"] == "running"
    (refusal,) = refusals
    assert (refusal.actor, refusal.dag_run_id, refusal.details["decision"]) == (ADMIN, run_id, "approved")
    assert reason in refusal.reason
    tags = ui.mlflow.get_model_version(MODEL, version).tags
    assert tags[lc.APPROVAL_STATUS] == "pending" and lc.APPROVED_BY not in tags, tags

    ui.stack.wait_for_executor_events(run_id, "review_in_airflow", 2)
    ui.reviewer.answer_hitl(DAG_ID, run_id, "review_in_airflow", ["Approve"], {"notes": "holdout looks right"})
    answered_at = time.monotonic()
    run = ui.wait_for_run(run_id)
    TIMINGS["hitl run: reviewer's answer -> success"] = time.monotonic() - answered_at
    assert run["state"] == "success", ui.admin.task_states(DAG_ID, run_id)
    tags = ui.mlflow.get_model_version(MODEL, version).tags
    assert (tags[lc.APPROVAL_STATUS], tags[lc.APPROVED_BY], tags[lc.APPROVAL_NOTES]) == ("approved", REVIEWER, "holdout looks right")
    assert get_aliases(ui.mlflow, MODEL)[lc.CHAMPION] == version


def _failed_early(ui: AirflowUi, run_id: str) -> bool:
    """Fail at once, with the task states, when the run ends before it asks."""
    run = ui.admin.dag_run(DAG_ID, run_id)
    if run["state"] in FINISHED:
        raise AssertionError(f"run {run_id} {run['state']} before asking: {ui.admin.task_states(DAG_ID, run_id)}")
    return False
