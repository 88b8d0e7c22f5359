"""Validate -> approve -> promote on a real MLflow store: the registry ends in the right state."""

from __future__ import annotations

import json

import pytest

from include.governance import lifecycle as lc
from include.governance.approval import ApprovalError, StaleDecision, expire, record_review, request_approval
from include.governance.policy import GovernancePolicy
from include.governance.promotion import PromotionRefused, promote
from include.governance.registry import get_aliases
from include.governance.validation import validate_model_version

from tests.include.governance.support import GOOD_METRICS, MODEL

POLICY = GovernancePolicy.load()
MANUAL = POLICY.with_overrides({"mode": "manual"})


def tags_of(client, version):
    return client.get_model_version(MODEL, version).tags


def run_auto(client, version, policy=POLICY):
    validate_model_version(client, MODEL, version, policy)
    decision = request_approval(client, MODEL, version, policy.approval)
    return decision


def test_first_model_is_validated_approved_and_promoted(mlflow_client, make_version, tmp_path):
    v1 = make_version()
    outcome = validate_model_version(mlflow_client, MODEL, v1, POLICY)
    assert outcome.passed and outcome.baseline_version is None
    tags = tags_of(mlflow_client, v1)
    assert tags[lc.VALIDATION_STATUS] == "passed"
    assert tags["validation_accuracy"] == "0.800000"
    assert tags[lc.VALIDATION_BASELINE_VERSION] == "none"
    assert get_aliases(mlflow_client, MODEL) == {lc.CHALLENGER: v1}

    run_id = mlflow_client.get_model_version(MODEL, v1).run_id
    with open(mlflow_client.download_artifacts(run_id, outcome.report_path, str(tmp_path))) as handle:
        report = json.load(handle)
    assert report["passed"] is True and report["version"] == v1
    assert {c["name"] for c in report["checks"]} >= {"loadability", "accuracy", "precision", "recall"}

    decision = request_approval(mlflow_client, MODEL, v1, POLICY.approval)
    assert decision.status is lc.ApprovalStatus.APPROVED
    assert decision.reason == "First model meets validation criteria"

    result = promote(mlflow_client, MODEL, v1, POLICY.approval)
    assert result.changed and result.previous_champion is None
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v1}
    tags = tags_of(mlflow_client, v1)
    assert tags[lc.AUTO_PROMOTED] == "true"
    assert tags[lc.PREVIOUS_CHAMPION_VERSION] == "none"
    assert lc.PROMOTION_TIMESTAMP in tags


def test_second_promotion_keeps_previous_champion_and_archives_it(mlflow_client, make_version):
    v1 = make_version()
    run_auto(mlflow_client, v1)
    promote(mlflow_client, MODEL, v1, POLICY.approval)
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.83})
    decision = run_auto(mlflow_client, v2)
    assert decision.status is lc.ApprovalStatus.APPROVED and "improvement" in decision.reason
    promote(mlflow_client, MODEL, v2, POLICY.approval)
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v2, lc.PREVIOUS_CHAMPION: v1}
    assert lc.ARCHIVED_TIMESTAMP in tags_of(mlflow_client, v1)
    assert tags_of(mlflow_client, v2)[lc.PREVIOUS_CHAMPION_VERSION] == v1


@pytest.mark.parametrize(
    ("accuracy", "status"),
    [
        (0.80 + 0.02, lc.ApprovalStatus.APPROVED),  # improvement at the auto-approval bar
        (0.80 - 0.01, lc.ApprovalStatus.APPROVED),  # drop within tolerance
        (0.80 - 0.03, lc.ApprovalStatus.NEEDS_REVIEW),  # larger drop, still within validation
        (0.80 - 0.06, lc.ApprovalStatus.REJECTED),  # beyond the allowed degradation: fails validation
    ],
)
def test_approval_policy_against_the_champion(mlflow_client, make_version, accuracy, status):
    v1 = make_version()
    run_auto(mlflow_client, v1)
    promote(mlflow_client, MODEL, v1, POLICY.approval)
    v2 = make_version({**GOOD_METRICS, "accuracy": round(accuracy, 6)})
    assert run_auto(mlflow_client, v2).status is status
    assert tags_of(mlflow_client, v2)[lc.APPROVAL_STATUS] == status.value


def test_failed_validation_is_rejected_and_never_challenger(mlflow_client, make_version):
    v1 = make_version({**GOOD_METRICS, "recall": 0.5})
    outcome = validate_model_version(mlflow_client, MODEL, v1, POLICY)
    assert not outcome.passed and "recall" in outcome.summary
    assert lc.CHALLENGER not in get_aliases(mlflow_client, MODEL)
    decision = request_approval(mlflow_client, MODEL, v1, POLICY.approval)
    assert decision.status is lc.ApprovalStatus.REJECTED
    assert "recall" in decision.reason
    with pytest.raises(PromotionRefused, match="not validated"):
        promote(mlflow_client, MODEL, v1, POLICY.approval)
    assert lc.CHAMPION not in get_aliases(mlflow_client, MODEL)


