"""Rollback on a real MLflow store: only to a version that served, idempotent, audited."""

from __future__ import annotations

import pytest

from include.governance import lifecycle as lc
from include.governance.approval import request_approval
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType
from include.governance.policy import GovernancePolicy
from include.governance.promotion import promote
from include.governance.registry import get_aliases
from include.governance.registry import VersionNotFound
from include.governance.rollback import (
    ROLLED_BACK_BY,
    ROLLED_BACK_FROM,
    RollbackRefused,
    execute_rollback,
    plan_rollback,
    rollback,
    rollback_events,
)
from include.governance.validation import validate_model_version

from tests.include.governance.support import GOOD_METRICS, MODEL

POLICY = GovernancePolicy.load()


def champion_of(client, version, *, full=False):
    """Validate, approve and promote a version: through the real steps, or by their tags (fast)."""
    if full:
        validate_model_version(client, MODEL, version, POLICY)
        request_approval(client, MODEL, version, POLICY.approval)
    else:
        accuracy = client.get_run(client.get_model_version(MODEL, version).run_id).data.metrics["accuracy"]
        approved(client, version, validation_accuracy=f"{accuracy:.6f}")
        client.set_registered_model_alias(MODEL, lc.CHALLENGER, version)
    promote(client, MODEL, version, POLICY.approval)


def approved(client, version, **extra):
    """The tags validation and the policy write on a version that passed and was approved."""
    champion = get_aliases(client, MODEL).get(lc.CHAMPION, lc.NO_BASELINE)
    tags = {
        lc.VALIDATION_STATUS: "passed", lc.VALIDATION_TIMESTAMP: lc.utc_now_iso(),
        lc.VALIDATION_BASELINE_VERSION: champion, lc.APPROVAL_STATUS: "approved",
        lc.APPROVAL_REASON: "test", lc.APPROVAL_TIMESTAMP: lc.utc_now_iso(), **extra,
    }
    for key, value in tags.items():
        client.set_model_version_tag(MODEL, version, key, value)


@pytest.fixture
def two_champions(mlflow_client, make_version):
    """v1 served (through the real validation and approval), then v2 replaced it."""
    v1 = make_version()
    champion_of(mlflow_client, v1, full=True)
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.83})
    champion_of(mlflow_client, v2)
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v2, lc.PREVIOUS_CHAMPION: v1}
    return v1, v2


def test_rollback_restores_the_previous_champion_and_can_be_undone(mlflow_client, two_champions, tmp_path):
    v1, v2 = two_champions
    result = rollback(mlflow_client, MODEL, actor="bob", reason="CTR dropped")
    assert (result.champion, result.rolled_back_from, result.changed) == (v1, v2, True)
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v1, lc.PREVIOUS_CHAMPION: v2}
    tags = mlflow_client.get_model_version(MODEL, v1).tags
    assert (tags[ROLLED_BACK_FROM], tags[ROLLED_BACK_BY]) == (v2, "bob")
    assert lc.ARCHIVED_TIMESTAMP in mlflow_client.get_model_version(MODEL, v2).tags

    trail = AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)
    trail.record(*rollback_events(mlflow_client, result, AuditContext(actor="bob", source="cli")))
    rolled, archived = trail.log.events()
    assert (rolled.event, rolled.version, rolled.counterpart_version, rolled.actor) == (EventType.ROLLED_BACK, v1, v2, "bob")
    assert (rolled.from_alias, rolled.to_alias, rolled.reason) == ("previous_champion", "champion", "CTR dropped")
    assert rolled.metrics["accuracy"] == pytest.approx(0.80)
    assert (archived.event, archived.version, archived.to_alias) == (EventType.ARCHIVED, v2, "previous_champion")

    # v2 served before, so the rollback itself can be rolled back.
    again = rollback(mlflow_client, MODEL, actor="bob", reason="false alarm")
    assert again.champion == v2
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v2, lc.PREVIOUS_CHAMPION: v1}


