"""MLflow webhooks from a real ``mlflow server`` to the project's endpoint, served by uvicorn.

The package's MLflow server (PostgreSQL store, S3 artifacts) gets a webhook, as mlflow-init
creates it, pointing at the plugin's FastAPI app on a free port, whose deliveries and audit
events go to a real PostgreSQL audit database. A lifecycle run by the governance steps is
audited as usual and nothing of it is reported as out-of-band; a version registered and an
alias moved by hand are in the audit trail as ``out_of_band_change`` within seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType, registered_event
from include.governance.policy import GovernancePolicy
from include.governance.registry import register_version
from include.governance.webhooks.changes import SUBSCRIBED_EVENTS
from mlflow_governance.webhook_app import ENDPOINT, WebhookSettings, create_app, stores_for_location
from tests.include.governance.support import GOOD_METRICS, log_tiny_model
from tests.services.conftest import free_port, fresh_database

pytestmark = pytest.mark.services
SECRET = "services-webhook-secret"
GRACE_SECONDS = 8
# How long a change may take to reach the audit trail: the grace period plus MLflow's delivery.
AUDITED_WITHIN_SECONDS = GRACE_SECONDS + 30
STEP = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__w")


@pytest.fixture(scope="module")
def audit_url() -> Iterator[str]:
    with fresh_database("webhook_audit") as url:
        yield url


@pytest.fixture(scope="module")
def receiver(audit_url) -> Iterator[str]:
    """The endpoint on a free port (uvicorn in a thread of this process); yields its URL."""
    import uvicorn

    stores = stores_for_location(audit_url)
    app = create_app(WebhookSettings(secret=SECRET, grace_seconds=GRACE_SECONDS), open_stores=lambda: stores)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the webhook receiver did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}{ENDPOINT}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        stores.audit.engine.dispose()


@pytest.fixture(scope="module")
def client(mlflow_server, receiver, audit_url):
    """An MLflow client of the server, once the server delivers to the receiver."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    client.create_webhook(name=f"governance-{uuid.uuid4().hex[:6]}", url=receiver, events=list(SUBSCRIBED_EVENTS), secret=SECRET)
    wait_for_delivery(client, audit_url)
    return client


def wait_for_delivery(client, audit_url: str) -> None:
    """Tag a probe version until a delivery arrives: the server caches its webhook list."""
    name = f"webhook_probe_{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, source="s3://nowhere/model", run_id=None).version
    deliveries = stores_for_location(audit_url).deliveries
    deadline = time.monotonic() + 90
    while deliveries.latest_id(name, str(version)) == 0:
        assert time.monotonic() < deadline, "the MLflow server never delivered to the webhook"
        client.set_model_version_tag(name, str(version), "probe", str(time.time()))
        time.sleep(1)


def out_of_band(log: AuditLog, model: str) -> list:
    return [e for e in log.events(model_name=model) if e.event is EventType.OUT_OF_BAND_CHANGE]


def governed_champion(client, log: AuditLog, model: str) -> str:
    """v1 through the steps, as the retrain DAG runs them: registered, validated, approved, promoted."""
    from include.governance.steps import promote, request_approval, validate

    trail = AuditTrail(log, client)
    experiment = client.create_experiment(f"webhooks-{uuid.uuid4().hex[:6]}")
    run_id, model_uri = log_tiny_model(client, experiment, GOOD_METRICS)
    tags = {lc.SUBMITTED_BY: "carol", lc.AIRFLOW_DAG_ID: "movie_recommender_retrain", lc.AIRFLOW_RUN_ID: "manual__w"}
    mv, _ = register_version(client, model_name=model, model_uri=model_uri, run_id=run_id, tags=tags)
    trail.record(registered_event(mv, STEP))
    policy = GovernancePolicy.load().with_overrides({"max_inference_time_ms": 20000})
    validate(client, policy, trail, STEP, model, mv.version)
    request_approval(client, policy, trail, STEP, model, mv.version)
    promote(client, policy, trail, STEP, model, mv.version)
    return str(mv.version)


def test_hand_made_changes_are_audited_out_of_band_and_the_steps_own_are_not(client, audit_url):
    model = f"webhook_governed_{uuid.uuid4().hex[:6]}"
    log = AuditLog(audit_url)
    champion = governed_champion(client, log, model)
    assert client.get_model_version_by_alias(model, lc.CHAMPION).version == champion

    by_hand = client.create_model_version(model, source="s3://somewhere-else/model").version
    client.set_registered_model_alias(model, lc.CHAMPION, str(by_hand))
    deadline = time.monotonic() + AUDITED_WITHIN_SECONDS
    while len(out_of_band(log, model)) < 2:
        assert time.monotonic() < deadline, f"not audited in {AUDITED_WITHIN_SECONDS} s: {out_of_band(log, model)}"
        time.sleep(0.5)
    received = {(c.event, c.alias or c.key, c.version) for c in stores_for_location(audit_url).deliveries.changes(model)}
    # The steps' own changes reached the endpoint too: it judged them in-band.
    assert {("model_version.created", None, champion), ("model_version_alias.created", lc.CHAMPION, champion),
            ("model_version_tag.set", lc.VALIDATION_STATUS, champion), ("model_version_tag.set", lc.APPROVAL_STATUS, champion),
            ("model_version_tag.set", lc.PROMOTION_TIMESTAMP, champion)} <= received
    # Both hand-made changes came after every change of the steps and waited the same grace
    # period, so by now every delivery of the steps has been judged as well.
    time.sleep(2)
    found = {(e.details["change"], e.details.get("alias"), e.details["old"], e.details["new"]) for e in out_of_band(log, model)}
    assert found == {
        ("model_version.created", None, None, str(by_hand)),
        ("model_version_alias.created", lc.CHAMPION, champion, str(by_hand)),
    }
    moved = next(e for e in out_of_band(log, model) if e.details["alias"] == lc.CHAMPION)
    assert moved.version == str(by_hand) and moved.source == "mlflow_webhook"
    assert f"@champion set to v{by_hand}" in moved.reason and f"audited: '{champion}'" in moved.reason
