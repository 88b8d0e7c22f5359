"""What each event's message says: a subject, lines of text and the links that go with it.

One builder per event type in ``_BUILDERS``; an event without one gets the generic message (what
happened, to which version, by whom, why). Builders read only the audit event, the version's tags
(who submitted it, its DAG run) and the configured base URLs: they never ask MLflow themselves.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from include.governance import lifecycle as lc
from include.governance.audit.events import AuditEvent, EventType, as_utc
from include.governance.notifications.links import LinkBases

CLI = "python -m include.governance"


@dataclass(frozen=True)
class Message:
    """A channel-neutral message; each channel renders it (plain text, HTML, Slack blocks, JSON)."""

    subject: str
    lines: tuple[str, ...]
    links: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        links = [f"{label}: {url}" for label, url in self.links.items()]
        return "\n".join([self.subject, "", *self.lines, *([""] + links if links else [])])


@dataclass(frozen=True)
class MessageInput:
    """What a builder may read.

    :param tags: the version's tags as the step left them ({} when unknown).
    :param timeout_hours: the policy's approval timeout (the deadline of a waiting version).
    """

    event: AuditEvent
    tags: Mapping[str, str]
    bases: LinkBases
    timeout_hours: float

    @property
    def run_ids(self) -> tuple[str | None, str | None]:
        """The Airflow run the version belongs to: the event's own, else the one that trained it."""
        if self.event.dag_id and self.event.dag_run_id:
            return self.event.dag_id, self.event.dag_run_id
        return self.tags.get(lc.AIRFLOW_DAG_ID), self.tags.get(lc.AIRFLOW_RUN_ID)

    def links(self, *, required_actions: bool = False) -> dict[str, str]:
        dag_id, run_id = self.run_ids
        found = {
            "Airflow run": self.bases.airflow_run(dag_id, run_id),
            "Required Actions": self.bases.required_actions(dag_id, run_id) if required_actions else None,
            "MLflow version": self.bases.mlflow_version(self.event.model_name, self.event.version),
        }
        return {label: url for label, url in found.items() if url}


def build_message(given: MessageInput) -> Message | None:
    """The event's message, or None when the event is not worth telling (see ``_awaiting``)."""
    builder = _BUILDERS.get(given.event.event, _generic)
    return builder(given)


def _name(event: AuditEvent) -> str:
    return f"{event.model_name} v{event.version}" if event.version else event.model_name


def _evidence(metrics: Mapping[str, float]) -> str:
    ordered = [m for m in lc.EVIDENCE_METRICS if m in metrics] + sorted(set(metrics) - set(lc.EVIDENCE_METRICS))
    return ", ".join(f"{m}={metrics[m]:.4f}" for m in ordered) or "none recorded"


def _awaiting(given: MessageInput) -> Message | None:
    event, tags = given.event, given.tags
    status = event.details.get("status")
    if status not in {s.value for s in lc.AWAITING_DECISION}:
        return None  # the policy decided at once: its approved/rejected event tells it
    deadline = as_utc(event.occurred_at) + timedelta(hours=given.timeout_hours)
    command = f"{CLI} approve {shlex.quote(event.model_name)} {event.version} --reviewer <you> --notes '<why>'"
    lines = [
        f"Model: {event.model_name}, version {event.version} ({status})",
        f"Why it waits: {event.reason or 'the policy asks for a person'}",
        f"Evidence: {_evidence(event.metrics)}",
        f"Compared with: v{event.details.get('baseline_version')}"
        if event.details.get("baseline_version") not in (None, "", lc.NO_BASELINE) else "Compared with: no champion yet",
        f"Submitted by: {tags.get(lc.SUBMITTED_BY) or event.actor}",
        f"Decide by: {deadline.isoformat(timespec='minutes')} (policy timeout {given.timeout_hours:g} h; "
        "a run's approval_timeout_minutes may be shorter)",
        f"Approve: {command}",
        f"Reject: {command.replace(' approve ', ' reject ', 1)}",
    ]
    if tags.get(lc.SUBMISSION_NOTES):
        lines.insert(5, f"Submission notes: {tags[lc.SUBMISSION_NOTES]}")
    subject = f"[model governance] {_name(event)} awaits a decision"
    return Message(subject, tuple(lines), given.links(required_actions=True))


