"""The endpoint MLflow's registry webhooks call: a FastAPI app the api-server serves (a plugin).

``POST <url_prefix>/mlflow`` (the plugin mounts it at ``/movie-recommender/webhooks``). Airflow
does not authenticate plugin apps, so the signature is the only gate: a request is accepted only
when its HMAC signature matches the shared secret, its timestamp is at most five minutes old
(and not far ahead) and its delivery id is new (``include.governance.webhooks.signature``).
Refusals change nothing and answer 400 (malformed, stale), 401 (signature) or 409 (replay) with
the reason; MLflow does not retry those. An audit database that cannot be reached answers 503,
which MLflow retries.

Answering fast: the request only inserts the delivery into the deliveries table (one row, unique
id: the replay guard every api-server worker shares), then answers 200. Inserting it is also
what wakes a waiting approval: the trigger sees the row within a second. Judging whether a step
made the change (``include.governance.webhooks.out_of_band``) waits for the step's audit row, so
it runs after the answer, in the background, for at most the grace period; an out-of-band change
is appended to the audit trail through the steps' recording path (so it is notified like any
event). A judgement lost to an api-server restart is still caught by ``audit verify`` (the
monitor DAG's verify_audit_trail task), since delivery itself is best-effort.

Settings (environment of the api-server): ``MOVIE_RECOMMENDER_WEBHOOK_SECRET`` (the secret
mlflow-init gave the webhook; unset: every delivery is refused with 503),
``MOVIE_RECOMMENDER_WEBHOOK_GRACE_SECONDS`` (15), ``MOVIE_RECOMMENDER_WEBHOOK_REGISTRATION_GRACE_SECONDS``
(300: how long a version created by a DAG run may take to get its ``registered`` row).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

log = logging.getLogger(__name__)

URL_PREFIX = "/movie-recommender/webhooks"
ENDPOINT = "/mlflow"
SECRET_ENV = "MOVIE_RECOMMENDER_WEBHOOK_SECRET"
GRACE_ENV = "MOVIE_RECOMMENDER_WEBHOOK_GRACE_SECONDS"
REGISTRATION_GRACE_ENV = "MOVIE_RECOMMENDER_WEBHOOK_REGISTRATION_GRACE_SECONDS"
LOOKBACK_SECONDS = 60.0
RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class WebhookSettings:
    """The endpoint's secret and how long it waits for a step's audit row."""

    secret: str
    grace_seconds: float = 15.0
    registration_grace_seconds: float = 300.0
    lookback_seconds: float = LOOKBACK_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "WebhookSettings":
        environ = os.environ if environ is None else environ
        return cls(
            secret=environ.get(SECRET_ENV, ""),
            grace_seconds=_seconds(environ, GRACE_ENV, 15.0),
            registration_grace_seconds=_seconds(environ, REGISTRATION_GRACE_ENV, 300.0),
        )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must not be negative")
    return value


@dataclass
class WebhookStores:
    """The audit table, the deliveries table and the steps' announcements, in the same audit database."""

    audit: Any
    deliveries: Any
    intents: Any


def stores_for_location(url: str) -> WebhookStores:
    """Both tables in the database at ``url`` (a SQLAlchemy URL)."""
    from include.governance.audit import AuditLog
    from include.governance.audit.intents import IntentLog
    from include.governance.webhooks.deliveries import DeliveryLog

    audit = AuditLog(url)
    return WebhookStores(audit=audit, deliveries=DeliveryLog(audit.engine), intents=IntentLog(audit.engine))


def stores_from_airflow() -> WebhookStores:
    """The audit database as the reviewer CLI finds it outside a task (connection ``audit_db``, ...)."""
    from include.governance.audit.location import find_airflow_connection, resolve_audit_location

    location = resolve_audit_location(connection=find_airflow_connection())
    log.info("webhooks: deliveries and audit events in %s", location.describe())
    return stores_for_location(location.url)


