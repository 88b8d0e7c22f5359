"""The monitor DAG's verify_audit_trail task, run as Airflow runs it (execute with a context) on a
real MLflow store and audit table seeded through the governance steps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditLog, AuditTrail, registered_event
from include.governance.policy import GovernancePolicy
from include.governance.steps import promote, request_approval, validate
from mlflow_governance.drift import VerifyAuditTrailOperator
from tests.include.governance.support import MODEL

POLICY = GovernancePolicy.load()
DAG = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1")
CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_monitor"), "run_id": "scheduled__2025-06-01"}


@pytest.fixture
def trail(mlflow_connection, mlflow_client, tmp_path, monkeypatch):
    audit = tmp_path / "audit.db"
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(audit))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    log = AuditLog(f"sqlite:///{audit}")
    log.ensure_schema()
    return AuditTrail(log, mlflow_client)


@pytest.fixture
def served(mlflow_client, trail, make_version):
    """Two versions promoted through the steps, as a normal run does: v2 @champion."""
    versions = []
    for _ in range(2):
        version = make_version()
        trail.record(registered_event(mlflow_client.get_model_version(MODEL, version), DAG))
        validate(mlflow_client, POLICY, trail, DAG, MODEL, version)
        request_approval(mlflow_client, POLICY, trail, DAG, MODEL, version)
        promote(mlflow_client, POLICY, trail, DAG, MODEL, version)
        versions.append(version)
    return versions


def check(**kwargs):
    return VerifyAuditTrailOperator(task_id="verify_audit_trail", model_name=MODEL, **kwargs).execute(CONTEXT)


def test_after_a_normal_run_the_task_passes(served):
    assert check() == {"checked": True, "drift": []}


def test_a_champion_moved_in_the_ui_fails_the_task_with_the_finding_and_the_restore_command(served, mlflow_client):
    first, second = served
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, first)
    with pytest.raises(AirflowFailException) as failed:
        check()
    message = str(failed.value)
    assert f"{MODEL}: 1 change(s) in the registry that no audit event explains" in message
    assert f"alias_moved: {MODEL} @champion: audited {second}, registry {first}" in message
    assert f"set_registered_model_alias('{MODEL}', 'champion', '{second}')" in message
    assert f"audit verify {MODEL}" in message


def test_an_approval_tag_changed_by_hand_fails_the_task(served, mlflow_client):
    mlflow_client.set_model_version_tag(MODEL, served[0], lc.APPROVAL_STATUS, "rejected")
    with pytest.raises(AirflowFailException, match=f"v{served[0]} approval_status: audited approved, registry rejected"):
        check()


@pytest.mark.parametrize("off", [False, "False", "false"])
def test_check_drift_off_skips_the_comparison(served, mlflow_client, off):
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, served[0])
    assert check(check_drift=off) == {"checked": False, "drift": []}