def test_manual_mode_waits_and_a_reviewer_decides(mlflow_client, make_version):
    v1 = make_version(submitted_by="trainer")
    decision = run_auto(mlflow_client, v1, MANUAL)
    assert decision.status is lc.ApprovalStatus.PENDING
    with pytest.raises(PromotionRefused, match="not approved"):
        promote(mlflow_client, MODEL, v1, MANUAL.approval)
    record = record_review(mlflow_client, MODEL, v1, approve=True, reviewer="alice", notes="looks good", policy=MANUAL.approval)
    assert record.status is lc.ApprovalStatus.APPROVED
    # Re-running the approve step must not overwrite the reviewer's decision.
    assert request_approval(mlflow_client, MODEL, v1, MANUAL.approval).status is lc.ApprovalStatus.APPROVED
    promote(mlflow_client, MODEL, v1, MANUAL.approval)
    tags = tags_of(mlflow_client, v1)
    assert tags[lc.APPROVED_BY] == "alice" and tags[lc.APPROVAL_NOTES] == "looks good"
    assert tags[lc.AUTO_PROMOTED] == "false"
    assert lc.MANUAL_APPROVAL_TIMESTAMP in tags


def test_submitter_cannot_approve_their_own_version(mlflow_client, make_version):
    v1 = make_version(submitted_by="trainer")
    run_auto(mlflow_client, v1, MANUAL)
    with pytest.raises(ApprovalError, match="separation of duties"):
        record_review(mlflow_client, MODEL, v1, approve=True, reviewer="trainer", notes=None, policy=MANUAL.approval)
    # Tags set by hand (as in the MLflow UI) do not get around it either.
    mlflow_client.set_model_version_tag(MODEL, v1, lc.APPROVAL_STATUS, "approved")
    mlflow_client.set_model_version_tag(MODEL, v1, lc.APPROVED_BY, "trainer")
    with pytest.raises(PromotionRefused, match="separation of duties"):
        promote(mlflow_client, MODEL, v1, MANUAL.approval)
    assert lc.CHAMPION not in get_aliases(mlflow_client, MODEL)


def test_stale_approval_does_not_promote(mlflow_client, make_version):
    v1 = make_version()
    run_auto(mlflow_client, v1)
    promote(mlflow_client, MODEL, v1, POLICY.approval)
    v2 = make_version()
    run_auto(mlflow_client, v2, MANUAL)
    v3 = make_version({**GOOD_METRICS, "accuracy": 0.85})
    run_auto(mlflow_client, v3)  # v3 becomes the challenger
    # Every channel's review step refuses the stale approval ...
    with pytest.raises(StaleDecision, match="no longer the candidate"):
        record_review(mlflow_client, MODEL, v2, approve=True, reviewer="alice", notes=None, policy=MANUAL.approval)
    assert mlflow_client.get_model_version(MODEL, v2).tags[lc.APPROVAL_STATUS] == "pending"
    # ... and one written straight into the tags does not promote either.
    for key, value in {lc.APPROVED_BY: "alice", lc.APPROVAL_STATUS: "approved"}.items():
        mlflow_client.set_model_version_tag(MODEL, v2, key, value)
    with pytest.raises(PromotionRefused, match="no longer the candidate"):
        promote(mlflow_client, MODEL, v2, MANUAL.approval)
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v1


def test_approval_validated_against_an_old_champion_is_refused(mlflow_client, make_version):
    v1 = make_version()
    run_auto(mlflow_client, v1)
    promote(mlflow_client, MODEL, v1, POLICY.approval)
    v2 = make_version()
    run_auto(mlflow_client, v2)
    # The champion moves under v2 (a rollback, or another run) after v2 was validated.
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, "1")
    v3 = make_version()
    validate_model_version(mlflow_client, MODEL, v3, POLICY)
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, v3)
    mlflow_client.set_registered_model_alias(MODEL, lc.CHALLENGER, v2)
    with pytest.raises(PromotionRefused, match="re-validate"):
        promote(mlflow_client, MODEL, v2, POLICY.approval)
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v3


def test_promote_again_changes_nothing(mlflow_client, make_version):
    v1 = make_version()
    run_auto(mlflow_client, v1)
    promote(mlflow_client, MODEL, v1, POLICY.approval)
    before = tags_of(mlflow_client, v1)[lc.PROMOTION_TIMESTAMP]
    result = promote(mlflow_client, MODEL, v1, POLICY.approval)
    assert not result.changed
    assert tags_of(mlflow_client, v1)[lc.PROMOTION_TIMESTAMP] == before
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v1}


