"""The HITL approval operator records Airflow's answer on the version (real MLflow store).

Airflow delivers the reviewer's answer to ``execute_complete`` as an event; these tests hand it
the same event shape the API server produces.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from include.governance import lifecycle as lc
from include.governance.approval import record_review, request_approval
from include.governance.audit import AuditLog, EventType
from include.governance.policy import GovernancePolicy
from include.governance.registry import register_version
from include.governance.validation import validate_model_version
from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

MANUAL = GovernancePolicy.load().with_overrides({"mode": "manual"})
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


@pytest.fixture(autouse=True)
def audit_db(tmp_path, monkeypatch):
    path = tmp_path / "audit.db"
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(path))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    return AuditLog(f"sqlite:///{path}")


@pytest.fixture
def hitl_requests(monkeypatch):
    """The HITL requests the operator posts (to the API server, through the task's supervisor)."""
    posted = []
    record = lambda **request: posted.append(request)  # noqa: E731
    # The first ask goes through Airflow's HITLOperator.execute, a re-ask through the operator's own.
    monkeypatch.setattr("airflow.providers.standard.operators.hitl.upsert_hitl_detail", record)
    monkeypatch.setattr("airflow.sdk.execution_time.hitl.upsert_hitl_detail", record)
    return posted


def task_context():
    return {
        "task_instance": SimpleNamespace(id="ti-1", task_id="review_in_airflow"),
        "dag": SimpleNamespace(dag_id="movie_recommender_retrain"),
        "run_id": "manual__2025-01-01",
        "dag_run": SimpleNamespace(triggering_user_name="trainer"),
    }


@pytest.fixture
def waiting_version(mlflow_connection, mlflow_client):
    experiment = mlflow_client.create_experiment("hitl", artifact_location=mlflow_connection["artifact_location"])
    run_id, uri = log_tiny_model(mlflow_client, experiment, GOOD_METRICS)
    mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id, tags={lc.SUBMITTED_BY: "trainer"})
    validate_model_version(mlflow_client, MODEL, mv.version, MANUAL)
    request_approval(mlflow_client, MODEL, mv.version, MANUAL.approval)
    return str(mv.version)


def operator(version, mode="hitl", **kwargs):
    return ModelVersionHITLApprovalOperator(
        task_id="review_in_airflow", model_name=MODEL, version=version, approval_mode=mode, approval_timeout_minutes=5, **kwargs
    )


def answer(option, user="alice", notes=""):
    return {
        "chosen_options": [option],
        "params_input": {"notes": notes},
        "responded_at": datetime.now(timezone.utc),
        "responded_by_user": {"id": "7", "name": user},
    }


@pytest.mark.parametrize(("option", "status"), [("Approve", "approved"), ("Reject", "rejected")])
def test_the_answer_is_written_to_the_version_with_the_responding_user(waiting_version, mlflow_client, option, status):
    result = operator(waiting_version).execute_complete({}, answer(option, notes="checked"))
    assert result == {"status": status, "approved_by": "alice"}
    tags = mlflow_client.get_model_version(MODEL, waiting_version).tags
    assert tags[lc.APPROVAL_STATUS] == status
    assert tags[lc.APPROVED_BY] == "alice"
    assert tags[lc.APPROVAL_NOTES] == "checked"


def test_the_form_says_whose_answers_are_refused_and_the_wait_carries_its_deadline(waiting_version, hitl_requests):
    """Airflow keeps a form's body for the whole try, so the refusal reasons are in it from the start."""
    started = time.time()
    with pytest.raises(TaskAwaitingInput) as parked:
        operator(waiting_version).execute(task_context())
    (request,) = hitl_requests
    assert request["ti_id"] == "ti-1"
    assert "trainer submitted this version and cannot also approve it (separation of duties)" in request["body"]
    assert request["assigned_users"] is None
    assert parked.value.method_name == "execute_complete"
    assert started + 5 * 60 <= parked.value.kwargs["deadline"] <= time.time() + 5 * 60


