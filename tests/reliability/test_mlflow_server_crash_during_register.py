"""Fault: the ``mlflow server`` process group is killed (SIGKILL) while ``register`` runs, then
restarted on the same port and PostgreSQL database.

Scenarios (the register step is the plugin's ``RegisterModelVersionOperator``, run as Airflow
runs it; the server is the compose topology: PostgreSQL store, artifacts proxied to S3):

- crash after ``create_model_version`` committed, answer lost, server back within the client's
  retry budget: MLflow's client re-sends the POST (it retries every method). Expected: the step
  succeeds with exactly one version for the run (the registry has no idempotency key, so
  ``register_version`` removes the duplicate the re-sent POST made); no extra run.
- same crash, client gives up (no HTTP retries), the task fails; the server comes back and the
  task's retry runs. Expected: the retry finds the version the first try made (created=False),
  exactly one version for the run.
- crash between ``create_registered_model`` and ``create_model_version`` (the first call's
  answer arrives). Expected: the client's retries carry ``create_model_version`` over the
  restart; one version.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlflow_governance.operators import RegisterModelVersionOperator
from tests.include.governance.support import GOOD_METRICS, log_tiny_model
from tests.reliability.conftest import FIGURES
from tests.reliability.faults import BEFORE_NEXT, LOSE_RESPONSE, Injection, inject

pytestmark = pytest.mark.services

CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_retrain"), "run_id": "manual__crash"}
CREATE_VERSION = "model-versions/create"
CREATE_MODEL = "registered-models/create"


def register(model_name: str, run_id: str, model_uri: str) -> dict:
    return RegisterModelVersionOperator(
        task_id="register", model_name=model_name, run_id=run_id, model_uri=model_uri,
        data_fingerprint="sha256:crash", submitted_by="trainer",
    ).execute(CONTEXT)


@pytest.fixture
def logged(mlflow_stack, mlflow_default, request):
    """A run with a real (tiny) model in an experiment of this test's own; returns its ids."""
    client = mlflow_stack.client()
    experiment_id = client.create_experiment(f"crash-{request.node.name}")
    run_id, model_uri = log_tiny_model(client, experiment_id, GOOD_METRICS)
    return SimpleNamespace(client=client, experiment_id=experiment_id, run_id=run_id, model_uri=model_uri)


def kill_and_restart_in_background(stack, label: str):
    def crash(injection: Injection) -> None:
        stack.mlflow.kill()
        injection.in_background("restart mlflow server", lambda: FIGURES.__setitem__(label, f"{stack.mlflow.start():.1f} s"))

    return crash


def versions_of(client, model_name: str):
    return sorted(client.search_model_versions(f"name = '{model_name}'"), key=lambda mv: int(mv.version))


def assert_one_version_and_no_ghost_runs(logged, model_name: str, result: dict) -> None:
    found = versions_of(logged.client, model_name)
    assert [(mv.version, mv.run_id) for mv in found] == [(result["version"], logged.run_id)], found
    assert found[0].status == "READY"
    runs = logged.client.search_runs([logged.experiment_id])
    assert [run.info.run_id for run in runs] == [logged.run_id]


def test_answer_lost_and_post_resent_after_restart_leaves_one_version(mlflow_stack, logged, monkeypatch):
    model_name = "crash_resent_post"
    injection = inject(
        monkeypatch, CREATE_VERSION, kill_and_restart_in_background(mlflow_stack, "mlflow server restart (client retrying)"),
        moment=LOSE_RESPONSE,
    )
    result = register(model_name, logged.run_id, logged.model_uri)
    injection.join()
    assert injection.fired, "the crash was never injected"
    assert result["created"] is True
    assert_one_version_and_no_ghost_runs(logged, model_name, result)
    assert logged.client.get_model_version(model_name, result["version"]).tags["airflow_run_id"] == CONTEXT["run_id"]


def test_task_retry_after_restart_finds_the_version_the_first_try_made(mlflow_stack, logged, monkeypatch, client_retries):
    model_name = "crash_task_retry"
    client_retries(0)
    injection = inject(monkeypatch, CREATE_VERSION, lambda _: mlflow_stack.mlflow.kill(), moment=LOSE_RESPONSE)
    with pytest.raises(Exception) as first_try:
        register(model_name, logged.run_id, logged.model_uri)
    assert injection.fired, "the crash was never injected"
    print(f"first try failed with {type(first_try.value).__name__}: {str(first_try.value)[:200]}")
    FIGURES["mlflow server restart (task retry)"] = f"{mlflow_stack.mlflow.start():.1f} s"
    client_retries(6)

    retried = register(model_name, logged.run_id, logged.model_uri)
    assert retried["created"] is False
    assert_one_version_and_no_ghost_runs(logged, model_name, retried)


def test_crash_between_creating_the_model_and_its_version_leaves_one_version(mlflow_stack, logged, monkeypatch):
    model_name = "crash_between_calls"
    injection = inject(
        monkeypatch, CREATE_MODEL, kill_and_restart_in_background(mlflow_stack, "mlflow server restart (between calls)"),
        moment=BEFORE_NEXT,
    )
    result = register(model_name, logged.run_id, logged.model_uri)
    injection.join()
    assert injection.fired, "the crash was never injected"
    assert result["created"] is True
    assert_one_version_and_no_ghost_runs(logged, model_name, result)
