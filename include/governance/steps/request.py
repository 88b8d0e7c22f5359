"""Request approval: the approval policy's decision on a validated version, audited."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import approval
from include.governance.approval import Decision
from include.governance.audit import AuditContext, AuditTrail, approval_events
from include.governance.policy import GovernancePolicy
from include.governance.steps.recording import announced, record, version_now


def request_approval(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
) -> Decision:
    """Apply the approval policy and record ``approval_requested`` (and the policy's own decision).

    A decision a person already recorded is kept and nothing is audited here: the step that
    recorded it audited it.

    :raises ApprovalError: the version has not been validated.
    """
    with announced(trail, actor, "request approval", model_name, version):
        decision = approval.request_approval(client, model_name, version, policy.approval)
        if decision.decided_by is None:
            record(trail, *approval_events(version_now(client, model_name, version), actor), policy=policy)
    return decision
