"""The policy file's ``notifications:`` section: channels, and which event goes to which of them.

```yaml
notifications:
  channels:
    reviewers:   {type: email, to: [ml-reviewers@example.com]}   # conn_id: smtp_default
    team_chat:   {type: slack, conn_id: slack_governance}
    ops_webhook: {type: webhook, conn_id: governance_webhook, timeout_seconds: 5}
  routes:
    approval_requested: [reviewers, team_chat]
    out_of_band_change: [{channel: reviewers, to: [security@example.com]}, ops_webhook]
```

Nothing is sent for an event that has no route. Every key, event name and channel type is
checked here; a bad one raises NotificationPolicyError naming it (policy.py turns it into a
PolicyError naming the file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from include.governance.audit.events import EventType

CHANNEL_TYPES = ("email", "slack", "webhook")
DEFAULT_CONN_IDS = {"email": "smtp_default", "slack": "slack_default", "webhook": "governance_webhook"}
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 120.0
# A failure to notify is audited, never notified: a broken channel must not loop on itself.
NOTIFIABLE_EVENTS = tuple(kind.value for kind in EventType if kind.value != "notification_failed")

_CHANNEL_KEYS = {
    "email": {"type", "conn_id", "to", "from_email", "timeout_seconds"},
    "slack": {"type", "conn_id", "timeout_seconds"},
    "webhook": {"type", "conn_id", "timeout_seconds"},
}
_ROUTE_KEYS = {"channel", "to"}


class NotificationPolicyError(ValueError):
    """The notifications section is invalid; the message names the key."""


@dataclass(frozen=True)
class Channel:
    """Where a message goes: an email list, a Slack incoming webhook, a JSON webhook.

    :param conn_id: the Airflow connection (SMTP server, Slack webhook, webhook URL).
    :param to: email recipients (a route may name others).
    :param timeout_seconds: the longest one send may take.
    """

    name: str
    type: str
    conn_id: str
    to: tuple[str, ...] = ()
    from_email: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Target:
    """One channel of a route, with the recipients this event goes to on it (email only)."""

    channel: str
    to: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotificationPolicy:
    """Channels by name, and per event the targets that are told of it."""

    channels: Mapping[str, Channel] = field(default_factory=dict)
    routes: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)

    def targets(self, event: str) -> tuple[Target, ...]:
        """The targets configured for an event (an EventType or its value); () when none."""
        return self.routes.get(getattr(event, "value", event), ())


def parse_notifications(raw: Any, where: str = "notifications") -> NotificationPolicy:
    """Build the section from the YAML mapping (None or empty: nothing is sent)."""
    if raw is None:
        return NotificationPolicy()
    _require_mapping(raw, where)
    _refuse_unknown(raw, {"channels", "routes"}, where)
    channels_raw = raw.get("channels") or {}
    _require_mapping(channels_raw, f"{where}.channels")
    channels = {str(name): _channel(str(name), spec, f"{where}.channels.{name}") for name, spec in channels_raw.items()}
    routes_raw = raw.get("routes") or {}
    _require_mapping(routes_raw, f"{where}.routes")
    routes = {}
    for event, targets in routes_raw.items():
        if event not in NOTIFIABLE_EVENTS:
            raise NotificationPolicyError(
                f"{where}.routes: unknown event {event!r}; known: {', '.join(NOTIFIABLE_EVENTS)}"
            )
        routes[event] = _targets(targets, channels, f"{where}.routes.{event}")
    return NotificationPolicy(channels=channels, routes=routes)


def _channel(name: str, spec: Any, where: str) -> Channel:
    _require_mapping(spec, where)
    kind = spec.get("type")
    if kind not in CHANNEL_TYPES:
        raise NotificationPolicyError(f"{where}.type: {kind!r} is not one of {', '.join(CHANNEL_TYPES)}")
    _refuse_unknown(spec, _CHANNEL_KEYS[kind], where)
    conn_id = spec.get("conn_id", DEFAULT_CONN_IDS[kind])
    if not isinstance(conn_id, str) or not conn_id.strip():
        raise NotificationPolicyError(f"{where}.conn_id: {conn_id!r} is not a connection id")
    from_email = spec.get("from_email")
    if from_email is not None and not isinstance(from_email, str):
        raise NotificationPolicyError(f"{where}.from_email: {from_email!r} is not an address")
    return Channel(
        name=name,
        type=kind,
        conn_id=conn_id,
        to=_addresses(spec.get("to"), f"{where}.to"),
        from_email=from_email,
        timeout_seconds=_timeout(spec.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS), f"{where}.timeout_seconds"),
    )


def _targets(raw: Any, channels: Mapping[str, Channel], where: str) -> tuple[Target, ...]:
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, list):
        raise NotificationPolicyError(f"{where}: expected a list of channel names, got {type(raw).__name__}")
    targets = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if isinstance(item, str):
            item = {"channel": item}
        _require_mapping(item, at)
        _refuse_unknown(item, _ROUTE_KEYS, at)
        name = item.get("channel")
        if name not in channels:
            raise NotificationPolicyError(f"{at}.channel: {name!r} is not a channel defined under channels")
        channel = channels[name]
        to = _addresses(item.get("to"), f"{at}.to")
        if to and channel.type != "email":
            raise NotificationPolicyError(f"{at}.to: recipients apply to email channels, {name!r} is {channel.type}")
        if channel.type == "email" and not (to or channel.to):
            raise NotificationPolicyError(f"{at}: email channel {name!r} has no recipients (set 'to' here or on the channel)")
        targets.append(Target(channel=name, to=to))
    return tuple(targets)


def _addresses(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(a, str) and "@" in a for a in raw):
        raise NotificationPolicyError(f"{where}: {raw!r} is not a list of email addresses")
    return tuple(raw)


def _timeout(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise NotificationPolicyError(f"{where}: {raw!r} is not a number of seconds")
    if not 0 < raw <= MAX_TIMEOUT_SECONDS:
        raise NotificationPolicyError(f"{where}: {raw!r} must be above 0 and at most {MAX_TIMEOUT_SECONDS:g}")
    return float(raw)


def _require_mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise NotificationPolicyError(f"{where}: expected a mapping, got {type(value).__name__}")


def _refuse_unknown(values: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = set(values) - known
    if unknown:
        raise NotificationPolicyError(f"{where}: unknown key(s) {sorted(unknown, key=str)}; known: {sorted(known)}")
