"""The approval policy and the approval record on a version.

The decision is written to the version's tags, so every channel (the DAG's policy step, a
reviewer in the MLflow UI, the reviewer CLI) ends in the same record, and the sensor and the
promote step read only that record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

from include.governance import lifecycle as lc
from include.governance.audit import evidence_metrics
from include.governance.canary import canary_evidence_problem, canary_required
from include.governance.candidate import staleness_problem
from include.governance.lifecycle import ApprovalStatus
from include.governance.policy import ApprovalPolicy
from include.governance.registry import get_aliases, is_not_found, require_version, set_tags

log = logging.getLogger(__name__)

_INVALID_PARAMETER = ErrorCode.Name(INVALID_PARAMETER_VALUE)


class ApprovalError(RuntimeError):
    """An approval cannot be recorded or accepted; the message says why."""


class ReviewRefused(ApprovalError):
    """A person's decision the review rules do not accept; nothing was recorded for it.

    :param where: the version (``"model vN"``).
    :param reviewer: who decided.
    :param reason: which rule refused it and why, without the version.
    """

    rule = "review"

    def __init__(self, where: str, reviewer: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reviewer = reviewer
        self.reason = reason


class ReviewerRefused(ReviewRefused):
    """This person may not decide on this version (separation of duties, the approver allow-list)."""

    rule = "reviewer"


class NotValidated(ReviewRefused):
    """An approval of a version that has not passed validation."""

    rule = "validation"


class StaleDecision(ReviewRefused):
    """A decision that could not take effect: the version is no longer the candidate, or serves."""

    rule = "candidate"


class MissingCanaryEvidence(ReviewRefused):
    """An approval of a challenger the policy wants canary evidence for, which it lacks."""

    rule = "canary"


class AlreadyDecided(ReviewRefused):
    """A second, different decision on a version a person already decided on."""

    rule = "final"


@dataclass(frozen=True)
class Decision:
    status: ApprovalStatus
    reason: str
    # Who made it: None for the policy; a reviewer's name when a person had already decided.
    decided_by: str | None = None


def decide(
    *,
    validation_passed: bool,
    improvement: float | None,
    policy: ApprovalPolicy,
    validation_summary: str = "",
) -> Decision:
    """The seed's approval policy.

    validation failed -> rejected; manual mode -> pending; no champion -> approved (first
    model); canary evidence required -> needs_review; improvement >= +min_improvement ->
    approved; drop within max_degradation -> approved; larger drop -> needs_review.

    :param improvement: challenger minus champion on the comparison metric; None without champion.
    """
    if not validation_passed:
        detail = f": {validation_summary}" if validation_summary else ""
        return Decision(ApprovalStatus.REJECTED, f"Model failed validation checks{detail}")
    if policy.mode == "manual":
        return Decision(ApprovalStatus.PENDING, "Manual approval required (approval mode 'manual')")
    if improvement is None:
        return Decision(ApprovalStatus.APPROVED, "First model meets validation criteria")
    if policy.require_canary_evidence:
        # Evidence comes from serving it as canary, after this step: a person approves then.
        return Decision(
            ApprovalStatus.NEEDS_REVIEW,
            f"Canary evidence required (require_canary_evidence): approve once it has served at least "
            f"{policy.canary_min_requests} canary requests within the error-rate and p95 limits",
        )
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
    # When a person decided (manual_approval_timestamp), if one did.
    decided_at: str | None = None

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
        decided_at=tags.get(lc.MANUAL_APPROVAL_TIMESTAMP) or None,
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
        return Decision(record.status, record.reason or f"decided by {record.approved_by}", record.approved_by)

    validation = mv.tags.get(lc.VALIDATION_STATUS)
    if validation is None:
        raise ApprovalError(f"{where} has not been validated ({lc.VALIDATION_STATUS} tag missing)")
    improvement_tag = mv.tags.get(lc.VALIDATION_IMPROVEMENT)
    decision = decide(
        validation_passed=validation == lc.ValidationStatus.PASSED.value,
        improvement=float(improvement_tag) if improvement_tag is not None else None,
        policy=policy,
        validation_summary=mv.tags.get(lc.VALIDATION_SUMMARY, ""),
    )
    if _already_requested(mv.tags, decision):
        # A retried approve task: the same request is on record for this validation. Writing a
        # new timestamp would make it a second request (a second audit row, a second "awaiting
        # your decision" message) for the same validation.
        log.info("%s approval already requested at %s: %s", where, mv.tags[lc.APPROVAL_TIMESTAMP], decision.status.value)
        return decision
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


def _already_requested(tags: dict[str, str], decision: Decision) -> bool:
    """Whether ``tags`` hold this same policy decision, requested after the version's validation."""
    requested, validated = tags.get(lc.APPROVAL_TIMESTAMP), tags.get(lc.VALIDATION_TIMESTAMP)
    if not requested or not validated or tags.get(lc.APPROVED_BY):
        return False
    same = (tags.get(lc.APPROVAL_STATUS), tags.get(lc.APPROVAL_REASON)) == (decision.status.value, decision.reason[:4000])
    try:
        return same and datetime.fromisoformat(requested) >= datetime.fromisoformat(validated)
    except ValueError:  # a timestamp tag edited by hand: request again rather than guess
        return False


