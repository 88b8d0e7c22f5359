"""Appending a step's events to the audit trail, when the caller has one, and notifying them.

Notifications go out here, from the one place every step records its events, so every channel
notifies the same way. Only events the trail has just added are notified: a retried step (or a
second channel that sees the same decision) re-records the same dedup key, adds no row and sends
nothing. Without an audit trail nothing is notified either: there is no record to tell a retry
from a first time, nor to keep a failed send in (every deployed channel has a trail).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from include.governance.audit import AuditContext, AuditEvent, AuditTrail
from include.governance.audit.intents import IntentLog
from include.governance.policy import GovernancePolicy

log = logging.getLogger(__name__)
_intent_logs: "weakref.WeakKeyDictionary[Any, IntentLog]" = weakref.WeakKeyDictionary()


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


@contextmanager
def announced(
    trail: AuditTrail | None, actor: AuditContext, step: str, model_name: str, version: str | int | None = None
) -> Iterator[None]:
    """Announce ``step`` in the audit database before it changes the registry, and its end after.

    The MLflow webhook endpoint reads the announcements to tell this step's changes from changes
    made by hand (``include.governance.audit.intents``). ``version`` None: the step may change any
    version of the model (alias moves). Best-effort, like notifications: a step never fails
    because it could not announce itself (the cost is a false out-of-band report, which
    ``audit verify`` would not repeat); the failure is logged.
    """
    if trail is None:
        yield
        return
    intents = _intent_logs.get(trail.log)
    if intents is None:
        intents = _intent_logs.setdefault(trail.log, IntentLog(trail.log.engine))
    where = f"{step} {model_name}" + (f" v{version}" if version is not None else "")
    fields = {"model_name": model_name, "version": version, "step": step, "actor": actor.actor,
              "source": actor.source, "dag_run_id": actor.dag_run_id, "task_id": actor.task_id}
    try:
        intent_id = intents.start(**fields)
    except Exception:  # noqa: BLE001 - see the docstring
        log.warning("could not announce %s in the audit database", where, exc_info=True)
        intent_id = None
    try:
        yield
    finally:
        if intent_id is not None:
            try:
                intents.finish(intent_id, **fields)
            except Exception:  # noqa: BLE001 - as above; the announcement stays open for OPEN_FOR
                log.warning("could not record the end of %s in the audit database", where, exc_info=True)
