"""Sending one message on one channel, through Airflow's notifier providers, time-bound.

- ``email``: the SMTP provider's SmtpNotifier on the channel's connection (``smtp_default``), its
  hook's timeout capped at the channel's ``timeout_seconds`` and its reconnect retries off;
- ``slack``: the Slack provider's SlackWebhookNotifier on a ``slackwebhook`` connection (the
  incoming-webhook URL is its password, or host + token), with the channel's timeout;
- ``webhook``: a JSON POST (the event and its message) to the URL of an ``http``/``https``
  connection (``extra.url`` wins), with the channel's timeout; any non-2xx answer fails it.

Each sender raises on failure; delivery.py turns that into a log line and an audit event.
Notifiers are called with ``notify`` directly (not rendered as templates): a reviewer's notes are
text, never Jinja.
"""

from __future__ import annotations

import html
import json
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from include.governance.audit.events import AuditEvent
from include.governance.notifications.config import Channel
from include.governance.notifications.messages import Message


def send_email(channel: Channel, recipients: tuple[str, ...], message: Message, event: AuditEvent) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=list(recipients or channel.to),
        from_email=channel.from_email,
        subject=message.subject,
        html_content=_html(message),
        smtp_conn_id=channel.conn_id,
    )
    # The hook reads its timeout and retries from the connection (30 s, 5 reconnects by default).
    notifier.__dict__["hook"] = _bounded_smtp_hook(channel.conn_id, channel.timeout_seconds)
    if notifier.from_email is None:
        notifier.from_email = _connection_from_email(notifier.hook, channel)
    notifier.notify({})


def _bounded_smtp_hook(conn_id: str, timeout_seconds: float) -> Any:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class BoundedSmtpHook(SmtpHook):
        @property
        def timeout(self) -> int:
            return max(1, min(super().timeout, int(timeout_seconds)))

        @property
        def smtp_retry_limit(self) -> int:
            return 0

    return BoundedSmtpHook(smtp_conn_id=conn_id)


def _connection_from_email(hook: Any, channel: Channel) -> str:
    extra = hook.get_connection(channel.conn_id).extra_dejson
    sender = extra.get("from_email")
    if not sender:
        raise ValueError(f"email channel {channel.name!r}: no from_email on the channel or on connection {channel.conn_id!r}")
    return sender


def send_slack(channel: Channel, recipients: tuple[str, ...], message: Message, event: AuditEvent) -> None:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    links = " | ".join(f"<{url}|{label}>" for label, url in message.links.items())
    body = "\n".join(message.lines) + (f"\n{links}" if links else "")
    notifier = SlackWebhookNotifier(
        slack_webhook_conn_id=channel.conn_id,
        text=f"{message.subject}\n{body}",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
        ],
        timeout=max(1, int(channel.timeout_seconds)),
    )
    notifier.notify({})


def send_webhook(channel: Channel, recipients: tuple[str, ...], message: Message, event: AuditEvent) -> None:
    url = webhook_url(channel)
    payload = {
        "event": event.to_dict(),
        "subject": message.subject,
        "text": message.text(),
        "links": dict(message.links),
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "model-governance-notifications"},
        method="POST",
    )
    # urlopen raises HTTPError on a non-2xx answer and URLError/TimeoutError on no answer.
    with urllib.request.urlopen(request, timeout=channel.timeout_seconds) as response:
        response.read(1024)


def webhook_url(channel: Channel) -> str:
    """The URL of a webhook channel's connection: ``extra.url``, else scheme://host[:port]/path."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(channel.conn_id)
    url = conn.extra_dejson.get("url")
    if url:
        return url
    if conn.conn_type not in ("http", "https") or not conn.host:
        raise ValueError(
            f"webhook channel {channel.name!r}: connection {channel.conn_id!r} needs extra.url or an http(s) host"
        )
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.conn_type}://{conn.host}{port}/{(conn.schema or '').lstrip('/')}"


def _html(message: Message) -> str:
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in message.lines)
    links = "".join(f'<li><a href="{html.escape(url)}">{html.escape(label)}</a></li>' for label, url in message.links.items())
    return f"<h3>{html.escape(message.subject)}</h3>{lines}" + (f"<ul>{links}</ul>" if links else "")


SENDERS: Mapping[str, Callable[[Channel, tuple[str, ...], Message, AuditEvent], None]] = {
    "email": send_email,
    "slack": send_slack,
    "webhook": send_webhook,
}
