"""Roll back: ``@champion`` moves back to a version that served before; audited."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import rollback as rollbacks
from include.governance.audit import AuditContext, AuditTrail
from include.governance.policy import GovernancePolicy
from include.governance.rollback import RollbackPlan, RollbackResult, plan_rollback
from include.governance.steps.recording import announced, record

__all__ = ["plan_rollback", "rollback"]


def rollback(
    client: MlflowClient,
    policy: GovernancePolicy | None,
    trail: AuditTrail | None,
    actor: AuditContext,
    plan: RollbackPlan,
    *,
    reason: str,
) -> RollbackResult:
    """Carry out a planned rollback as ``actor.actor`` and record ``rolled_back`` and ``archived``.

    Plan it first with ``plan_rollback`` (read-only): a retry executes the same plan and changes
    nothing once the move is made.

    :raises RollbackRefused: the champion moved since the plan, or no actor or reason.
    :raises VersionNotFound: the planned version is gone.
    """
    # A rollback's rules are the version's history, not thresholds; the policy routes notifications.
    with announced(trail, actor, "rollback", plan.model_name):
        result = rollbacks.execute_rollback(client, plan, actor=actor.actor, reason=reason)
        record(trail, *rollbacks.rollback_events(client, result, actor), policy=policy)
    return result
