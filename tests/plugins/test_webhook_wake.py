"""The approval trigger woken by webhook deliveries, with MLflow polled only as a safety net.

Against a real MLflow store and a real audit database (the test's SQLite file, where the
endpoint would insert its rows); the trigger runs on a real event loop, as in the triggerer.
A delivery row wakes it long before its 10-minute MLflow poll; with no delivery (the endpoint
down when the reviewer tagged the version) the poll alone still sees the decision; a deliveries
table that cannot be read costs only the early wake.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from include.governance import lifecycle as lc
from include.governance.webhooks.changes import RegistryChange
from include.governance.webhooks.deliveries import Delivery, DeliveryLog
from mlflow_governance.audit import audit_log
from mlflow_governance.triggers import ModelVersionApprovalTrigger, approval_wait
from tests.include.governance.support import MODEL
from tests.plugins.test_approval_trigger import deferrable_sensor, pending_version  # noqa: F401 - fixture
from tests.plugins.test_operators import CONTEXT

SAFETY_NET = 600.0
# Far below the safety net, far above a wake (about a second) on a loaded machine.
WOKEN_WITHIN = 60.0
DECISION = {lc.APPROVED_BY: "alice", lc.APPROVAL_STATUS: lc.ApprovalStatus.APPROVED.value}


def trigger_for(version: str, *, poll_interval: float, wake: float | None = 0.2) -> ModelVersionApprovalTrigger:
    return ModelVersionApprovalTrigger(
        model_name=MODEL, version=version, deadline=time.time() + 3600, poll_interval=poll_interval, wake_check_interval=wake
    )


def run_until_event(trigger: ModelVersionApprovalTrigger, during, timeout: float) -> tuple[dict, float]:
    """Run the trigger; ``during()`` runs in a thread once it waits. Its event and seconds taken."""

    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    async def main():
        started = time.monotonic()
        task = asyncio.create_task(first())
        await asyncio.sleep(1.0)  # the trigger has read MLflow once and waits
        assert not task.done(), f"the trigger fired before the decision: {task.result()}"
        await asyncio.to_thread(during)
        payload = await asyncio.wait_for(task, timeout)
        return payload, time.monotonic() - started

    return asyncio.run(main())


def tag(mlflow_client, version: str) -> None:
    for key, value in DECISION.items():
        mlflow_client.set_model_version_tag(MODEL, version, key, value)


def deliver(version: str) -> None:
    """What the endpoint inserts for the reviewer's tag."""
    now = datetime.now(timezone.utc)
    change = RegistryChange(event="model_version_tag.set", model_name=MODEL, version=version, key=lc.APPROVAL_STATUS, value="approved")
    DeliveryLog(audit_log().engine).record(Delivery(delivery_id=f"d-{time.time_ns()}", received_at=now, sent_at=now, change=change, payload={}))


def test_a_delivery_wakes_the_trigger_long_before_its_mlflow_poll(pending_version, mlflow_client):
    trigger = trigger_for(pending_version, poll_interval=SAFETY_NET)
    payload, _ = run_until_event(trigger, lambda: (tag(mlflow_client, pending_version), deliver(pending_version)), WOKEN_WITHIN)
    assert payload["status"] == "decided" and payload["approval_status"] == "approved"


def test_a_delivery_about_another_version_does_not_wake_it(pending_version, mlflow_client):
    trigger = trigger_for(pending_version, poll_interval=SAFETY_NET)
    with pytest.raises(TimeoutError):
        run_until_event(trigger, lambda: (tag(mlflow_client, pending_version), deliver("999")), 5)


def test_with_no_delivery_the_safety_net_poll_still_sees_the_decision(pending_version, mlflow_client):
    # The endpoint was down when the reviewer tagged the version: no row ever comes.
    trigger = trigger_for(pending_version, poll_interval=3)
    payload, _ = run_until_event(trigger, lambda: tag(mlflow_client, pending_version), WOKEN_WITHIN)
    assert payload["status"] == "decided" and payload["approval_status"] == "approved"


def test_an_unreadable_deliveries_table_leaves_the_poll(pending_version, mlflow_client, monkeypatch, capfd):
    # A PostgreSQL audit connection nobody listens on: the table cannot be read at all.
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_DB", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "schema": "x", "login": "x"}))
    trigger = trigger_for(pending_version, poll_interval=3)
    payload, _ = run_until_event(trigger, lambda: tag(mlflow_client, pending_version), WOKEN_WITHIN)
    assert payload["status"] == "decided"
    # The triggerer's log (Airflow's structlog writes it to the process output).
    assert "webhook deliveries cannot be read" in "".join(capfd.readouterr())


def test_with_webhooks_on_the_sensor_defers_with_the_safety_net_and_the_wake(pending_version, monkeypatch):
    monkeypatch.setenv("MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS", "on")
    with pytest.raises(TaskDeferred) as deferred:
        deferrable_sensor(pending_version, approval_timeout_minutes=2).execute(CONTEXT)
    kwargs = deferred.value.trigger.serialize()[1]
    assert (kwargs["poll_interval"], kwargs["wake_check_interval"], kwargs["audit_conn_id"]) == (SAFETY_NET, 1.0, "audit_db")
    monkeypatch.setenv("MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS", "sometimes")
    with pytest.raises(AirflowFailException, match="MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS='sometimes': expected on or off"):
        deferrable_sensor(pending_version, approval_timeout_minutes=2).execute(CONTEXT)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, (20.0, None)),
        ({"MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS": "off"}, (20.0, None)),
        ({"MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS": "on"}, (600.0, 1.0)),
        ({"MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS": "on", "MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS": "30"}, (30.0, 1.0)),
    ],
)
def test_the_wait_follows_the_environment(environ, expected):
    assert approval_wait(20, environ) == expected


def test_a_bad_safety_net_is_refused_naming_it():
    with pytest.raises(ValueError, match="MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS='-1' must be positive"):
        approval_wait(20, {"MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS": "on", "MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS": "-1"})
