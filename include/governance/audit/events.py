"""Governance events: what one audit row says, and how a step's registry state becomes events.

Every event (registered, validated, approval_requested, approved, rejected, approval_refused,
expired, promoted, archived, rolled_back, deleted, described, out_of_band_change,
serving_load_failed, retrain_triggered, notification_failed) is one row: who, when (UTC), which model version, the
alias move, the reason, the Airflow DAG run, and the metrics that decided it. Nothing here talks
to a database or to MLflow: the builders read a ModelVersion a step left behind.

Retries write no second row: an event carries a ``dedup_key`` built from the registry state it
describes (e.g. the ``promotion_timestamp`` tag). A retried task that finds its work already
done re-records the same key, which the store (``store.py``) turns into a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from include.governance import lifecycle as lc

POLICY_ACTOR = "policy"


class EventType(str, Enum):
    REGISTERED = "registered"
    VALIDATED = "validated"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    # A person's answer the policy did not accept (the submitter, someone off the allow-list).
    APPROVAL_REFUSED = "approval_refused"
    EXPIRED = "expired"
    PROMOTED = "promoted"
    ARCHIVED = "archived"
    ROLLED_BACK = "rolled_back"
    # A version deleted through the guarded delete step; the row keeps its evidence.
    DELETED = "deleted"
    # A version's or a registered model's description set (a model-level row has version "").
    DESCRIBED = "described"
    # A registry change no step of the project made (an alias moved, a governance tag set by
    # hand), reported by an MLflow webhook; details say what changed.
    OUT_OF_BAND_CHANGE = "out_of_band_change"
    # The model server could not load a version an alias named, or the version failed its input
    # example, so the server kept serving the version it had (include/serving).
    SERVING_LOAD_FAILED = "serving_load_failed"
    # The champion monitor found @champion degraded and started the retrain DAG.
    RETRAIN_TRIGGERED = "retrain_triggered"
    # A notification channel failed to deliver an event's message (include/governance/notifications).
    NOTIFICATION_FAILED = "notification_failed"


# Events that put a version in @champion: the champion's succession.
CHAMPION_EVENTS = (EventType.PROMOTED, EventType.ROLLED_BACK)


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where: the same for every event one task or command records.

    :param actor: the user (a DAG run's triggering user, a reviewer, ``policy``).
    :param source: the channel: ``airflow``, ``cli``.
    :param dag_id: the Airflow DAG, when an Airflow task records the event.
    :param dag_run_id: the Airflow DAG run id.
    :param task_id: the Airflow task id.
    """

    actor: str
    source: str
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit table.

    ``counterpart_version`` is the version on the other side of an alias move: the champion
    that was replaced (promoted, rolled_back) or the version that replaced it (archived).
    """

    event: EventType
    model_name: str
    version: str
    actor: str
    occurred_at: datetime
    source: str
    run_id: str | None = None
    from_alias: str | None = None
    to_alias: str | None = None
    counterpart_version: str | None = None
    reason: str | None = None
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    id: int | None = None
    recorded_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (timestamps as ISO 8601 UTC strings)."""
        data = asdict(self)
        data["event"] = self.event.value
        data["metrics"] = dict(self.metrics)
        data["details"] = dict(self.details)
        for key in ("occurred_at", "recorded_at"):
            data[key] = _iso(data[key])
        return data


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value else None


