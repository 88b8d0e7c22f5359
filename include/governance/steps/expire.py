"""Expire: a version that got no decision in time is tagged ``expired`` and that is audited."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import approval
from include.governance.audit import AuditContext, AuditTrail, expired_event
from include.governance import lifecycle as lc
from include.governance.lifecycle import ApprovalStatus
from include.governance.policy import GovernancePolicy
from include.governance.steps.recording import announced, record, version_now


def expire(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
    *,
    waited: str,
) -> bool:
    """Mark a version still awaiting a decision ``expired``; return whether this call did.

    A decision that arrived meanwhile stays (expiry never overwrites a reviewer). A version that
    is already expired is audited again under the same key, so a retry after a crash between
    the tag and the audit fills the gap and otherwise adds nothing.

    :param waited: how long it waited, for the reason (e.g. ``"60 minutes"``).
    """
    # Expiry applies no threshold; the policy routes the expired event's notification.
    with announced(trail, actor, "expire", model_name, version):
        changed = approval.expire(client, model_name, version, waited=waited)
        mv = version_now(client, model_name, version)
        if mv.tags.get(lc.APPROVAL_STATUS) == ApprovalStatus.EXPIRED.value:
            record(trail, expired_event(mv, actor), policy=policy)
    return changed
