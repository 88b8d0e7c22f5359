"""Appending a step's events to the audit trail, when the caller has one."""

from __future__ import annotations

from typing import Any

from include.governance.audit import AuditEvent, AuditTrail


def record(trail: AuditTrail | None, *events: AuditEvent | None) -> None:
    """Append the events that exist (a builder may return None) to ``trail``, if any."""
    present = [event for event in events if event is not None]
    if trail is not None and present:
        trail.record(*present)


def version_now(client: Any, model_name: str, version: str | int) -> Any:
    """The version as a step left it (its tags are what the events are built from)."""
    return client.get_model_version(model_name, str(version))
