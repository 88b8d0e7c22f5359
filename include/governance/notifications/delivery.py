"""Delivering newly recorded audit events to the channels the policy routes them to.

Only events whose audit row was just added are delivered (the caller passes them), so a retried
step, or a second channel seeing the same decision, sends nothing twice. Delivery is at most once:
a failed send is logged and recorded as ``notification_failed`` (keyed per event and channel) and
is not retried; the step that recorded the event still succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from include.governance.audit.events import AuditEvent, EventType, notification_failed_event
from include.governance.notifications.channels import SENDERS
from include.governance.notifications.config import NotificationPolicy, Target
from include.governance.notifications.links import LinkBases, configured_bases
from include.governance.notifications.messages import MessageInput, build_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """The outcome of one event on one channel (``error`` is None when it was sent)."""

    event: AuditEvent
    channel: str
    error: str | None = None


def deliver(
    settings: NotificationPolicy,
    events: Sequence[AuditEvent],
    *,
    trail: Any | None,
    timeout_hours: float,
    bases: LinkBases | None = None,
) -> list[Delivery]:
    """Send each event's message to its routed channels; audit each failure on ``trail``.

    :param events: events the audit trail has just added (not ones it already had).
    :param trail: the AuditTrail the events went to; its MLflow client supplies the version's
        tags and the tracking URI for links; failures are recorded on it.
    :param timeout_hours: the policy's approval timeout (a waiting version's deadline).
    :param bases: the UIs' base URLs (configuration's when None).
    """
    routed = [event for event in events if settings.targets(event.event)]
    if not routed:
        return []
    client = getattr(trail, "client", None)
    if bases is None:
        bases = configured_bases(getattr(client, "tracking_uri", None))
    outcomes = []
    for event in routed:
        if _announced_before(trail, event):
            continue
        message = build_message(MessageInput(event, _version_tags(client, event), bases, timeout_hours))
        if message is None:
            continue
        for target in settings.targets(event.event):
            outcomes.append(_send(settings, target, message, event, trail))
    return outcomes


def _send(settings: NotificationPolicy, target: Target, message: Any, event: AuditEvent, trail: Any | None) -> Delivery:
    channel = settings.channels[target.channel]
    try:
        SENDERS[channel.type](channel, target.to, message, event)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the step: audited below
        error = f"{type(exc).__name__}: {exc}"
        log.warning("notification of %s %s v%s on %s channel %r failed: %s",
                    event.event.value, event.model_name, event.version, channel.type, channel.name, error)
        _record_failure(trail, notification_failed_event(event, channel=channel.name, channel_type=channel.type, error=error))
        return Delivery(event, channel.name, error)
    log.info("notified %s %s v%s on %s channel %r", event.event.value, event.model_name, event.version, channel.type, channel.name)
    return Delivery(event, channel.name)


def _announced_before(trail: Any | None, event: AuditEvent) -> bool:
    """A version already announced as waiting with the same status (a re-run of the approve step
    re-stamps ``approval_timestamp``, so its event is a new row, yet nothing new awaits anyone)."""
    if event.event is not EventType.APPROVAL_REQUESTED or trail is None:
        return False
    status = event.details.get("status")
    earlier = trail.log.events(model_name=event.model_name, version=event.version, kinds=[EventType.APPROVAL_REQUESTED])
    return sum(1 for e in earlier if e.run_id == event.run_id and e.details.get("status") == status) > 1


def _record_failure(trail: Any | None, failure: AuditEvent) -> None:
    if trail is None:
        return
    try:
        trail.record(failure)
    except Exception:  # noqa: BLE001 - the event itself is recorded; losing its failure row is logged
        log.exception("could not record %s for %s v%s", failure.event.value, failure.model_name, failure.version)


def _version_tags(client: Any | None, event: AuditEvent) -> Mapping[str, str]:
    """The version's tags for the message (submitter, run); {} when there is no version to read."""
    if client is None or not event.version:
        return {}
    try:
        return dict(client.get_model_version(event.model_name, event.version).tags)
    except Exception as exc:  # noqa: BLE001 - e.g. a deleted version: the message goes without its tags
        log.info("no tags for %s v%s in its message: %s", event.model_name, event.version, exc)
        return {}
