"""Retention keeps exactly the last N archived versions and deletes the rest through the guard."""

from __future__ import annotations

import json

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType
from include.governance.policy import GovernancePolicy
from include.governance.retention import apply_retention, plan_retention

from tests.include.governance.registry_support import add_versions, archived, logged_model, run_cli  # noqa: F401
from tests.include.governance.support import MODEL

POLICY = GovernancePolicy.load()
RETENTION = AuditContext(actor="retention", source="cli")


@pytest.fixture
def registry(mlflow_client, logged_model):  # noqa: F811
    """v1..v6 archived at increasing times except v2 (archived last, out of version order); v7
    never archived; v5 is @previous_champion, v7 @champion; v3 archived but pending again."""
    stamps = {"1": "2026-01-01T00:00:00.000+00:00", "2": "2026-06-01T00:00:00.000+00:00",
              "3": "2026-02-01T00:00:00.000+00:00", "4": "2026-03-01T00:00:00.000+00:00",
              "5": "2026-04-01T00:00:00.000+00:00", "6": "2026-05-01T00:00:00.000+00:00"}
    tag_sets = [archived(stamps[str(i)]) for i in range(1, 7)] + [{lc.SUBMITTED_BY: "trainer"}]
    tag_sets[2][lc.APPROVAL_STATUS] = "pending"
    add_versions(mlflow_client, logged_model, tag_sets)
    mlflow_client.set_registered_model_alias(MODEL, lc.PREVIOUS_CHAMPION, "5")
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, "7")


def _existing(client) -> list[str]:
    return sorted((str(mv.version) for mv in client.search_model_versions(f"name = '{MODEL}'")), key=int)


def test_plan_keeps_the_most_recently_archived_and_protects_aliases(mlflow_client, registry):
    plan = plan_retention(mlflow_client, MODEL, 2)
    # Newest archived first: v2 (June), v6 (May); v5 (April) holds @previous_champion.
    assert plan.kept == ["2", "6"]
    assert plan.to_delete == ["4", "3", "1"]
    assert plan.protected == ["5"]
    assert _existing(mlflow_client) == [str(v) for v in range(1, 8)]  # planning changes nothing


def test_apply_deletes_exactly_the_plan_through_the_guard(mlflow_client, registry, tmp_path):
    trail = AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)
    result = apply_retention(mlflow_client, POLICY, trail, RETENTION, plan_retention(mlflow_client, MODEL, 2))
    assert result.deleted == ["4", "1"]
    # v3 awaits a decision: the guard refuses it, retention never forces.
    assert list(result.refused) == ["3"] and "awaits a decision" in result.refused["3"]
    assert _existing(mlflow_client) == ["2", "3", "5", "6", "7"]
    rows = trail.log.events(model_name=MODEL, kinds=[EventType.DELETED])
    assert sorted(e.version for e in rows) == ["1", "4"]
    assert all(e.reason == f"retention: keep the last 2 archived versions of {MODEL}" for e in rows)


def test_keep_zero_deletes_every_unprotected_archived_version(mlflow_client, registry, tmp_path):
    trail = AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)
    result = apply_retention(mlflow_client, POLICY, trail, RETENTION, plan_retention(mlflow_client, MODEL, 0))
    assert sorted(result.deleted, key=int) == ["1", "2", "4", "6"]
    assert _existing(mlflow_client) == ["3", "5", "7"]


def test_negative_keep_is_refused(mlflow_client, registry):
    with pytest.raises(ValueError, match="keep=-1"):
        plan_retention(mlflow_client, MODEL, -1)


def test_retain_command_dry_run_changes_nothing_then_runs(mlflow_client, registry, run_cli):  # noqa: F811
    code, out, err = run_cli("retain", MODEL, "--keep", "3", "--actor", "ops", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["to_delete"] == ["3", "1"]
    assert _existing(mlflow_client) == [str(v) for v in range(1, 8)]
    code, out, err = run_cli("retain", MODEL, "--keep", "3", "--actor", "ops")
    assert code == 1  # v3 refused by the guard (the rest went)
    assert "deleted:   v1" in out and "refused:   v3" in out
    assert _existing(mlflow_client) == ["2", "3", "4", "5", "6", "7"]
    code, _, err = run_cli("retain", "no_such_model", "--keep", "3", "--actor", "ops")
    assert code == 3
