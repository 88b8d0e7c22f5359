"""The approval policy and the approval record on a version.

The decision is written to the version's tags, so every channel (the DAG's policy step, a
reviewer in the MLflow UI, the reviewer CLI) ends in the same record, and the sensor and the
promote step read only that record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.lifecycle import ApprovalStatus
from include.governance.policy import ApprovalPolicy
from include.governance.registry import require_version, set_tags

log = logging.getLogger(__name__)


class ApprovalError(RuntimeError):
    """An approval cannot be recorded or accepted; the message says why."""


@dataclass(frozen=True)
class Decision:
    status: ApprovalStatus
    reason: str


def decide(
    *,
    validation_passed: bool,
    improvement: float | None,
    policy: ApprovalPolicy,
    validation_summary: str = "",
) -> Decision:
    """The seed's approval policy.

    validation failed -> rejected; manual mode -> pending; no champion -> approved (first
    model); improvement >= +min_improvement -> approved; drop within max_degradation ->
    approved; larger drop -> needs_review.

    :param improvement: challenger minus champion on the comparison metric; None without champion.
    """
    if not validation_passed:
        detail = f": {validation_summary}" if validation_summary else ""
        return Decision(ApprovalStatus.REJECTED, f"Model failed validation checks{detail}")
    if policy.mode == "manual":
        return Decision(ApprovalStatus.PENDING, "Manual approval required (approval mode 'manual')")
    if improvement is None:
        return Decision(ApprovalStatus.APPROVED, "First model meets validation criteria")
    if improvement >= policy.auto_approve_min_improvement:
        return Decision(ApprovalStatus.APPROVED, f"Significant accuracy improvement: {improvement:+.3f}")
    if improvement >= -policy.auto_approve_max_degradation:
        return Decision(
            ApprovalStatus.APPROVED, f"Performance maintained within acceptable range: {improvement:+.3f}"
        )
    return Decision(ApprovalStatus.NEEDS_REVIEW, f"Performance degradation requires review: {improvement:+.3f}")


@dataclass(frozen=True)
class ApprovalRecord:
    """What a version's tags say about its approval."""

    status: ApprovalStatus | None
    reason: str
    approved_by: str | None
    notes: str | None
    submitted_by: str | None

    @property
    def decided_by_person(self) -> bool:
        return bool(self.approved_by)


def read_record(tags: dict[str, str], *, where: str) -> ApprovalRecord:
    """Parse a version's approval tags; an unknown status is an error naming the version."""
    return ApprovalRecord(
        status=ApprovalStatus.parse(tags.get(lc.APPROVAL_STATUS), where=where),
        reason=tags.get(lc.APPROVAL_REASON, ""),
        approved_by=tags.get(lc.APPROVED_BY) or None,
        notes=tags.get(lc.APPROVAL_NOTES) or None,
        submitted_by=tags.get(lc.SUBMITTED_BY) or None,
    )


def reviewer_problem(record: ApprovalRecord, policy: ApprovalPolicy) -> str | None:
    """Why a person's approval must not count (separation of duties, allow-list), or None."""
    if not record.decided_by_person:
        return None
    reviewer = record.approved_by
    if policy.require_distinct_approver and record.submitted_by and reviewer == record.submitted_by:
        return f"{reviewer} submitted this version and cannot also approve it (separation of duties)"
    if policy.approvers and reviewer not in policy.approvers:
        return f"{reviewer} is not an allowed approver ({', '.join(policy.approvers)})"
    return None


def request_approval(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    policy: ApprovalPolicy,
) -> Decision:
    """Apply the approval policy to a validated version and record the decision on it.

    A decision a person already recorded (approved or rejected with ``approved_by``) is kept:
    re-running this step never overwrites a reviewer.
    """
    version = str(version)
    mv = require_version(client, model_name, version)
    where = f"{model_name} v{version}"
    record = read_record(mv.tags, where=where)
    if record.decided_by_person and record.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        log.info("%s already decided by %s: %s", where, record.approved_by, record.status.value)
        return Decision(record.status, record.reason or f"decided by {record.approved_by}")

    validation = mv.tags.get(lc.VALIDATION_STATUS)
    if validation is None:
        raise ApprovalError(f"{where} has not been validated ({lc.VALIDATION_STATUS} tag missing)")
    improvement_tag = mv.tags.get("validation_improvement")
    decision = decide(
        validation_passed=validation == lc.ValidationStatus.PASSED.value,
        improvement=float(improvement_tag) if improvement_tag is not None else None,
        policy=policy,
        validation_summary=mv.tags.get("validation_summary", ""),
    )
    set_tags(
        client,
        model_name,
        version,
        {
            lc.APPROVAL_STATUS: decision.status.value,
            lc.APPROVAL_REASON: decision.reason[:4000],
            lc.APPROVAL_TIMESTAMP: lc.utc_now_iso(),
        },
    )
    log.info("%s approval decision: %s (%s)", where, decision.status.value, decision.reason)
    return decision


def record_review(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    *,
    approve: bool,
    reviewer: str,
    notes: str | None,
    policy: ApprovalPolicy,
) -> ApprovalRecord:
    """Record a person's decision on a version, as a reviewer in the MLflow UI would.

    :param approve: True approves, False rejects.
    :param reviewer: the reviewer's user name (written to ``approved_by``).
    :raises ApprovalError: the reviewer may not decide on this version.
    """
    version = str(version)
    if not reviewer or not reviewer.strip():
        raise ApprovalError("a reviewer name is required")
    mv = require_version(client, model_name, version)
    where = f"{model_name} v{version}"
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    if approve and mv.tags.get(lc.VALIDATION_STATUS) != lc.ValidationStatus.PASSED.value:
        raise ApprovalError(f"{where} has not passed validation; it cannot be approved")
    candidate = ApprovalRecord(status, "", reviewer, notes, mv.tags.get(lc.SUBMITTED_BY))
    problem = reviewer_problem(candidate, policy)
    if problem:
        raise ApprovalError(f"{where}: {problem}")
    tags = {
        lc.APPROVAL_STATUS: status.value,
        lc.APPROVED_BY: reviewer,
        lc.MANUAL_APPROVAL_TIMESTAMP: lc.utc_now_iso(),
        lc.APPROVAL_REASON: f"{'Approved' if approve else 'Rejected'} by {reviewer}",
    }
    if notes:
        tags[lc.APPROVAL_NOTES] = notes[:4000]
    set_tags(client, model_name, version, tags)
    return read_record({**mv.tags, **tags}, where=where)


def expire(client: MlflowClient, model_name: str, version: str | int, *, waited: str) -> bool:
    """Mark a version still awaiting a decision as expired; return whether it was changed.

    A decision that arrived meanwhile is left alone: expiry never overwrites a reviewer.
    """
    version = str(version)
    mv = require_version(client, model_name, version)
    record = read_record(mv.tags, where=f"{model_name} v{version}")
    if record.status not in lc.AWAITING_DECISION:
        return False
    set_tags(
        client,
        model_name,
        version,
        {
            lc.APPROVAL_STATUS: ApprovalStatus.EXPIRED.value,
            lc.APPROVAL_REASON: f"No decision within {waited}; nothing was promoted",
            lc.APPROVAL_TIMESTAMP: lc.utc_now_iso(),
        },
    )
    return True
