"""Promote: ``@champion`` moves to an approved, validated, current ``@challenger``; audited."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import promotion
from include.governance.audit import AuditContext, AuditTrail, promotion_events
from include.governance.policy import GovernancePolicy
from include.governance.promotion import PromotionResult
from include.governance.steps.recording import announced, record, version_now


def promote(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
) -> PromotionResult:
    """Make the version champion and record ``promoted`` (and ``archived`` for the one replaced).

    Keyed by the promotion's timestamp: a retry that finds the promotion done records the same
    events again, which adds nothing, or fills the gap a crash before the audit left.

    :raises PromotionRefused: not validated, not approved, approver not allowed, or stale.
    :raises ReadBackError: ``@champion`` did not read back as expected.
    """
    # Model-wide: a promotion moves aliases and tags on the old champion and challenger too.
    with announced(trail, actor, "promote", model_name):
        result = promotion.promote(client, model_name, version, policy.approval)
        if result.promoted_at:
            mv = version_now(client, model_name, result.version)
            old = version_now(client, model_name, result.previous_champion) if result.previous_champion else None
            record(trail, *promotion_events(mv, old, actor, promoted_at=result.promoted_at), policy=policy)
    return result
