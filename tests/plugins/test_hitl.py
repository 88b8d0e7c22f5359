"""The HITL approval operator records Airflow's answer on the version (real MLflow store).

Airflow delivers the reviewer's answer to ``execute_complete`` as an event; these tests hand it
the same event shape the API server produces.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.governance import lifecycle as lc
from include.governance.approval import request_approval
from include.governance.policy import GovernancePolicy
from include.governance.registry import register_version
from include.governance.validation import validate_model_version
from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

MANUAL = GovernancePolicy.load().with_overrides({"mode": "manual"})


@pytest.fixture
def waiting_version(mlflow_connection, mlflow_client):
    experiment = mlflow_client.create_experiment("hitl", artifact_location=mlflow_connection["artifact_location"])
    run_id, uri = log_tiny_model(mlflow_client, experiment, GOOD_METRICS)
    mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id, tags={lc.SUBMITTED_BY: "trainer"})
    validate_model_version(mlflow_client, MODEL, mv.version, MANUAL)
    request_approval(mlflow_client, MODEL, mv.version, MANUAL.approval)
    return str(mv.version)


def operator(version, mode="hitl"):
    return ModelVersionHITLApprovalOperator(task_id="review_in_airflow", model_name=MODEL, version=version, approval_mode=mode, approval_timeout_minutes=5)


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


def test_the_submitter_answering_is_refused_and_nothing_is_recorded(waiting_version, mlflow_client):
    with pytest.raises(AirflowFailException, match="separation of duties"):
        operator(waiting_version).execute_complete({}, answer("Approve", user="trainer"))
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "pending"


def test_no_answer_before_the_timeout_expires_the_version(waiting_version, mlflow_client):
    with pytest.raises(AirflowFailException, match="expired"):
        operator(waiting_version).execute_complete({}, {"error": "timeout", "error_type": "timeout"})
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "expired"


@pytest.mark.parametrize("mode", ["auto", "manual"])
def test_other_modes_ask_nothing(waiting_version, mode):
    assert operator(waiting_version, mode).execute({}) is None


def test_a_cleared_task_does_not_ask_again_once_the_version_has_a_decision(waiting_version, mlflow_client):
    """Clearing deletes Airflow's HITL record; the decision on the version survives and counts."""
    operator(waiting_version).execute_complete({}, answer("Approve"))
    assert operator(waiting_version).execute({}) is None
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVED_BY] == "alice"
