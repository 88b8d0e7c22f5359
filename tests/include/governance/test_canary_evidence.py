"""The policy's canary rule: a challenger's approval counts only with canary evidence on it.

Against a real MLflow store and audit table; the evidence is recorded by the serving figures
code from the server's metrics text, as the serving figures DAG records it.
"""

from __future__ import annotations

import pytest

from include.governance import lifecycle as lc
from include.governance.approval import MissingCanaryEvidence, decide
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType
from include.governance.policy import GovernancePolicy, PolicyError
from include.governance.promotion import PromotionRefused
from include.governance.registry import get_aliases
from include.governance.serving_record import record_serving_figures
from include.governance.steps import promote, record_review
from tests.include.governance.serving_support import ServerMetrics
from tests.include.governance.support import GOOD_METRICS, MODEL, validated

ON = GovernancePolicy.load().with_overrides({"require_canary_evidence": True, "canary_min_requests": 100})
ALICE = AuditContext(actor="alice", source="cli")


@pytest.fixture
def trail(tmp_path, mlflow_client):
    return AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)


@pytest.fixture
def challenger(mlflow_client, make_version):
    """v1 @champion, v2 a validated @challenger waiting for a reviewer."""
    v1 = make_version()
    validated(mlflow_client, v1, approval_status="approved", approval_reason="First model")
    promote(mlflow_client, ON, None, ALICE, MODEL, v1)
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.82})
    validated(mlflow_client, v2, v1, approval_status="needs_review", approval_reason="Canary evidence required")
    return v1, v2


def canary(client, champion, challenger, n, *, errors=0, seconds=0.004):
    server = ServerMetrics().serve(MODEL, champion, "champion", 4 * n).serve(
        MODEL, challenger, "canary", n, errors=errors, seconds=seconds
    )
    record_serving_figures(client, server.text(), server_url="http://model-server:8000")


def approve(client, trail, version):
    return record_review(client, ON, trail, ALICE, MODEL, version, approve=True, reviewer="alice", notes=None)


def test_off_by_default_and_the_policy_decides_as_before():
    default = GovernancePolicy.load().approval
    assert default.require_canary_evidence is False
    assert decide(validation_passed=True, improvement=0.0, policy=default).status.value == "approved"
    waiting = decide(validation_passed=True, improvement=0.05, policy=ON.approval)
    assert waiting.status.value == "needs_review" and "Canary evidence required" in waiting.reason
    # A first model has no champion to run beside: the policy approves it.
    assert decide(validation_passed=True, improvement=None, policy=ON.approval).status.value == "approved"


def test_an_approval_without_canary_evidence_is_refused_and_audited(mlflow_client, trail, challenger):
    _, v2 = challenger
    with pytest.raises(MissingCanaryEvidence, match="no canary evidence.*serving_canary_requests") as refused:
        approve(mlflow_client, trail, v2)
    assert refused.value.rule == "canary"
    assert lc.APPROVED_BY not in mlflow_client.get_model_version(MODEL, v2).tags
    (event,) = trail.log.events(model_name=MODEL, version=v2, kinds=[EventType.APPROVAL_REFUSED])
    assert "no canary evidence" in event.reason and event.actor == "alice"


def test_too_few_requests_or_too_many_errors_are_named(mlflow_client, trail, challenger):
    v1, v2 = challenger
    canary(mlflow_client, v1, v2, 40, errors=2, seconds=0.2)
    with pytest.raises(MissingCanaryEvidence) as refused:
        approve(mlflow_client, trail, v2)
    reason = refused.value.reason
    assert "only 40 canary requests, fewer than the 100" in reason
    assert "canary error rate 5.00% is not within canary_max_error_rate 1.00%" in reason
    assert "canary p95 latency" in reason and "canary_max_p95_ms 50.0 ms" in reason


def test_with_enough_canary_evidence_the_approval_counts_and_promotes(mlflow_client, trail, challenger):
    v1, v2 = challenger
    canary(mlflow_client, v1, v2, 60)
    canary(mlflow_client, v1, v2, 60)  # a restarted server: 120 in all
    assert approve(mlflow_client, trail, v2).status.value == "approved"
    promote(mlflow_client, ON, trail, ALICE, MODEL, v2)
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v2


def test_promotion_refuses_an_approval_recorded_before_the_rule_was_on(mlflow_client, challenger):
    _, v2 = challenger
    mlflow_client.set_model_version_tag(MODEL, v2, lc.APPROVAL_STATUS, "approved")
    with pytest.raises(PromotionRefused, match=f"{MODEL} v{v2}: no canary evidence"):
        promote(mlflow_client, ON, None, ALICE, MODEL, v2)
    off = GovernancePolicy.load()
    promote(mlflow_client, off, None, ALICE, MODEL, v2)  # the rule off: promoted as before
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v2


@pytest.mark.parametrize(("key", "value", "message"), [
    ("canary_max_error_rate", 5, "canary_max_error_rate=5.0 is a fraction"),
    ("canary_min_requests", 0, "canary_min_requests=0 must be at least 1"),
    ("require_canary_evidence", "yes", "require_canary_evidence='yes' is not a valid bool"),
])
def test_bad_canary_limits_are_refused_naming_the_key(key, value, message):
    with pytest.raises(PolicyError, match=message):
        GovernancePolicy.load().with_overrides({key: value})
