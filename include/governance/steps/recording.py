"""Appending a step's events to the audit trail, when the caller has one, and notifying them.

Notifications go out here, from the one place every step records its events, so every channel
notifies the same way. Only events the trail has just added are notified: a retried step (or a
second channel that sees the same decision) re-records the same dedup key, adds no row and sends
nothing. Without an audit trail nothing is notified either: there is no record to tell a retry
from a first time, nor to keep a failed send in (every deployed channel has a trail).
"""

from __future__ import annotations

import logging
from typing import Any

from include.governance.audit import AuditEvent, AuditTrail
from include.governance.policy import GovernancePolicy

log = logging.getLogger(__name__)


def record(
    trail: AuditTrail | None, *events: AuditEvent | None, policy: GovernancePolicy | None = None
) -> list[AuditEvent]:
    """Append the events that exist (a builder may return None) to ``trail``, if any, and notify
    the new ones as ``policy``'s ``notifications`` section routes them.

    :param policy: the step's policy; None reads the packaged policy file's notifications.
    :return: the events that were new to the trail.
    """
    present = [event for event in events if event is not None]
    if trail is None or not present:
        return []
    added = trail.record(*present)
    new = [event for event, was_added in zip(present, added) if was_added]
    if new:
        _notify(policy, trail, new)
    return new


def _notify(policy: GovernancePolicy | None, trail: AuditTrail, events: list[AuditEvent]) -> None:
    from include.governance.notifications import notify

    try:
        policy = policy or GovernancePolicy.load()
        notify(policy.notifications, events, trail=trail, timeout_hours=policy.approval.timeout_hours)
    except Exception:  # noqa: BLE001 - a notification never fails the step that recorded the event
        log.exception("notifying %s failed", ", ".join(f"{e.event.value} {e.model_name} v{e.version}" for e in events))


def version_now(client: Any, model_name: str, version: str | int) -> Any:
    """The version as a step left it (its tags are what the events are built from)."""
    return client.get_model_version(model_name, str(version))