def create_app(
    settings: WebhookSettings | None = None,
    open_stores: Callable[[], WebhookStores] = stores_from_airflow,
) -> FastAPI:
    """The FastAPI app; ``settings`` default to the environment, the stores open on first use."""
    settings = settings or WebhookSettings.from_environment()
    app = FastAPI(title="MLflow registry webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    opened: list[WebhookStores] = []

    def stores() -> WebhookStores:
        if not opened:
            opened.append(open_stores())
        return opened[0]

    @app.post(ENDPOINT)
    async def receive(request: Request) -> JSONResponse:
        return await _receive(request, settings, stores)

    return app


async def _receive(request: Request, settings: WebhookSettings, stores: Callable[[], WebhookStores]) -> JSONResponse:
    from include.governance.webhooks.changes import InvalidPayload, parse_body
    from include.governance.webhooks.deliveries import Delivery
    from include.governance.webhooks.signature import DeliveryRefused, verify

    body = await request.body()
    try:
        signed = verify(settings.secret, request.headers, body, now=time.time())
        change, document = parse_body(body)
    except DeliveryRefused as refused:
        log.warning("webhooks: refused a delivery (%s): %s", refused.status, refused.reason)
        return JSONResponse({"refused": refused.reason}, status_code=refused.status)
    except InvalidPayload as exc:
        log.warning("webhooks: refused a delivery (400): %s", exc)
        return JSONResponse({"refused": str(exc)}, status_code=400)
    delivery = Delivery(
        delivery_id=signed.delivery_id,
        received_at=datetime.now(timezone.utc),
        sent_at=datetime.fromtimestamp(signed.sent_at, tz=timezone.utc),
        change=change,
        payload=document,
    )
    try:
        opened = await run_in_threadpool(stores)
        row = await run_in_threadpool(opened.deliveries.record, delivery)
    except Exception as exc:  # noqa: BLE001 - any store failure is a 503 MLflow retries, logged here
        log.exception("webhooks: cannot record delivery %s", delivery.delivery_id)
        return JSONResponse({"error": f"cannot record the delivery: {type(exc).__name__}"}, status_code=503)
    if row is None:
        reason = f"delivery {delivery.delivery_id} was already received: a replay"
        log.warning("webhooks: refused a delivery (409): %s", reason)
        return JSONResponse({"refused": reason}, status_code=409)
    log.info("webhooks: delivery %s #%s: %s", delivery.delivery_id, row, change.describe())
    judging = BackgroundTask(settle, opened, delivery, settings)
    return JSONResponse({"accepted": delivery.delivery_id, "change": change.describe()}, background=judging)


async def settle(stores: WebhookStores, delivery: Any, settings: WebhookSettings) -> None:
    """Judge the change until it is found in-band or the grace period ends; audit it if out-of-band."""
    from include.governance import lifecycle as lc
    from include.governance.webhooks import changes as ch
    from include.governance.webhooks.out_of_band import judge, watched

    change = delivery.change
    if not watched(change):
        return
    by_a_run = change.event == ch.VERSION_CREATED and lc.AIRFLOW_RUN_ID in change.tags
    deadline = time.monotonic() + (settings.registration_grace_seconds if by_a_run else settings.grace_seconds)
    try:
        while True:
            events = await run_in_threadpool(stores.audit.events, model_name=change.model_name)
            intents = await run_in_threadpool(_announced_steps, stores, change.model_name, delivery.received_at)
            verdict = judge(delivery, events, lookback=settings.lookback_seconds, intents=intents)
            if verdict.in_band or time.monotonic() >= deadline:
                break
            await asyncio.sleep(RECHECK_SECONDS)
        if verdict.in_band:
            log.info("webhooks: %s is in-band: %s", change.describe(), verdict.why)
            return
        await run_in_threadpool(_record_out_of_band, stores, delivery, verdict)
    except Exception:  # noqa: BLE001 - after the answer nobody can be told; audit verify still finds it
        log.exception("webhooks: could not judge delivery %s (%s)", delivery.delivery_id, change.describe())


def _announced_steps(stores: WebhookStores, model_name: str, received_at: datetime) -> list:
    """The steps announced on the model that may cover the change; none (logged) when unreadable."""
    try:
        return stores.intents.about(model_name, since=received_at)
    except Exception:  # noqa: BLE001 - the audit trail alone still judges (a slow step may then look out-of-band)
        log.warning("webhooks: the steps' announcements cannot be read", exc_info=True)
        return []


def _record_out_of_band(stores: WebhookStores, delivery: Any, verdict: Any) -> None:
    from include.governance.audit import AuditTrail
    from include.governance.steps.recording import record
    from include.governance.webhooks.out_of_band import out_of_band_event

    event = out_of_band_event(delivery, verdict)
    # No MLflow client here: the row goes to the table (and to notifications), not to a run artifact.
    record(AuditTrail(stores.audit, client=None), event)
    log.warning("webhooks: out-of-band change audited: %s", event.reason)