def test_a_retried_rollback_changes_nothing_and_records_no_second_event(mlflow_client, two_champions, tmp_path):
    v1, v2 = two_champions
    plan = plan_rollback(mlflow_client, MODEL)
    first = execute_rollback(mlflow_client, plan, actor="bob", reason="CTR dropped")
    # A retry with the same plan: @previous_champion now points at v2, but the plan says v1.
    retry = execute_rollback(mlflow_client, plan, actor="bob", reason="CTR dropped")
    assert retry.changed is False and retry.champion == v1
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v1, lc.PREVIOUS_CHAMPION: v2}
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    context = AuditContext(actor="bob", source="airflow", dag_id="movie_recommender_rollback", dag_run_id="r1")
    for result in (first, retry):
        AuditTrail(log).record(*rollback_events(mlflow_client, result, context))
    assert [e.event for e in log.events()] == [EventType.ROLLED_BACK, EventType.ARCHIVED]


def test_rollback_to_an_explicit_older_version(mlflow_client, two_champions, make_version):
    v1, v2 = two_champions
    v3 = make_version({**GOOD_METRICS, "accuracy": 0.86})
    champion_of(mlflow_client, v3)
    result = rollback(mlflow_client, MODEL, v1, actor="bob", reason="back to the known good one")
    assert result.champion == v1 and result.from_alias is None  # v1 was not @previous_champion
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v1
    assert get_aliases(mlflow_client, MODEL)[lc.PREVIOUS_CHAMPION] == v3


def test_refusals_leave_the_champion_where_it_was(mlflow_client, two_champions, make_version):
    v1, v2 = two_champions
    never_champion = make_version({**GOOD_METRICS, "accuracy": 0.84})
    approved(mlflow_client, never_champion)
    mlflow_client.set_registered_model_alias(MODEL, lc.CHALLENGER, never_champion)
    failed = make_version({**GOOD_METRICS, "recall": 0.4})
    approved(mlflow_client, failed, validation_status="failed")
    cases = [
        (never_champion, "has never been champion"),
        (failed, "never passed validation"),
        (v2, "already @champion"),
    ]
    for target, message in cases:
        with pytest.raises(RollbackRefused, match=message):
            rollback(mlflow_client, MODEL, target, actor="bob", reason="test")
    # Approved once, then the approval tag was changed by hand: not approved any more.
    mlflow_client.set_model_version_tag(MODEL, v1, lc.APPROVAL_STATUS, "rejected")
    with pytest.raises(RollbackRefused, match="never approved"):
        rollback(mlflow_client, MODEL, actor="bob", reason="test")
    with pytest.raises(VersionNotFound, match="v99 does not exist"):
        rollback(mlflow_client, MODEL, "99", actor="bob", reason="test")
    with pytest.raises(VersionNotFound, match="registered model nope does not exist"):
        rollback(mlflow_client, "nope", actor="bob", reason="test")
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v2, lc.PREVIOUS_CHAMPION: v1, lc.CHALLENGER: never_champion}


def test_without_a_previous_champion_or_a_reason_nothing_moves(mlflow_client, make_version):
    v1 = make_version()
    champion_of(mlflow_client, v1)
    with pytest.raises(RollbackRefused, match="no @previous_champion"):
        rollback(mlflow_client, MODEL, actor="bob", reason="test")
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.83})
    champion_of(mlflow_client, v2)
    with pytest.raises(RollbackRefused, match="needs a reason"):
        rollback(mlflow_client, MODEL, actor="bob", reason=" ")
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v2


def test_a_plan_is_refused_once_the_champion_moved(mlflow_client, two_champions, make_version):
    v1, v2 = two_champions
    plan = plan_rollback(mlflow_client, MODEL)
    v3 = make_version({**GOOD_METRICS, "accuracy": 0.86})
    champion_of(mlflow_client, v3)
    with pytest.raises(RollbackRefused, match=f"is v{v3}, not v{v2}"):
        execute_rollback(mlflow_client, plan, actor="bob", reason="too late")
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v3


def test_a_version_whose_model_artifact_is_gone_is_not_restored(mlflow_client, two_champions):
    import shutil
    from pathlib import Path
    from urllib.parse import urlparse

    v1, _ = two_champions
    uri = mlflow_client.get_model_version_download_uri(MODEL, v1)
    shutil.rmtree(Path(urlparse(uri).path))
    with pytest.raises(RollbackRefused, match="no MLmodel file"):
        rollback(mlflow_client, MODEL, actor="bob", reason="test")
