"""The guarded delete step and `delete` command against a real MLflow store and audit table."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType
from include.governance.policy import GovernancePolicy
from include.governance.registry import VersionNotFound
from include.governance.steps.delete import DeleteRefused, delete_version

from tests.include.governance.registry_support import add_versions, logged_model, run_cli  # noqa: F401
from tests.include.governance.support import GOOD_METRICS, MODEL

POLICY = GovernancePolicy.load()
BOB = AuditContext(actor="bob", source="cli")


@pytest.fixture
def trail(tmp_path, mlflow_client):
    return AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)


@pytest.fixture
def versions(mlflow_client, logged_model):  # noqa: F811
    """v1..v3 plain (decided, rejected), v4 pending, v5 needs_review."""
    plain = {lc.SUBMITTED_BY: "trainer", lc.APPROVAL_STATUS: "rejected", "validation_accuracy": "0.810000"}
    return add_versions(mlflow_client, logged_model, [plain, plain, plain,
                                                      {lc.SUBMITTED_BY: "trainer", lc.APPROVAL_STATUS: "pending"},
                                                      {lc.SUBMITTED_BY: "trainer", lc.APPROVAL_STATUS: "needs_review"}])


def _exists(client, version: str) -> bool:
    try:
        client.get_model_version(MODEL, version)
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("alias", [lc.CHAMPION, lc.CHALLENGER, lc.PREVIOUS_CHAMPION])
def test_a_governance_alias_is_never_deleted_even_forced(mlflow_client, versions, trail, alias):
    mlflow_client.set_registered_model_alias(MODEL, alias, "2")
    with pytest.raises(DeleteRefused, match=rf"{MODEL} v2 is @{alias}") as refused:
        delete_version(mlflow_client, POLICY, trail, BOB, MODEL, "2", reason="cleanup", force=True)
    assert refused.value.rule == "alias"
    assert _exists(mlflow_client, "2")
    assert trail.log.events(model_name=MODEL) == []


@pytest.mark.parametrize(("version", "status"), [("4", "pending"), ("5", "needs_review")])
def test_a_version_awaiting_a_decision_needs_force(mlflow_client, versions, trail, version, status):
    with pytest.raises(DeleteRefused, match=rf"{MODEL} v{version} awaits a decision.*{status}") as refused:
        delete_version(mlflow_client, POLICY, trail, BOB, MODEL, version, reason="cleanup")
    assert refused.value.rule == "awaiting_decision"
    assert _exists(mlflow_client, version)
    assert trail.log.events(model_name=MODEL) == []


def test_force_by_someone_off_the_approver_list_is_refused(mlflow_client, versions, trail):
    policy = replace(POLICY, approval=replace(POLICY.approval, approvers=("alice",)))
    with pytest.raises(DeleteRefused, match=r"v4 .*bob is not an allowed approver \(alice\)") as refused:
        delete_version(mlflow_client, policy, trail, BOB, MODEL, "4", reason="abandoned", force=True)
    assert refused.value.rule == "approver"
    assert _exists(mlflow_client, "4")


def test_an_approver_forces_it_and_the_audit_says_so(mlflow_client, versions, trail):
    policy = replace(POLICY, approval=replace(POLICY.approval, approvers=("alice",)))
    alice = AuditContext(actor="alice", source="cli")
    deleted = delete_version(mlflow_client, policy, trail, alice, MODEL, "4", reason="abandoned run", force=True)
    assert deleted.forced
    assert not _exists(mlflow_client, "4")
    [row] = trail.log.events(model_name=MODEL, version="4")
    assert (row.event, row.actor, row.reason, row.details["forced"]) == (EventType.DELETED, "alice", "abandoned run", True)


def test_no_reason_is_refused(mlflow_client, versions, trail):
    with pytest.raises(DeleteRefused, match="needs a reason"):
        delete_version(mlflow_client, POLICY, trail, BOB, MODEL, "1", reason="  ")
    assert _exists(mlflow_client, "1")


def test_missing_version_is_not_found(mlflow_client, versions, trail):
    with pytest.raises(VersionNotFound, match="99"):
        delete_version(mlflow_client, POLICY, trail, BOB, MODEL, "99", reason="cleanup")


def test_the_deleted_row_keeps_the_version_evidence(mlflow_client, versions, trail, logged_model):  # noqa: F811
    run_id, source = logged_model
    mlflow_client.update_model_version(MODEL, "1", description="first try")
    delete_version(mlflow_client, POLICY, trail, BOB, MODEL, "1", reason="superseded")
    assert not _exists(mlflow_client, "1")
    [row] = trail.log.events(model_name=MODEL)
    assert (row.event, row.version, row.actor, row.reason) == (EventType.DELETED, "1", "bob", "superseded")
    assert row.run_id == run_id
    assert row.details["source"] == source
    assert row.details["tags"][lc.APPROVAL_STATUS] == "rejected"
    assert row.details["description"] == "first try"
    assert row.details["run_metrics"] == pytest.approx(GOOD_METRICS)
    assert row.metrics == {"accuracy": pytest.approx(0.81)}
    assert row.details["forced"] is False


def test_delete_command_refuses_by_name_and_deletes_when_allowed(mlflow_client, versions, run_cli):  # noqa: F811
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, "3")
    code, _, err = run_cli("delete", MODEL, "3", "--actor", "bob", "--reason", "old")
    assert code == 1
    assert f"{MODEL} v3 is @champion" in err
    code, _, err = run_cli("delete", MODEL, "4", "--actor", "bob", "--reason", "old")
    assert code == 1 and "v4 awaits a decision" in err and "--force" in err
    code, out, err = run_cli("delete", MODEL, "2", "--actor", "bob", "--reason", "old", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == "2"
    assert not _exists(mlflow_client, "2")
    events = AuditLog(f"sqlite:///{run_cli.audit_path}").events(model_name=MODEL)
    assert [(e.event, e.version) for e in events] == [(EventType.DELETED, "2")]
    code, _, err = run_cli("delete", MODEL, "2", "--actor", "bob", "--reason", "old")
    assert code == 3 and "2" in err
