"""In-band or out-of-band: did a step of the project make the change a webhook reports?

Every step announces itself in the audit database before it changes the registry and says when
it has finished (``include.governance.audit.intents``), then appends its audit row. A change that
arrives while a step on its version (or on its whole model: promote, rollback) is under way is
that step's: in-band. Otherwise (after the step, its audit rows exist) the change is judged against the audit trail a short while after it arrives (the caller re-judges every second
until a grace period ends; a change found in-band is settled at once):

- **alias** (``@champion``, ``@challenger``, ``@previous_champion``; others are not governed):
  in-band when it leaves the alias where the audit trail already had it, or when an audit row
  recorded from ``lookback`` seconds before the delivery onwards leaves the alias, replayed with
  every row before it (``drift.expected_state``, the replay ``audit verify`` uses), as the
  delivery says (moved to that version, or gone);
- **governance tag** (approval, validation, promotion, rollback records: the tags
  lifecycle.py names and governance-auth reserves for approvers): in-band when an audit row about
  that version (or naming it as the other side of an alias move) was recorded from ``lookback``
  seconds before the delivery onwards; or when it is a reviewer's decision (``approval_status``
  approved/rejected, ``approved_by``, ``approval_notes``, ...) on a version whose audited status
  still awaits one (pending, needs_review, expired): the MLflow UI is a review channel, and the
  approval sensor or ``audit verify`` records the decision;
- **version created**: in-band when the audit trail has the version's ``registered`` row;
- a model the audit trail knows nothing of is not governed here: nothing is concluded.

Anything else, once the grace period is over, is an ``out_of_band_change`` event naming what
changed and, where the trail knows it, the audited value it replaced. A by-hand change to the
same version while one of its steps runs, or within ``lookback`` of one's audit row, can pass as in-band;
``audit verify`` (which compares the whole state) still reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from include.governance import lifecycle as lc
from include.governance.audit import AuditEvent, EventType
from include.governance.audit.intents import StepIntent
from include.governance.drift import GOVERNED_ALIASES, expected_state
from include.governance.webhooks import changes as ch
from include.governance.webhooks.deliveries import Delivery

SOURCE = "mlflow_webhook"
# MLflow's payload does not say who made the change.
UNKNOWN_ACTOR = "unknown"
GOVERNANCE_TAGS = frozenset(
    {
        lc.APPROVAL_STATUS, lc.APPROVAL_REASON, lc.APPROVAL_TIMESTAMP, lc.APPROVED_BY, lc.APPROVAL_NOTES,
        lc.MANUAL_APPROVAL_TIMESTAMP, lc.AUTO_PROMOTED, lc.PROMOTION_TIMESTAMP, lc.PREVIOUS_CHAMPION_VERSION,
        lc.ARCHIVED_TIMESTAMP, lc.ROLLED_BACK_BY, lc.ROLLBACK_REASON, lc.ROLLBACK_TIMESTAMP,
        lc.ROLLED_BACK_FROM_VERSION,
    }
)
# What a reviewer writes on a version in the MLflow UI (README: approving a waiting version).
REVIEW_TAGS = frozenset({lc.APPROVAL_STATUS, lc.APPROVED_BY, lc.APPROVAL_NOTES, lc.APPROVAL_REASON, lc.MANUAL_APPROVAL_TIMESTAMP})
_DECISIONS = frozenset({lc.ApprovalStatus.APPROVED.value, lc.ApprovalStatus.REJECTED.value})
_OPEN_STATUSES = frozenset(s.value for s in lc.AWAITING_DECISION | {lc.ApprovalStatus.EXPIRED})


@dataclass(frozen=True)
class Verdict:
    """The judgement on one change.

    :param in_band: a step (or a review channel) made it, or it is nothing governed.
    :param why: the evidence, e.g. ``audited #12 promoted v3 by alice``.
    :param version: the version the change is about (an alias deleted: the one it named).
    :param old: the audited value the change replaced, where the trail knows it.
    :param new: the value the change left (None: deleted).
    """

    in_band: bool
    why: str
    version: str | None = None
    old: str | None = None
    new: str | None = None
    run_id: str | None = None


def is_governance_tag(key: str | None) -> bool:
    return bool(key) and (key in GOVERNANCE_TAGS or key.startswith(lc.VALIDATION_METRIC_PREFIX))


def watched(change: ch.RegistryChange) -> bool:
    """Whether the change is one this module judges (governed aliases and tags, new versions)."""
    if change.model_name is None:
        return False
    if change.event in (ch.ALIAS_CREATED, ch.ALIAS_DELETED):
        return change.alias in GOVERNED_ALIASES
    if change.event in (ch.TAG_SET, ch.TAG_DELETED):
        return is_governance_tag(change.key)
    return change.event == ch.VERSION_CREATED


def judge(
    delivery: Delivery, events: Sequence[AuditEvent], *, lookback: float, intents: Sequence[StepIntent] = ()
) -> Verdict:
    """Judge a watched change against the model's audit events (oldest first) and the steps
    announced on it (``intents``), as they are now."""
    change = delivery.change
    if not events:
        return Verdict(True, f"the audit trail knows no model {change.model_name!r}: not governed here", change.version)
    since = delivery.received_at - timedelta(seconds=lookback)
    evidence = [e for e in events if e.event is not EventType.OUT_OF_BAND_CHANGE]
    if change.event in (ch.ALIAS_CREATED, ch.ALIAS_DELETED):
        verdict = _judge_alias(change, evidence, delivery.received_at, since)
    elif change.event in (ch.TAG_SET, ch.TAG_DELETED):
        verdict = _judge_tag(change, evidence, delivery.received_at, since)
    else:
        verdict = _judge_creation(change, evidence)
    if verdict.in_band:
        return verdict
    for intent in intents:
        if intent.covers(change.model_name, verdict.version, delivery.received_at):
            return replace(verdict, in_band=True, why=f"announced step: {intent.describe()}")
    return verdict


def _judge_alias(change: ch.RegistryChange, events: list[AuditEvent], received: datetime, since: datetime) -> Verdict:
    wanted = change.version if change.event == ch.ALIAS_CREATED else None
    before = expected_state([e for e in events if e.recorded_at < received])
    audited = before.aliases.get(change.alias)
    old = audited.value if audited else None
    subject = wanted if wanted is not None else old
    run_id = before.run_ids.get(subject) if subject else None
    if old == wanted:
        return Verdict(True, f"@{change.alias} is where the audit trail has it", subject, old, wanted, run_id)
    for index, event in enumerate(events):
        if event.recorded_at < since:
            continue
        after = expected_state(events[: index + 1]).aliases.get(change.alias)
        if (after.value if after else None) == wanted:
            return Verdict(True, f"audited {_label(event)}", subject, old, wanted, run_id or event.run_id)
    why = f"no audited step left @{change.alias} {'at v' + wanted if wanted else 'deleted'} (audited: {_value(old)})"
    return Verdict(False, why, subject, old, wanted, run_id)


def _judge_tag(change: ch.RegistryChange, events: list[AuditEvent], received: datetime, since: datetime) -> Verdict:
    version = change.version
    new = change.value if change.event == ch.TAG_SET else None
    before = expected_state([e for e in events if e.recorded_at < received])
    tracked = before.tags.get(version, {}).get(change.key)
    old = tracked.value if tracked else None
    run_id = before.run_ids.get(version)
    for event in events:
        about = str(event.version) == version or event.counterpart_version == version
        if about and event.recorded_at >= since:
            return Verdict(True, f"audited {_label(event)}", version, old, new, run_id or event.run_id)
    if _is_review(change) and _status(before, version) in _OPEN_STATUSES:
        return Verdict(True, "a reviewer's decision on a version awaiting one (the approval sensor records it)",
                       version, old, new, run_id)
    why = f"no audited step wrote {change.key} on v{version} (audited: {_value(old)})"
    return Verdict(False, why, version, old, new, run_id)


def _judge_creation(change: ch.RegistryChange, events: list[AuditEvent]) -> Verdict:
    for event in events:
        if event.event is EventType.REGISTERED and str(event.version) == change.version:
            return Verdict(True, f"audited {_label(event)}", change.version, None, change.version, event.run_id)
    run = change.tags.get(lc.AIRFLOW_RUN_ID)
    why = f"no registered row for v{change.version}" + (f" (its tags name DAG run {run})" if run else "")
    return Verdict(False, why, change.version, None, change.version)


def _is_review(change: ch.RegistryChange) -> bool:
    if change.event != ch.TAG_SET or change.key not in REVIEW_TAGS:
        return False
    return change.key != lc.APPROVAL_STATUS or (change.value or "").strip().lower() in _DECISIONS


def _status(state, version: str) -> str | None:
    audited = state.tags.get(version, {}).get(lc.APPROVAL_STATUS)
    return audited.value if audited else None


def _label(event: AuditEvent) -> str:
    return f"#{event.id} {event.event.value} v{event.version} by {event.actor}"


def _value(value: str | None) -> str:
    return "unset" if value is None else repr(value)


def out_of_band_event(delivery: Delivery, verdict: Verdict) -> AuditEvent:
    """The ``out_of_band_change`` row: what changed, the audited value it replaced, the delivery."""
    change = delivery.change
    return AuditEvent(
        event=EventType.OUT_OF_BAND_CHANGE,
        model_name=change.model_name or "",
        version=verdict.version or "",
        actor=UNKNOWN_ACTOR,
        occurred_at=delivery.sent_at,
        source=SOURCE,
        run_id=verdict.run_id,
        reason=f"{change.describe()} outside the project: {verdict.why}",
        details={
            "change": change.event,
            "alias": change.alias,
            "tag": change.key,
            "old": verdict.old,
            "new": verdict.new,
            "delivery_id": delivery.delivery_id,
            "received_at": delivery.received_at.isoformat(timespec="milliseconds"),
        },
        dedup_key=f"{EventType.OUT_OF_BAND_CHANGE.value}/{delivery.delivery_id}",
    )
