"""Record a review: a person's approval or rejection, under every review rule, audited once.

Two ways a decision reaches a version: a channel hands it to ``record_review`` (the CLI, the
review operator, the HITL operator), or a person writes the tags directly (the MLflow UI) and
the approval sensor finds it through ``observe_decision``. Both apply ``check_review``; a
refusal is audited as ``approval_refused`` and raised, an accepted decision is audited as
``approved``/``rejected`` by the step that accepted it. The sensor seeing a decision already
audited (same registry state, same key) judges and records nothing again.
"""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import approval
from include.governance import lifecycle as lc
from include.governance.approval import ApprovalRecord, PriorDecision, ReviewRefused, check_review, read_record
from include.governance.audit import (
    POLICY_ACTOR,
    AuditContext,
    AuditEvent,
    AuditTrail,
    EventType,
    refused_review_event,
    review_event,
)
from include.governance.lifecycle import ApprovalStatus
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases, require_version
from include.governance.steps.recording import announced, record, version_now

_DECISION_EVENTS = (EventType.APPROVED, EventType.REJECTED)


def policy_of_run(policy: GovernancePolicy, tags: dict[str, str]) -> GovernancePolicy:
    """The policy with the overrides the version's run was validated under (the caller's win).

    Every channel judges a decision by the rules of the run that produced the version (an
    approver allow-list passed as a run override, say), also those that never saw the run.
    """
    import json

    recorded = tags.get(lc.VALIDATION_POLICY_OVERRIDES)
    if not recorded:
        return policy
    return policy.with_overrides({**json.loads(recorded), **policy.overrides})


def record_review(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
    *,
    approve: bool,
    reviewer: str,
    notes: str | None,
    answered_at: str | None = None,
) -> ApprovalRecord:
    """Write a person's decision on the version and audit it; refuse it (audited) when a rule does.

    :param reviewer: who decides (``approved_by``).
    :param answered_at: when the person answered (ISO 8601; now when None): keys a refusal.
    :raises ReviewRefused: a subclass naming the rule (``rule``); nothing was written.
    :raises ApprovalError: no reviewer named.
    :raises VersionNotFound: no such version.
    """
    mv = require_version(client, model_name, version)
    with announced(trail, actor, "review", model_name, version):
        try:
            result = approval.record_review(
                client, model_name, version, approve=approve, reviewer=reviewer, notes=notes,
                policy=policy_of_run(policy, mv.tags).approval,
            )
        except ReviewRefused as refused:
            decision = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
            record(trail, _refusal(mv, actor, refused, decision, notes, answered_at), policy=policy)
            raise
        record(trail, review_event(version_now(client, model_name, version), actor), policy=policy)
    return result


def observe_decision(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
) -> ApprovalRecord:
    """Read the decision on a version's tags; judge and audit a person's decision nobody audited.

    :return: the approval record (waiting, the policy's decision, or an accepted person's one).
    :raises ReviewRefused: a person's decision written as tags that a review rule refuses
        (audited as ``approval_refused``).
    :raises ValueError: the status tag holds an unknown value.
    """
    mv = require_version(client, model_name, version)
    where = f"{model_name} v{version}"
    record_ = read_record(mv.tags, where=where)
    if not record_.decided_by_person or record_.status not in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        return record_
    event = review_event(mv, actor)
    earlier = _earlier_decisions(trail, mv)
    if any(e.dedup_key == event.dedup_key for e in earlier):
        return record_  # recorded (and judged) by the step that wrote it
    prior = _prior(earlier, exclude=event.dedup_key)
    try:
        check_review(
            mv.tags, get_aliases(client, model_name), str(version), policy_of_run(policy, mv.tags).approval,
            where=where, approve=record_.status is ApprovalStatus.APPROVED, reviewer=record_.approved_by, prior=prior,
        )
    except ReviewRefused as refused:
        record(trail, _refusal(mv, actor, refused, record_.status, record_.notes, record_.decided_at), policy=policy)
        raise
    record(trail, event, policy=policy)
    return record_


def _earlier_decisions(trail: AuditTrail | None, mv) -> list[AuditEvent]:
    """The people's decisions the trail holds for this version of this run (none without a trail)."""
    if trail is None:
        return []
    found = trail.log.events(model_name=mv.name, version=str(mv.version), run_id=mv.run_id, kinds=list(_DECISION_EVENTS))
    return [e for e in found if e.actor != POLICY_ACTOR]


def _prior(earlier: list[AuditEvent], *, exclude: str | None) -> PriorDecision | None:
    """The last audited decision by a person other than the one being judged, if any."""
    others = [e for e in earlier if e.dedup_key != exclude]
    if not others:
        return None
    last = others[-1]
    return PriorDecision(ApprovalStatus(last.event.value), last.actor)


def _refusal(
    mv, actor: AuditContext, refused: ReviewRefused, decision: ApprovalStatus, notes: str | None, answered_at: str | None
) -> AuditEvent:
    return refused_review_event(
        mv, actor, reviewer=refused.reviewer, reason=refused.reason,
        answered_at=answered_at or lc.utc_now_iso(), decision=decision.value, notes=notes,
    )