@dataclass(frozen=True)
class PriorDecision:
    """A person's decision already on record for a version."""

    status: ApprovalStatus
    reviewer: str


def prior_decision(record: ApprovalRecord) -> PriorDecision | None:
    """The person's decision a version's tags hold (approved or rejected), or None."""
    if record.decided_by_person and record.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        return PriorDecision(record.status, record.approved_by)
    return None


def check_review(
    tags: dict[str, str],
    aliases: dict[str, str],
    version: str,
    policy: ApprovalPolicy,
    *,
    where: str,
    approve: bool,
    reviewer: str,
    prior: PriorDecision | None,
) -> None:
    """Every rule a person's decision must pass, whichever channel carries it.

    :param tags: the version's tags (without the decision being judged).
    :param aliases: the model's aliases.
    :param prior: a person's decision already on record, if any.
    :raises ReviewRefused: a subclass naming the rule: the first rule the decision breaks.
    """
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    if prior is not None:
        if (prior.status, prior.reviewer) == (status, reviewer):
            return  # the same decision again (a retry): it was judged when it was recorded
        raise AlreadyDecided(
            where, reviewer, f"it was already {prior.status.value} by {prior.reviewer}; a recorded decision is final"
        )
    if approve and tags.get(lc.VALIDATION_STATUS) != lc.ValidationStatus.PASSED.value:
        raise NotValidated(where, reviewer, "it has not passed validation, so it cannot be approved")
    problem = reviewer_problem(ApprovalRecord(status, "", reviewer, None, tags.get(lc.SUBMITTED_BY)), policy)
    if problem:
        raise ReviewerRefused(where, reviewer, problem)
    problem = candidate_problem(tags, aliases, version, approve=approve)
    if problem:
        raise StaleDecision(where, reviewer, problem)
    if approve and canary_required(policy, aliases, version):
        problem = canary_evidence_problem(tags, policy)
        if problem:
            raise MissingCanaryEvidence(where, reviewer, f"its approval cannot count yet: {problem}")


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
    """Record a person's decision on a version, after every review rule (``check_review``).

    The same decision by the same person again changes nothing (a retried task).

    :param approve: True approves, False rejects.
    :param reviewer: the reviewer's user name (written to ``approved_by``).
    :raises ReviewRefused: a rule refuses the decision; nothing was written.
    :raises ApprovalError: no reviewer named.
    :raises VersionNotFound: the version does not exist.
    """
    version = str(version)
    if not reviewer or not reviewer.strip():
        raise ApprovalError("a reviewer name is required")
    mv = require_version(client, model_name, version)
    where = f"{model_name} v{version}"
    prior = prior_decision(read_record(mv.tags, where=where))
    check_review(mv.tags, get_aliases(client, model_name), version, policy,
                 where=where, approve=approve, reviewer=reviewer, prior=prior)
    if prior is not None:
        log.info("%s was already %s by %s; nothing to change", where, prior.status.value, reviewer)
        return read_record(mv.tags, where=where)
    tags = {
        lc.APPROVED_BY: reviewer,
        lc.MANUAL_APPROVAL_TIMESTAMP: lc.utc_now_iso(),
        lc.APPROVAL_REASON: f"{'Approved' if approve else 'Rejected'} by {reviewer}",
    }
    if notes:
        tags[lc.APPROVAL_NOTES] = notes[:4000]
    # Tags are written one by one and a sensor may read between two writes: the status goes
    # last, so whoever sees the decision also sees who made it, when, and why.
    tags[lc.APPROVAL_STATUS] = (ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED).value
    set_tags(client, model_name, version, tags)
    return read_record({**mv.tags, **tags}, where=where)