def test_the_submitter_answering_is_refused_audited_and_asked_again(waiting_version, mlflow_client, audit_db, hitl_requests):
    deadline = time.time() + 120
    with pytest.raises(TaskAwaitingInput) as parked:
        operator(waiting_version).execute_complete(task_context(), answer("Approve", user="trainer", notes="mine"), deadline=deadline)
    # The same form again (posting it clears the refused answer), until the first ask's deadline.
    assert [r["ti_id"] for r in hitl_requests] == ["ti-1"]
    assert "cannot also approve it" in hitl_requests[0]["body"]
    assert parked.value.method_name == "execute_complete"
    assert parked.value.kwargs == {"deadline": deadline}
    assert 0 < parked.value.timeout.total_seconds() <= 120
    tags = mlflow_client.get_model_version(MODEL, waiting_version).tags
    assert tags[lc.APPROVAL_STATUS] == "pending"
    assert lc.APPROVED_BY not in tags
    (event,) = audit_db.events(model_name=MODEL, version=waiting_version, kinds=[EventType.APPROVAL_REFUSED])
    assert (event.actor, event.task_id, event.dag_run_id) == ("trainer", "review_in_airflow", "manual__2025-01-01")
    assert "separation of duties" in event.reason
    assert event.details["decision"] == "approved"
    assert event.details["notes"] == "mine"


def test_a_refused_answer_then_an_allowed_one_is_recorded(waiting_version, mlflow_client, audit_db, hitl_requests):
    """With an approver allow-list: the form is assigned to them; anyone else is refused, they decide."""
    approvers_only = {"approvers": ["alice"]}
    ask = operator(waiting_version, policy_overrides=approvers_only)
    with pytest.raises(TaskAwaitingInput):
        ask.execute(task_context())
    assert hitl_requests[0]["assigned_users"] == [{"id": "alice", "name": "alice"}]
    assert "only alice may answer" in hitl_requests[0]["body"]

    with pytest.raises(TaskAwaitingInput):
        operator(waiting_version, policy_overrides=approvers_only).execute_complete(task_context(), answer("Reject", user="bob"))
    (refused,) = audit_db.events(model_name=MODEL, kinds=[EventType.APPROVAL_REFUSED])
    assert refused.reason == "bob is not an allowed approver (alice)"
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "pending"

    result = operator(waiting_version, policy_overrides=approvers_only).execute_complete(task_context(), answer("Approve", user="alice"))
    assert result == {"status": "approved", "approved_by": "alice"}


def test_the_form_is_not_assigned_where_user_ids_are_not_names(waiting_version, hitl_requests, monkeypatch):
    """FAB identifies users by number: assigning the policy's names would lock everyone out."""
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", FAB_AUTH_MANAGER)
    with pytest.raises(TaskAwaitingInput):
        operator(waiting_version, policy_overrides={"approvers": ["alice"]}).execute(task_context())
    assert hitl_requests[0]["assigned_users"] is None
    assert "only alice may answer" in hitl_requests[0]["body"]


def test_a_refused_answer_after_the_deadline_expires_the_version(waiting_version, mlflow_client, audit_db, hitl_requests):
    with pytest.raises(AirflowFailException, match="expired"):
        operator(waiting_version).execute_complete(task_context(), answer("Approve", user="trainer"), deadline=time.time() - 1)
    assert hitl_requests == []
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "expired"
    kinds = [e.event for e in audit_db.events(model_name=MODEL)]
    assert kinds == [EventType.APPROVAL_REFUSED, EventType.EXPIRED]


def test_a_refused_answer_does_not_ask_again_once_another_channel_decided(waiting_version, mlflow_client, hitl_requests):
    record_review(mlflow_client, MODEL, waiting_version, approve=True, reviewer="carol", notes=None, policy=MANUAL.approval)
    assert operator(waiting_version).execute_complete(task_context(), answer("Reject", user="trainer")) is None
    assert hitl_requests == []
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVED_BY] == "carol"


def test_no_answer_before_the_timeout_expires_the_version(waiting_version, mlflow_client, audit_db):
    with pytest.raises(AirflowFailException, match="expired"):
        operator(waiting_version).execute_complete(task_context(), {"error": "timeout", "error_type": "timeout"})
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "expired"
    assert [e.event for e in audit_db.events(model_name=MODEL)] == [EventType.EXPIRED]


def test_a_timeout_leaves_a_decision_made_elsewhere_to_the_sensor(waiting_version, mlflow_client):
    record_review(mlflow_client, MODEL, waiting_version, approve=False, reviewer="carol", notes="no", policy=MANUAL.approval)
    assert operator(waiting_version).execute_complete(task_context(), {"error": "timeout", "error_type": "timeout"}) is None
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "rejected"


@pytest.mark.parametrize("mode", ["auto", "manual"])
def test_other_modes_ask_nothing(waiting_version, mode):
    assert operator(waiting_version, mode).execute({}) is None


def test_a_cleared_task_does_not_ask_again_once_the_version_has_a_decision(waiting_version, mlflow_client):
    """Clearing deletes Airflow's HITL record; the decision on the version survives and counts."""
    operator(waiting_version).execute_complete({}, answer("Approve"))
    assert operator(waiting_version).execute({}) is None
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVED_BY] == "alice"
