"""Real receivers for the notification tests: an SMTP server (aiosmtpd) and an HTTP receiver,
each on a loopback port of its own, plus the Airflow connections that point the channels at them."""

from __future__ import annotations

import email
import json
import socket
import threading
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from include.governance.notifications import parse_notifications
from include.governance.policy import ApprovalPolicy, GovernancePolicy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def bodies(self) -> list[str]:
        return [_html_part(m) for m in self.messages]


def _html_part(message: EmailMessage) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            return part.get_payload(decode=True).decode()
    raise AssertionError(f"no HTML part in {message['Subject']!r}")


@dataclass
class HttpReceiver:
    """A local HTTP server recording each POST's path and JSON body; answers ``status``."""

    status: int = 200
    posts: list[tuple[str, dict]] = field(default_factory=list)

    def start(self) -> "HttpReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"broken")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


AIRFLOW_BASE = "http://airflow.test:8080"
MLFLOW_BASE = "http://mlflow.test:5000"

CHANNELS = {
    "reviewers": {"type": "email", "to": ["reviewers@example.com"], "from_email": "governance@example.com",
                  "timeout_seconds": 5},
    "chat": {"type": "slack", "conn_id": "slack_test", "timeout_seconds": 5},
    "hook": {"type": "webhook", "conn_id": "webhook_test", "timeout_seconds": 5},
}


def policy_routing(routes: dict, *, mode: str = "auto") -> GovernancePolicy:
    """A policy whose notifications section has the test channels and ``routes``."""
    return GovernancePolicy(
        approval=ApprovalPolicy(mode=mode),
        notifications=parse_notifications({"channels": CHANNELS, "routes": routes}),
    )
