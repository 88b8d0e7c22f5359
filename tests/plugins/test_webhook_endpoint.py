"""The MLflow webhook endpoint: the plugin's FastAPI app over HTTP, on a real PostgreSQL audit database.

Requests are signed exactly as MLflow 3's sender signs them (``mlflow.webhooks.delivery``); a
forged signature, a stale or future timestamp, a replayed delivery id and a malformed body are
refused with the status and reason, and leave both tables as they were.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from include.governance.audit import AuditContext, registered_event
from include.governance.webhooks.signature import sign
from mlflow_governance.webhook_app import ENDPOINT, WebhookSettings, create_app, stores_for_location

pytestmark = pytest.mark.services
SECRET = "s3cret-shared-with-mlflow"
MODEL = "webhook_model"


@pytest.fixture(scope="module")
def audit_url():
    name = f"webhook_audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def stores(audit_url):
    opened = stores_for_location(audit_url)
    yield opened
    opened.audit.engine.dispose()


@pytest.fixture(scope="module")
def client(stores):
    # No grace period: the test client runs the background judgement before it returns.
    settings = WebhookSettings(secret=SECRET, grace_seconds=0)
    with TestClient(create_app(settings, open_stores=lambda: stores)) as http:
        yield http


def body_of(entity: str, action: str, data: dict) -> bytes:
    return json.dumps({"entity": entity, "action": action, "timestamp": "2026-01-01T00:00:00+00:00", "data": data}).encode()


def headers_for(body: bytes, *, delivery_id: str | None = None, timestamp: int | None = None, secret: str = SECRET) -> dict:
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": sign(secret, delivery_id, stamp, body),
    }


def tag_set(key="note", value="hello", version="1") -> bytes:
    return body_of("model_version_tag", "set", {"name": MODEL, "version": version, "key": key, "value": value})


def table_state(stores) -> tuple[int, int]:
    return stores.deliveries.count(), len(stores.audit.events())


def test_our_signature_is_the_one_mlflow_sends():
    body = tag_set()
    assert sign(SECRET, "d-1", "1700000000", body) == _generate_hmac_signature(SECRET, "d-1", "1700000000", body.decode())


def test_a_signed_delivery_is_recorded_and_wakes_its_version(client, stores):
    before = stores.deliveries.latest_id(MODEL, "7")
    body = tag_set(version="7")
    answer = client.post(ENDPOINT, content=body, headers=headers_for(body))
    assert answer.status_code == 200, answer.text
    assert answer.json()["change"] == f"{MODEL} v7 tag note='hello' set"
    assert stores.deliveries.latest_id(MODEL, "7") > before


@pytest.mark.parametrize(
    "tamper, status, reason",
    [
        (lambda h, b: {**h, "X-MLflow-Signature": sign("another-secret", h["X-MLflow-Delivery-Id"], h["X-MLflow-Timestamp"], b)},
         401, "does not match"),
        (lambda h, b: {**h, "X-MLflow-Delivery-Id": str(uuid.uuid4())}, 401, "does not match"),
        (lambda h, b: {k: v for k, v in h.items() if k != "X-MLflow-Signature"}, 401, "X-MLflow-Signature is missing"),
        (lambda h, b: headers_for(b, timestamp=int(time.time()) - 301), 400, "old (at most 300 s"),
        (lambda h, b: headers_for(b, timestamp=int(time.time()) + 3600), 400, "in the future"),
        (lambda h, b: {**h, "X-MLflow-Timestamp": "yesterday"}, 401, "does not match"),
    ],
    ids=["wrong-secret", "id-swapped", "unsigned", "stale", "future", "timestamp-edited"],
)
def test_a_forged_or_stale_delivery_is_refused_and_changes_nothing(client, stores, tamper, status, reason):
    body = tag_set()
    before = table_state(stores)
    answer = client.post(ENDPOINT, content=body, headers=tamper(headers_for(body), body))
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["refused"]
    assert table_state(stores) == before


def test_a_body_changed_after_signing_is_refused(client, stores):
    body = tag_set(value="approved")
    headers = headers_for(body)
    before = table_state(stores)
    answer = client.post(ENDPOINT, content=tag_set(value="rejected"), headers=headers)
    assert answer.status_code == 401 and table_state(stores) == before


def test_a_replayed_delivery_is_refused_and_changes_nothing(client, stores):
    body = tag_set(key="approval_status", value="approved", version="3")
    headers = headers_for(body)
    assert client.post(ENDPOINT, content=body, headers=headers).status_code == 200
    before = table_state(stores)
    replay = client.post(ENDPOINT, content=body, headers=headers)
    assert replay.status_code == 409
    assert headers["X-MLflow-Delivery-Id"] in replay.json()["refused"] and "replay" in replay.json()["refused"]
    assert table_state(stores) == before


def test_a_signed_body_that_is_no_webhook_payload_is_refused(client, stores):
    before = table_state(stores)
    for body, reason in [(b"not json", "not JSON"), (body_of("model_version_alias", "created", {"name": MODEL}), "lacks alias, version")]:
        answer = client.post(ENDPOINT, content=body, headers=headers_for(body))
        assert answer.status_code == 400 and reason in answer.json()["refused"]
    assert table_state(stores) == before


def test_without_a_secret_every_delivery_is_refused(stores):
    with TestClient(create_app(WebhookSettings(secret=""), open_stores=lambda: stores)) as http:
        body = tag_set()
        answer = http.post(ENDPOINT, content=body, headers=headers_for(body, secret=""))
    assert answer.status_code == 503 and "MOVIE_RECOMMENDER_WEBHOOK_SECRET" in answer.json()["refused"]


def test_a_hand_moved_alias_of_a_governed_model_is_audited_as_out_of_band(client, stores):
    mv = type("MV", (), {"name": MODEL, "version": "1", "run_id": "r1", "tags": {}, "source": "s", "creation_timestamp": 0})
    stores.audit.append(registered_event(mv, AuditContext(actor="carol", source="airflow")))
    body = body_of("model_version_alias", "created", {"name": MODEL, "alias": "champion", "version": "1"})
    headers = headers_for(body)
    assert client.post(ENDPOINT, content=body, headers=headers).status_code == 200
    [event] = [e for e in stores.audit.events(model_name=MODEL) if e.event.value == "out_of_band_change"]
    assert (event.version, event.actor, event.source) == ("1", "unknown", "mlflow_webhook")
    assert event.details["alias"] == "champion" and event.details["old"] is None and event.details["new"] == "1"
    assert event.details["delivery_id"] == headers["X-MLflow-Delivery-Id"]
    assert "@champion set to v1" in event.reason


def test_the_plugin_mounts_the_app_under_its_prefix():
    from movie_recommender_webhooks import MovieRecommenderWebhooksPlugin

    [app] = MovieRecommenderWebhooksPlugin.fastapi_apps
    assert app["url_prefix"] == "/movie-recommender/webhooks"
    assert any(getattr(route, "path", None) == ENDPOINT for route in app["app"].routes)


def test_a_step_s_changes_are_in_band_while_it_runs_before_its_audit_row(stores):
    """validate tags a version a dozen times before it audits ``validated`` (a minute apart on a
    loaded machine): the deliveries in between are the step's, announced, not out-of-band."""
    from include.governance.audit import AuditTrail
    from include.governance.steps.recording import announced

    model = "webhook_intents_model"
    mv = type("MV", (), {"name": model, "version": "1", "run_id": "r1", "tags": {}, "source": "s", "creation_timestamp": 0})
    stores.audit.append(registered_event(mv, AuditContext(actor="carol", source="airflow")))
    task = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1",
                        task_id="validate")
    # No lookback: the registered row just written would otherwise vouch for v1's tags.
    settings = WebhookSettings(secret=SECRET, grace_seconds=0, lookback_seconds=0)

    def deliver(http, key, value, version):
        body = body_of("model_version_tag", "set", {"name": model, "version": version, "key": key, "value": value})
        assert http.post(ENDPOINT, content=body, headers=headers_for(body)).status_code == 200

    def out_of_band():
        return [(e.version, e.details["tag"]) for e in stores.audit.events(model_name=model)
                if e.event.value == "out_of_band_change"]

    with TestClient(create_app(settings, open_stores=lambda: stores)) as http:
        with announced(AuditTrail(stores.audit, client=None), task, "validate", model, "2"):
            deliver(http, "validation_status", "passed", "2")
            # The announcement covers its own version only.
            deliver(http, "validation_status", "passed", "1")
        assert out_of_band() == [("1", "validation_status")]
        # After the step (which here wrote no audit row about v2) its announcement covers nothing.
        deliver(http, "validation_accuracy", "0.99", "2")
    assert out_of_band() == [("1", "validation_status"), ("2", "validation_accuracy")]
