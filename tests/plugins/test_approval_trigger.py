"""The approval sensor's deferrable mode: it hands the wait to a trigger and judges on resume.

Against a real MLflow store; the trigger runs on a real event loop, as in the triggerer, and a
reviewer tags the version from another thread while it waits.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import re
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases
from mlflow_governance.sensors import ModelVersionApprovalSensor
from mlflow_governance.triggers import ModelVersionApprovalTrigger
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model
from tests.plugins.test_operators import CONTEXT, approve, promote, register, validate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pending_version(mlflow_connection, mlflow_client) -> str:
    """A validated version that waits for a reviewer (manual approval)."""
    experiment_id = mlflow_client.create_experiment("defer", artifact_location=mlflow_connection["artifact_location"])
    version = register(*log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS))["version"]
    validate(version)
    approve(version, mode="manual")
    return version


def deferrable_sensor(version: str, **kwargs) -> ModelVersionApprovalSensor:
    return ModelVersionApprovalSensor(
        task_id="wait_for_approval", model_name=MODEL, version=version, deferrable=True, poke_interval=0.1, **kwargs
    )


def first_event(trigger: ModelVersionApprovalTrigger, timeout: float = 30):
    """Run the trigger on an event loop until it fires; its one event's payload."""

    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout))


def decide_later(mlflow_client, version: str, tags: dict[str, str], delay: float = 0.5) -> threading.Thread:
    """A reviewer tagging the version while the trigger waits."""

    def decide():
        time.sleep(delay)
        for key, value in tags.items():
            mlflow_client.set_model_version_tag(MODEL, version, key, value)

    thread = threading.Thread(target=decide)
    thread.start()
    return thread


def test_a_waiting_version_defers_to_the_trigger(pending_version):
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        deferrable_sensor(pending_version, approval_timeout_minutes=2).execute(CONTEXT)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    # The triggerer rebuilds the trigger from its classpath and kwargs.
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert isinstance(rebuilt, ModelVersionApprovalTrigger)
    assert (rebuilt.model_name, rebuilt.version, rebuilt.poll_interval) == (MODEL, pending_version, 0.1)
    assert before + 120 <= rebuilt.deadline <= time.time() + 120


def test_a_decided_version_never_defers(pending_version, mlflow_client):
    mlflow_client.set_model_version_tag(MODEL, pending_version, lc.APPROVAL_STATUS, "approved")
    mlflow_client.set_model_version_tag(MODEL, pending_version, lc.APPROVED_BY, "alice")
    assert deferrable_sensor(pending_version).execute(CONTEXT) == {"status": "approved", "approved_by": "alice"}


def test_the_trigger_fires_on_the_reviewers_approval_and_the_run_promotes(pending_version, mlflow_client):
    trigger = ModelVersionApprovalTrigger(model_name=MODEL, version=pending_version, deadline=time.time() + 60, poll_interval=0.1)
    reviewer = decide_later(mlflow_client, pending_version, {lc.APPROVED_BY: "alice", lc.APPROVAL_STATUS: "approved"})
    event = first_event(trigger)
    reviewer.join()
    assert event["status"] == "decided" and event["approval_status"] == "approved"
    assert deferrable_sensor(pending_version).execute_complete(CONTEXT, event) == {"status": "approved", "approved_by": "alice"}
    promote(pending_version)
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == pending_version


def test_a_rejection_seen_by_the_trigger_fails_the_task_with_the_reviewer(pending_version, mlflow_client):
    trigger = ModelVersionApprovalTrigger(model_name=MODEL, version=pending_version, deadline=time.time() + 60, poll_interval=0.1)
    decide_later(
        mlflow_client, pending_version,
        {lc.APPROVED_BY: "bob", lc.APPROVAL_NOTES: "worse on new users", lc.APPROVAL_STATUS: "rejected"},
    ).join()
    event = first_event(trigger)
    with pytest.raises(AirflowFailException, match="rejected by bob.*worse on new users"):
        deferrable_sensor(pending_version).execute_complete(CONTEXT, event)