def _decided(given: MessageInput) -> Message:
    event = given.event
    verb = event.event.value
    notes = event.details.get("notes")
    lines = [f"{_name(event)} was {verb} by {event.actor}.", f"Reason: {event.reason or 'none given'}"]
    if notes:
        lines.append(f"Notes: {notes}")
    lines.append(f"Evidence: {_evidence(event.metrics)}")
    return Message(f"[model governance] {_name(event)} {verb} by {event.actor}", tuple(lines), given.links())


def _expired(given: MessageInput) -> Message:
    event = given.event
    lines = [
        f"{_name(event)} got no decision before its deadline: it is tagged expired and nothing was promoted.",
        f"Reason: {event.reason or 'approval timeout'}",
        f"To resume: record a decision ({CLI} approve ...), then clear wait_for_approval in the Airflow run.",
    ]
    return Message(f"[model governance] {_name(event)} expired without a decision", tuple(lines), given.links())


def _promoted(given: MessageInput) -> Message:
    event = given.event
    replaced = f"v{event.counterpart_version}" if event.counterpart_version else "no previous champion"
    lines = [
        f"{_name(event)} is now @{lc.CHAMPION} (replacing {replaced}).",
        f"Approved by: {event.details.get('approved_by') or event.actor}",
        f"Evidence: {_evidence(event.metrics)}",
        f"Roll back: {CLI} rollback {shlex.quote(event.model_name)} --actor <you> --reason '<why>'",
    ]
    return Message(f"[model governance] {_name(event)} promoted to @{lc.CHAMPION}", tuple(lines), given.links())


def _rolled_back(given: MessageInput) -> Message:
    event = given.event
    lines = [
        f"@{lc.CHAMPION} of {event.model_name} was rolled back to v{event.version}"
        f"{f' from v{event.counterpart_version}' if event.counterpart_version else ''} by {event.actor}.",
        f"Reason: {event.reason or 'none given'}",
    ]
    return Message(f"[model governance] {event.model_name} rolled back to v{event.version}", tuple(lines), given.links())


def _retrain_triggered(given: MessageInput) -> Message:
    event = given.event
    retrain_dag, retrain_run = event.details.get("retrain_dag_id"), event.details.get("retrain_run_id")
    lines = [
        f"The champion monitor found {_name(event)} (@{lc.CHAMPION}) degraded and started a retrain.",
        f"Reason: {event.reason}",
        f"Retrain run: {retrain_dag} {retrain_run}",
    ]
    found = {
        "Monitor run": given.bases.airflow_run(event.dag_id, event.dag_run_id),
        "Retrain run": given.bases.airflow_run(retrain_dag, retrain_run),
        "MLflow version": given.bases.mlflow_version(event.model_name, event.version),
    }
    links = {label: url for label, url in found.items() if url}
    return Message(f"[model governance] {event.model_name}: retrain triggered by the monitor", tuple(lines), links)


def _out_of_band(given: MessageInput) -> Message:
    event = given.event
    changed = [f"  {key}: {value}" for key, value in sorted(event.details.items()) if value not in (None, "", {}, [])]
    lines = [
        f"{_name(event)} changed in the MLflow registry outside the project's governed steps.",
        f"What: {event.reason or 'see details'}",
        *(["Details:", *changed] if changed else []),
        f"Check and restore: {CLI} audit verify {shlex.quote(event.model_name)}",
    ]
    return Message(f"[model governance] out-of-band change to {_name(event)}", tuple(lines), given.links())


def _generic(given: MessageInput) -> Message:
    event = given.event
    lines = [f"{event.event.value}: {_name(event)} by {event.actor} ({event.source}).", f"Reason: {event.reason or 'none given'}"]
    return Message(f"[model governance] {_name(event)} {event.event.value}", tuple(lines), given.links())


_BUILDERS: dict[EventType, Callable[[MessageInput], Message | None]] = {
    EventType.APPROVAL_REQUESTED: _awaiting,
    EventType.APPROVED: _decided,
    EventType.REJECTED: _decided,
    EventType.EXPIRED: _expired,
    EventType.PROMOTED: _promoted,
    EventType.ROLLED_BACK: _rolled_back,
    EventType.RETRAIN_TRIGGERED: _retrain_triggered,
    EventType.OUT_OF_BAND_CHANGE: _out_of_band,
}
