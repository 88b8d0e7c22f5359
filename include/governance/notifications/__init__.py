"""Governance notifications: reviewers and operators are told of audit events, by policy.

The one entry point is ``notify(settings, events, trail=..., timeout_hours=...)``, called by
``include.governance.steps.recording.record`` with the events the audit trail has just added, so
every channel (operators, the approval sensor, HITL, the review DAG, the CLI) notifies the same
way and a retried step notifies nothing twice. Code outside the steps that records its own event
(the MLflow webhook endpoint's ``out_of_band_change``) calls ``recording.record(trail, event,
policy=policy)`` and gets the same.

Modules: ``config`` (the policy file's ``notifications:`` section), ``messages`` (what each
event's message says), ``links`` (the base URLs of the Airflow and MLflow UIs), ``channels``
(email, Slack, JSON webhook), ``delivery`` (routing, sending, auditing failures).

To make another event notifiable: give it an ``EventType`` in include/governance/audit/events.py
(every type except ``notification_failed`` may be routed); optionally add a builder to
``messages._BUILDERS`` (otherwise it gets the generic message); record it through
``recording.record``; name it under ``notifications.routes`` in the policy file.

Imported by policy.py (for ``config``): keep this module free of heavy imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from include.governance.notifications.config import NotificationPolicy, NotificationPolicyError, parse_notifications

if TYPE_CHECKING:
    from include.governance.audit.events import AuditEvent
    from include.governance.notifications.delivery import Delivery


def notify(
    settings: NotificationPolicy, events: Sequence["AuditEvent"], *, trail: Any | None, timeout_hours: float
) -> list["Delivery"]:
    """Send the newly recorded ``events`` to their routed channels; never raises for a channel.

    :param trail: the AuditTrail the events were added to (failures are recorded on it).
    :param timeout_hours: the policy's approval timeout, for a waiting version's deadline.
    :return: one Delivery per event and channel (its ``error`` set when that send failed).
    """
    if not any(settings.targets(event.event) for event in events):
        return []
    from include.governance.notifications.delivery import deliver

    return deliver(settings, events, trail=trail, timeout_hours=timeout_hours)


__all__ = ["NotificationPolicy", "NotificationPolicyError", "notify", "parse_notifications"]