def test_no_decision_by_the_deadline_expires_the_version(pending_version, mlflow_client):
    trigger = ModelVersionApprovalTrigger(model_name=MODEL, version=pending_version, deadline=time.time() + 0.5, poll_interval=0.1)
    event = first_event(trigger)
    assert event["status"] == "timeout"
    with pytest.raises(AirflowSensorTimeout):
        deferrable_sensor(pending_version, approval_timeout_minutes=0.01).execute_complete(CONTEXT, event)
    assert mlflow_client.get_model_version(MODEL, pending_version).tags[lc.APPROVAL_STATUS] == "expired"
    assert lc.CHAMPION not in get_aliases(mlflow_client, MODEL)


def test_a_decision_just_before_the_deadline_wins_over_expiry(pending_version, mlflow_client):
    event = first_event(
        ModelVersionApprovalTrigger(model_name=MODEL, version=pending_version, deadline=time.time() + 0.2, poll_interval=0.1)
    )
    assert event["status"] == "timeout"
    # The reviewer answered between the trigger's last read and the task's resumption.
    mlflow_client.set_model_version_tag(MODEL, pending_version, lc.APPROVED_BY, "alice")
    mlflow_client.set_model_version_tag(MODEL, pending_version, lc.APPROVAL_STATUS, "approved")
    assert deferrable_sensor(pending_version).execute_complete(CONTEXT, event)["approved_by"] == "alice"


def test_an_unreadable_version_resumes_the_task_with_a_clear_error(pending_version):
    trigger = ModelVersionApprovalTrigger(model_name=MODEL, version="99", deadline=time.time() + 60, poll_interval=0.1)
    event = first_event(trigger)
    assert event["status"] == "error" and "v99" in event["message"]
    with pytest.raises(Exception, match="v99 does not exist"):
        deferrable_sensor("99").execute_complete(CONTEXT, event)


def test_the_retrain_dag_picks_the_mode_from_the_environment():
    code = (
        "import runpy\n"
        "dag = runpy.run_path('dags/movie_recommender_retrain.py')['movie_recommender_retrain']()\n"
        "print(dag.get_task('wait_for_approval').deferrable)\n"
    )

    def parse(mode: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins")])
        if mode is not None:
            env["MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE"] = mode
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)

    assert parse(None).stdout.split()[-1] == "False"
    assert parse("Deferrable").stdout.split()[-1] == "True"
    refused = parse("sometimes")
    assert refused.returncode != 0 and "MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE='sometimes'" in refused.stderr


def test_an_error_event_fails_the_task_with_the_triggers_message(pending_version, mlflow_client):
    """The trigger could not read the version (here: it is not there): the sensor says so, it does not wait on."""
    trigger = ModelVersionApprovalTrigger(model_name=MODEL, version="42", deadline=time.time() + 60, poll_interval=0.1)
    event = first_event(trigger)
    assert event["status"] == "error" and event["message"] == f"model version {MODEL} v42 does not exist"
    with pytest.raises(AirflowFailException, match=re.escape(event["message"])):
        deferrable_sensor(pending_version).execute_complete(CONTEXT, event)
    # Nothing was judged or expired on the waiting version.
    assert mlflow_client.get_model_version(MODEL, pending_version).tags[lc.APPROVAL_STATUS] == "pending"


@pytest.mark.parametrize(("configured", "given", "expected"), [
    ("true", None, True), ("false", None, False), ("true", False, False), ("false", True, True),
])
def test_the_deferrable_default_follows_airflows_default_deferrable(monkeypatch, configured, given, expected):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", configured)
    kwargs = {} if given is None else {"deferrable": given}
    sensor = ModelVersionApprovalSensor(task_id="wait_for_approval", model_name=MODEL, version="1", **kwargs)
    assert sensor.deferrable is expected
