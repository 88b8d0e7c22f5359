"""A submitter's note from the retrain DAG's trigger form: on the version and in the HITL form."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import ParamValidationError, TaskAwaitingInput

from include.governance import lifecycle as lc
from include.governance.approval import request_approval
from include.governance.policy import GovernancePolicy
from include.governance.validation import validate_model_version
from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
from mlflow_governance.operators import RegisterModelVersionOperator
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

CONTEXT = {
    "dag": SimpleNamespace(dag_id="movie_recommender_retrain"),
    "run_id": "manual__2025-01-01",
    "task_instance": SimpleNamespace(id="ti-1", task_id="review_in_airflow"),
}
TRAINED_BY = "Trained by Airflow DAG movie_recommender_retrain, run manual__2025-01-01"
NOTE = "Retrained after the June catalogue import.\nCompare recall with v3."


@pytest.fixture(autouse=True)
def audit_db(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(tmp_path / "audit.db"))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)


@pytest.fixture
def register(mlflow_connection, mlflow_client):
    experiment = mlflow_client.create_experiment("notes", artifact_location=mlflow_connection["artifact_location"])

    def run(note):
        run_id, uri = log_tiny_model(mlflow_client, experiment, GOOD_METRICS)
        op = RegisterModelVersionOperator(
            task_id="register", model_name=MODEL, run_id=run_id, model_uri=uri,
            data_fingerprint="sha256:abc", submitted_by="trainer", submission_notes=note,
        )
        return mlflow_client.get_model_version(MODEL, op.execute(CONTEXT)["version"])

    return run


def test_the_note_follows_the_trained_by_line_and_is_kept_as_a_tag(register):
    mv = register(NOTE)
    assert mv.description == f"{TRAINED_BY}\n\nSubmitter's note: {NOTE}"
    assert mv.tags[lc.SUBMISSION_NOTES] == NOTE


@pytest.mark.parametrize("note", [None, "", "   "])
def test_without_a_note_the_description_is_the_trained_by_line_alone(register, note):
    mv = register(note)
    assert mv.description == TRAINED_BY
    assert lc.SUBMISSION_NOTES not in mv.tags


def test_a_note_native_rendering_made_a_number_is_kept_as_text(register):
    assert register(42).tags[lc.SUBMISSION_NOTES] == "42"


def test_the_hitl_form_shows_the_note_quoted(register, mlflow_client, monkeypatch):
    posted = []
    record = lambda **request: posted.append(request)  # noqa: E731
    monkeypatch.setattr("airflow.providers.standard.operators.hitl.upsert_hitl_detail", record)
    manual = GovernancePolicy.load().with_overrides({"mode": "manual"})
    version = register(NOTE).version
    validate_model_version(mlflow_client, MODEL, version, manual)
    request_approval(mlflow_client, MODEL, version, manual.approval)
    op = ModelVersionHITLApprovalOperator(
        task_id="review_in_airflow", model_name=MODEL, version=version, approval_mode="hitl", approval_timeout_minutes=5,
    )
    with pytest.raises(TaskAwaitingInput):
        op.execute(CONTEXT)
    (request,) = posted
    assert "**Submitter's note:**\n\n> Retrained after the June catalogue import.\n> Compare recall with v3.\n" in request["body"]


def test_the_dag_param_refuses_a_note_over_4000_characters_before_the_run():
    from dags.movie_recommender_retrain import PARAMS

    # What a trigger does first: resolve the given value against the DAG's Param schema.
    note = copy.deepcopy(PARAMS["submission_notes"])
    assert note.resolve(None) is None
    assert note.resolve("x" * 4000) == "x" * 4000
    with pytest.raises(ParamValidationError, match="too long"):
        note.resolve("x" * 4001)
