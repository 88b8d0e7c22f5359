"""Validate: the policy's quality gates on a version, the verdict tagged, ``validated`` audited."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance.audit import AuditContext, AuditTrail, validated_event
from include.governance.policy import GovernancePolicy
from include.governance.steps.recording import announced, record, version_now
from include.governance.validation import ValidationOutcome, validate_model_version


def validate(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
) -> ValidationOutcome:
    """Run the gates (with the policy's run overrides), tag the verdict and audit it.

    A failed validation is a verdict, not an error: it is tagged and audited like a pass.
    """
    with announced(trail, actor, "validate", model_name, version):
        outcome = validate_model_version(client, model_name, version, policy)
        record(trail, validated_event(version_now(client, model_name, outcome.version), actor), policy=policy)
    return outcome