def candidate_problem(tags: dict[str, str], aliases: dict[str, str], version: str, *, approve: bool) -> str | None:
    """Why a person's decision on this version would not take effect now, or None.

    Rejecting the serving ``@champion`` is refused (roll back instead); approving needs the
    version to still be the candidate it was validated as (``staleness_problem``).
    """
    champion = aliases.get(lc.CHAMPION)
    if not approve:
        if champion == version:
            return f"it is the serving @{lc.CHAMPION}; roll back to another version instead of rejecting it"
        return None
    if champion == version:
        return f"it is already @{lc.CHAMPION}"
    return staleness_problem(tags, aliases, version)


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


@dataclass(frozen=True)
class PendingVersion:
    """A version waiting for a person's decision, as the registry search returned it."""

    model_name: str
    version: str
    status: str
    reason: str
    submitted_by: str | None
    requested_at: str | None
    run_id: str
    # The validation numbers on the version (validation_<metric> tags).
    evidence: dict[str, float] = field(default_factory=dict)
    # The model's @challenger when it is another version: approving this one would be stale.
    challenger: str | None = None

    @property
    def is_candidate(self) -> bool:
        return self.challenger == self.version

    def as_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "submitted_by": self.submitted_by,
            "requested_at": self.requested_at,
            "run_id": self.run_id,
            "evidence": dict(self.evidence),
            "challenger": self.challenger,
            "is_candidate": self.is_candidate,
        }


# Decided statuses, excluded in the registry search itself: tag filters take =, !=, LIKE and
# ILIKE but not IN, and conditions on one tag are ANDed, so "not decided" is one filter.
_DECIDED = (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED)
PENDING_FILTER = " AND ".join(f"tags.{lc.APPROVAL_STATUS} != '{s.value}'" for s in _DECIDED)


def pending_versions(client: MlflowClient, model_name: str | None = None, *, page_size: int = 1000) -> list[PendingVersion]:
    """Versions awaiting a decision, across models, from one paged registry search.

    The search returns each version with its tags, so nothing is fetched per version; only the
    @challenger of each model with a waiting version is read (one call per such model, concurrently).

    :param model_name: only this model.
    :param page_size: versions per page of the search.
    """
    query = PENDING_FILTER
    if model_name is not None:
        if "'" in model_name or "\\" in model_name:
            raise ValueError(f"model name {model_name!r} contains a quote or backslash")
        query = f"name = '{model_name}' AND {query}"
    found, token = [], None
    while True:
        page = client.search_model_versions(
            query, max_results=page_size, order_by=["name ASC", "version_number ASC"], page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            break
    waiting = []
    for mv in found:
        raw = mv.tags.get(lc.APPROVAL_STATUS)
        try:
            status = ApprovalStatus.parse(raw, where=f"{mv.name} v{mv.version}")
        except ValueError:
            # A malformed status blocks the waiting run: show it so someone fixes the tag.
            status = None
        if status is not None and status not in lc.AWAITING_DECISION:
            continue
        waiting.append((mv, status.value if status else f"invalid: {raw!r}"))
    challengers = _challengers(client, sorted({mv.name for mv, _ in waiting}))
    return [
        PendingVersion(
            model_name=mv.name,
            version=str(mv.version),
            status=status,
            reason=mv.tags.get(lc.APPROVAL_REASON, ""),
            submitted_by=mv.tags.get(lc.SUBMITTED_BY),
            requested_at=mv.tags.get(lc.APPROVAL_TIMESTAMP),
            run_id=mv.run_id,
            evidence=evidence_metrics(mv.tags),
            challenger=challengers[mv.name],
        )
        for mv, status in waiting
    ]


# Concurrent alias reads: at 40 waiting models one call after another cost 4x the search itself.
_ALIAS_READERS = 8


def _challengers(client: MlflowClient, model_names: list[str]) -> dict[str, str | None]:
    """Each model's @challenger version (None when unset), read concurrently.

    ``get_model_version_by_alias`` costs the same whatever the model's size, unlike
    ``get_registered_model``, which loads every version of the model on a SQL store.
    """
    from concurrent.futures import ThreadPoolExecutor

    def challenger(name: str) -> str | None:
        try:
            return str(client.get_model_version_by_alias(name, lc.CHALLENGER).version)
        except MlflowException as exc:
            # An unset alias is INVALID_PARAMETER_VALUE "... alias challenger not found."; a model
            # deleted since the search, RESOURCE_DOES_NOT_EXIST.
            if is_not_found(exc) or (exc.error_code == _INVALID_PARAMETER and "not found" in str(exc)):
                return None
            raise

    if len(model_names) <= 1:
        return {name: challenger(name) for name in model_names}
    with ThreadPoolExecutor(max_workers=min(_ALIAS_READERS, len(model_names))) as pool:
        return dict(zip(model_names, pool.map(challenger, model_names)))