def as_utc(value: datetime) -> datetime:
    """The same instant, timezone-aware in UTC (naive datetimes, as SQLite returns them, are UTC)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# ---- Building events from the registry state a step left behind -------------------------

_NON_METRIC_VALIDATION_TAGS = frozenset(
    {
        lc.VALIDATION_STATUS,
        lc.VALIDATION_TIMESTAMP,
        lc.VALIDATION_BASELINE_VERSION,
        "validation_summary",
        "validation_policy_overrides",
    }
)


def evidence_metrics(tags: Mapping[str, str]) -> dict[str, float]:
    """The numbers validation recorded on a version (``validation_<metric>`` tags), by metric."""
    metrics = {}
    for key, value in tags.items():
        if not key.startswith(lc.VALIDATION_METRIC_PREFIX) or key in _NON_METRIC_VALIDATION_TAGS:
            continue
        try:
            metrics[key.removeprefix(lc.VALIDATION_METRIC_PREFIX)] = float(value)
        except (TypeError, ValueError):
            continue  # a text tag that shares the prefix is not evidence
    return metrics


def _when(tag_value: str | None) -> datetime:
    """The instant a tag recorded, or now when the tag is absent or unreadable."""
    if tag_value:
        try:
            return as_utc(datetime.fromisoformat(tag_value))
        except ValueError:
            pass
    return datetime.now(timezone.utc)


def _from_millis(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc) if value else None


def make_event(
    kind: EventType,
    mv: Any,
    context: AuditContext,
    *,
    stamp: str | None,
    actor: str | None = None,
    reason: str | None = None,
    from_alias: str | None = None,
    to_alias: str | None = None,
    counterpart_version: str | None = None,
    metrics: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """An event about a model version, keyed by the registry state it describes.

    :param mv: the ModelVersion (name, version, run_id, tags) after the step.
    :param stamp: the timestamp tag the step wrote: the event's time and its dedup key, so the
        same state change recorded twice (a retry, a second channel) is one row.
    :param actor: overrides the context's actor (``policy``, a reviewer).
    :param metrics: the deciding numbers (the version's validation evidence when None).
    :param occurred_at: when it happened, when no timestamp tag says so.
    """
    version = str(mv.version)
    key = f"{kind.value}/{mv.name}/{version}/{mv.run_id}/{stamp}" if stamp else None
    return AuditEvent(
        event=kind,
        model_name=mv.name,
        version=version,
        actor=actor or context.actor,
        occurred_at=occurred_at or _when(stamp),
        source=context.source,
        run_id=mv.run_id,
        from_alias=from_alias,
        to_alias=to_alias,
        counterpart_version=counterpart_version,
        reason=reason,
        dag_id=context.dag_id,
        dag_run_id=context.dag_run_id,
        task_id=context.task_id,
        metrics=evidence_metrics(mv.tags) if metrics is None else dict(metrics),
        details=dict(details or {}),
        dedup_key=key,
    )


def registered_event(mv: Any, context: AuditContext) -> AuditEvent:
    """A version was created from a run (one per version: keyed by its run)."""
    return make_event(
        EventType.REGISTERED,
        mv,
        context,
        stamp="created",
        occurred_at=_from_millis(getattr(mv, "creation_timestamp", None)),
        actor=mv.tags.get(lc.SUBMITTED_BY) or context.actor,
        reason=f"Registered from run {mv.run_id}",
        metrics={},
        details={
            "source": getattr(mv, "source", None),
            lc.DATA_FINGERPRINT: mv.tags.get(lc.DATA_FINGERPRINT),
        },
    )


def validated_event(mv: Any, context: AuditContext) -> AuditEvent:
    """The gates' verdict on a version, read from the tags validation wrote."""
    tags = mv.tags
    passed = tags.get(lc.VALIDATION_STATUS) == lc.ValidationStatus.PASSED.value
    return make_event(
        EventType.VALIDATED,
        mv,
        context,
        stamp=tags.get(lc.VALIDATION_TIMESTAMP),
        reason=tags.get("validation_summary"),
        to_alias=lc.CHALLENGER if passed else None,
        details={
            "status": tags.get(lc.VALIDATION_STATUS),
            "baseline_version": tags.get(lc.VALIDATION_BASELINE_VERSION),
            "policy_overrides": tags.get("validation_policy_overrides"),
        },
    )


def approval_events(mv: Any, context: AuditContext) -> list[AuditEvent]:
    """The approval step's events: the request, then the policy's own decision if it made one.

    A decision a person already recorded yields nothing here: the channel that recorded it (the
    CLI, the sensor) writes that event.
    """
    tags = mv.tags
    status = lc.ApprovalStatus.parse(tags.get(lc.APPROVAL_STATUS), where=f"{mv.name} v{mv.version}")
    if tags.get(lc.APPROVED_BY) or status is None:
        return []
    stamp = tags.get(lc.APPROVAL_TIMESTAMP)
    reason = tags.get(lc.APPROVAL_REASON)
    details = {"status": status.value, "baseline_version": tags.get(lc.VALIDATION_BASELINE_VERSION)}
    events = [make_event(EventType.APPROVAL_REQUESTED, mv, context, stamp=stamp, reason=reason, details=details)]
    decided = {lc.ApprovalStatus.APPROVED: EventType.APPROVED, lc.ApprovalStatus.REJECTED: EventType.REJECTED}
    if status in decided:
        events.append(
            make_event(decided[status], mv, context, stamp=stamp, actor=POLICY_ACTOR, reason=reason, details=details)
        )
    return events


def review_event(mv: Any, context: AuditContext) -> AuditEvent | None:
    """A person's approval or rejection recorded on the version, or None when there is none.

    Keyed by the decision's timestamp, so the CLI that records it and the sensor that later
    sees it write one row.
    """
    tags = mv.tags
    reviewer = tags.get(lc.APPROVED_BY)
    status = lc.ApprovalStatus.parse(tags.get(lc.APPROVAL_STATUS), where=f"{mv.name} v{mv.version}")
    kinds = {lc.ApprovalStatus.APPROVED: EventType.APPROVED, lc.ApprovalStatus.REJECTED: EventType.REJECTED}
    if not reviewer or status not in kinds:
        return None
    # A decision typed into the MLflow UI may lack the timestamp tag: key it by the reviewer.
    stamp = tags.get(lc.MANUAL_APPROVAL_TIMESTAMP) or f"{status.value}-by-{reviewer}"
    return make_event(
        kinds[status],
        mv,
        context,
        stamp=stamp,
        actor=reviewer,
        reason=tags.get(lc.APPROVAL_REASON) or f"{status.value} by {reviewer}",
        details={"notes": tags.get(lc.APPROVAL_NOTES), "submitted_by": tags.get(lc.SUBMITTED_BY)},
    )


def refused_review_event(
    mv: Any, context: AuditContext, *, reviewer: str, reason: str, answered_at: str, decision: str, notes: str | None = None
) -> AuditEvent:
    """A person's answer the policy refused; nothing was recorded on the version.

    :param answered_at: when the person answered (ISO 8601): one row per answer.
    :param decision: what the person chose (``approved`` or ``rejected``).
    """
    return make_event(
        EventType.APPROVAL_REFUSED,
        mv,
        context,
        stamp=f"{answered_at}-by-{reviewer}",
        occurred_at=_when(answered_at),
        actor=reviewer,
        reason=reason,
        details={"decision": decision, "notes": notes, "submitted_by": mv.tags.get(lc.SUBMITTED_BY)},
    )


def expired_event(mv: Any, context: AuditContext) -> AuditEvent:
    """A version's wait for a decision ran out (the policy's timeout, so the actor is the policy)."""
    return make_event(
        EventType.EXPIRED,
        mv,
        context,
        stamp=mv.tags.get(lc.APPROVAL_TIMESTAMP),
        actor=POLICY_ACTOR,
        reason=mv.tags.get(lc.APPROVAL_REASON),
    )


def promotion_events(mv: Any, old: Any | None, context: AuditContext, *, promoted_at: str) -> list[AuditEvent]:
    """``promoted`` for the new champion and ``archived`` for the one it replaced.

    :param mv: the new champion.
    :param old: the champion it replaced (None for the first).
    :param promoted_at: the promotion's timestamp (its ``promotion_timestamp`` tag).
    """
    tags = mv.tags
    approver = tags.get(lc.APPROVED_BY) or POLICY_ACTOR
    events = [
        make_event(
            EventType.PROMOTED,
            mv,
            context,
            stamp=promoted_at,
            reason=f"Approved by {approver}: {tags.get(lc.APPROVAL_REASON) or 'no reason recorded'}",
            from_alias=lc.CHALLENGER,
            to_alias=lc.CHAMPION,
            counterpart_version=str(old.version) if old is not None else None,
            details={
                "approved_by": approver,
                "auto_promoted": tags.get(lc.AUTO_PROMOTED),
                "validation_baseline_version": tags.get(lc.VALIDATION_BASELINE_VERSION),
                "approval_notes": tags.get(lc.APPROVAL_NOTES),
            },
        )
    ]
    if old is not None:
        events.append(
            make_event(
                EventType.ARCHIVED,
                old,
                context,
                stamp=promoted_at,
                reason=f"Replaced as {lc.CHAMPION} by v{mv.version}",
                from_alias=lc.CHAMPION,
                to_alias=lc.PREVIOUS_CHAMPION,
                counterpart_version=str(mv.version),
            )
        )
    return events



def retrain_triggered_event(
    model_name: str, version: str, context: AuditContext, *, reason: str, retrain_dag_id: str, retrain_run_id: str
) -> AuditEvent:
    """The monitor started a retrain of a degraded champion; one row per triggered run.

    :param version: the champion that degraded.
    :param retrain_run_id: the run it started (a retried trigger names the same run).
    """
    return AuditEvent(
        event=EventType.RETRAIN_TRIGGERED,
        model_name=model_name,
        version=str(version),
        actor=POLICY_ACTOR,
        occurred_at=datetime.now(timezone.utc),
        source=context.source,
        reason=reason,
        dag_id=context.dag_id,
        dag_run_id=context.dag_run_id,
        task_id=context.task_id,
        details={"retrain_dag_id": retrain_dag_id, "retrain_run_id": retrain_run_id},
        dedup_key=f"{EventType.RETRAIN_TRIGGERED.value}/{model_name}/{version}/{retrain_dag_id}/{retrain_run_id}",
    )


def notification_failed_event(event: AuditEvent, *, channel: str, channel_type: str, error: str) -> AuditEvent:
    """A channel could not deliver ``event``'s message; keyed by the event and the channel.

    An event without a dedup key yields a row per failure; keyed events one per channel, so a
    retried step whose notification fails again writes nothing new.
    """
    key = f"{EventType.NOTIFICATION_FAILED.value}/{channel}/{event.dedup_key}" if event.dedup_key else None
    return AuditEvent(
        event=EventType.NOTIFICATION_FAILED,
        model_name=event.model_name,
        version=event.version,
        actor=event.actor,
        occurred_at=datetime.now(timezone.utc),
        source=event.source,
        run_id=event.run_id,
        reason=f"{channel_type} channel {channel!r} failed to deliver {event.event.value}: {error}"[:4000],
        dag_id=event.dag_id,
        dag_run_id=event.dag_run_id,
        task_id=event.task_id,
        details={"channel": channel, "channel_type": channel_type, "error": error[:2000],
                 "notified_event": event.event.value, "notified_dedup_key": event.dedup_key},
        dedup_key=key[:512] if key else None,
    )
