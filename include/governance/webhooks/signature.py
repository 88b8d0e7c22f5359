"""Checking an MLflow webhook delivery's signature, timestamp and delivery id.

MLflow 3 (``mlflow.webhooks.delivery``) signs each request as Standard Webhooks do:
``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>``, with
``X-MLflow-Delivery-Id`` (a UUID, the same on MLflow's own retries) and ``X-MLflow-Timestamp``
(Unix seconds). A delivery is accepted only when the signature matches (compared in constant
time), the timestamp is at most five minutes old and not far in the future (a captured request
cannot be sent again later), and, checked by the caller against the deliveries table, its id is
new. Every refusal names what was wrong, never the secret or the expected signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
MAX_AGE_SECONDS = 300
# Clocks of two machines differ a little; a timestamp further ahead than this is not a clock.
MAX_FUTURE_SECONDS = 60
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class DeliveryRefused(Exception):
    """A delivery the endpoint does not accept; ``status`` is the HTTP answer, the message why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SignedDelivery:
    """A delivery whose signature and timestamp passed: its id and when MLflow sent it."""

    delivery_id: str
    sent_at: int


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this body (what tests and the bench send)."""
    digest = hmac.new(secret.encode("utf-8"), _signed_content(delivery_id, timestamp, body), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float) -> SignedDelivery:
    """Check one request; return its id and timestamp, or raise ``DeliveryRefused``.

    :param secret: the webhook's shared secret (empty: the endpoint is not configured).
    :param headers: the request headers (case-insensitive mapping, as the web framework gives).
    :param body: the raw request body, exactly as received.
    :param now: the current time, in seconds since the epoch.
    """
    if not secret:
        raise DeliveryRefused(503, "the webhook endpoint has no secret configured (MOVIE_RECOMMENDER_WEBHOOK_SECRET)")
    delivery_id = _header(headers, DELIVERY_ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    offered = _header(headers, SIGNATURE_HEADER, status=401)
    if not _DELIVERY_ID.match(delivery_id):
        raise DeliveryRefused(400, f"{DELIVERY_ID_HEADER} is not a delivery id (1-128 letters, digits, '-', '_', '.', ':')")
    if not _signature_matches(secret, delivery_id, timestamp, body, offered):
        raise DeliveryRefused(401, f"{SIGNATURE_HEADER} does not match the body signed with the webhook secret")
    # Judged after the signature: an unsigned request learns nothing about the accepted window.
    sent_at = _timestamp(timestamp, now)
    return SignedDelivery(delivery_id=delivery_id, sent_at=sent_at)


def _header(headers: Mapping[str, str], name: str, status: int = 400) -> str:
    value = (headers.get(name) or "").strip()
    if not value:
        raise DeliveryRefused(status, f"header {name} is missing")
    return value


def _signed_content(delivery_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{delivery_id}.{timestamp}.".encode("utf-8") + body


def _signature_matches(secret: str, delivery_id: str, timestamp: str, body: bytes, offered: str) -> bool:
    """Any of the offered ``v1,<sig>`` values (space-separated, as during a secret rotation) matches."""
    expected = sign(secret, delivery_id, timestamp, body).encode("ascii")
    matched = False
    for candidate in offered.split():
        # No early exit: every candidate is compared, each in constant time.
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected)
    return matched


def _timestamp(value: str, now: float) -> int:
    if not value.isdigit():
        raise DeliveryRefused(400, f"{TIMESTAMP_HEADER} {value[:40]!r} is not Unix seconds")
    sent_at = int(value)
    age = now - sent_at
    if age > MAX_AGE_SECONDS:
        raise DeliveryRefused(400, f"{TIMESTAMP_HEADER} is {age:.0f} s old (at most {MAX_AGE_SECONDS} s accepted): a stale or replayed delivery")
    if -age > MAX_FUTURE_SECONDS:
        raise DeliveryRefused(400, f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future (at most {MAX_FUTURE_SECONDS} s accepted)")
    return sent_at