def test_expiry_marks_a_waiting_version_but_never_overwrites_a_decision(mlflow_client, make_version):
    v1 = make_version()
    run_auto(mlflow_client, v1, MANUAL)
    assert expire(mlflow_client, MODEL, v1, waited="5 minutes")
    assert tags_of(mlflow_client, v1)[lc.APPROVAL_STATUS] == "expired"
    record_review(mlflow_client, MODEL, v1, approve=True, reviewer="alice", notes=None, policy=MANUAL.approval)
    assert not expire(mlflow_client, MODEL, v1, waited="5 minutes")
    assert tags_of(mlflow_client, v1)[lc.APPROVAL_STATUS] == "approved"


def test_unknown_approval_status_is_a_refusal_naming_the_version(mlflow_client, make_version):
    v1 = make_version()
    validate_model_version(mlflow_client, MODEL, v1, POLICY)
    mlflow_client.set_model_version_tag(MODEL, v1, lc.APPROVAL_STATUS, "aproved")
    # A refusal (not retried), not a crash: an unknown status is no approval.
    with pytest.raises(PromotionRefused, match=f"{MODEL} v{v1}: unknown approval_status 'aproved'"):
        promote(mlflow_client, MODEL, v1, POLICY.approval)
    assert lc.CHAMPION not in get_aliases(mlflow_client, MODEL)


def test_deleted_artifact_fails_validation_with_the_reason(mlflow_client, make_version):
    import shutil
    from urllib.parse import urlparse

    v1 = make_version()
    mv = mlflow_client.get_model_version(MODEL, v1)
    shutil.rmtree(urlparse(mlflow_client.get_model_version_download_uri(MODEL, v1)).path)
    outcome = validate_model_version(mlflow_client, MODEL, v1, POLICY)
    assert not outcome.passed
    assert "no MLmodel file" in outcome.summary
    assert mv.run_id


def test_decision_for_a_missing_version_names_it(mlflow_client, make_version):
    make_version()
    with pytest.raises(Exception, match=f"{MODEL} v99 does not exist"):
        record_review(mlflow_client, MODEL, "99", approve=True, reviewer="alice", notes=None, policy=POLICY.approval)


def test_concurrent_promotions_leave_one_consistent_champion(mlflow_client, make_version):
    """Eight workers promoting at once (a retried task racing its first try, say)."""
    from concurrent.futures import ThreadPoolExecutor

    v1 = make_version()
    run_auto(mlflow_client, v1)
    promote(mlflow_client, MODEL, v1, POLICY.approval)
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.84})
    run_auto(mlflow_client, v2)
    v3 = make_version({**GOOD_METRICS, "accuracy": 0.85})
    run_auto(mlflow_client, v3)  # v3 is now the candidate; v2's approval is stale

    def attempt(version):
        try:
            return promote(mlflow_client, MODEL, version, POLICY.approval).version
        except PromotionRefused:
            return "refused"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, [v3, v2] * 4))
    assert outcomes.count(v3) == 4 and outcomes.count("refused") == 4
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v3, lc.PREVIOUS_CHAMPION: v1}
    assert tags_of(mlflow_client, v3)[lc.PREVIOUS_CHAMPION_VERSION] == v1


def test_a_retried_approve_step_is_one_request_and_a_new_validation_is_a_new_one(mlflow_client, make_version, tmp_path):
    from include.governance import steps
    from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType

    trail = AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)
    dag = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1")
    v1 = make_version(submitted_by="trainer")
    steps.validate(mlflow_client, MANUAL, trail, dag, MODEL, v1)

    def requests():
        return [e.dedup_key for e in trail.log.events(model_name=MODEL, kinds=[EventType.APPROVAL_REQUESTED])]

    assert steps.request_approval(mlflow_client, MANUAL, trail, dag, MODEL, v1).status is lc.ApprovalStatus.PENDING
    first_request = tags_of(mlflow_client, v1)[lc.APPROVAL_TIMESTAMP]
    # The approve task retried (or cleared) with nothing changed: the same request, no second row.
    assert steps.request_approval(mlflow_client, MANUAL, trail, dag, MODEL, v1).status is lc.ApprovalStatus.PENDING
    assert tags_of(mlflow_client, v1)[lc.APPROVAL_TIMESTAMP] == first_request
    assert len(requests()) == 1
    # Validated again (a cleared validate task): the version is asked about anew.
    steps.validate(mlflow_client, MANUAL, trail, dag, MODEL, v1)
    steps.request_approval(mlflow_client, MANUAL, trail, dag, MODEL, v1)
    assert tags_of(mlflow_client, v1)[lc.APPROVAL_TIMESTAMP] > first_request
    assert len(requests()) == 2
    # An expired request asked again is a new request too.
    expire(mlflow_client, MODEL, v1, waited="1 minute")
    steps.request_approval(mlflow_client, MANUAL, trail, dag, MODEL, v1)
    assert tags_of(mlflow_client, v1)[lc.APPROVAL_STATUS] == lc.ApprovalStatus.PENDING.value
    assert len(requests()) == 3
