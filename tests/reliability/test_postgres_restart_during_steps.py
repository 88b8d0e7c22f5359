"""Fault: the MLflow server's PostgreSQL goes away while a governance step runs.

The backend store is a PostgreSQL cluster of this module's own (servers.PrivatePostgres), so
stopping it touches nothing else on the machine. The steps are the plugin's operators against
``mlflow server`` (artifacts proxied to S3).

Scenarios:
- register: PostgreSQL stopped just before ``create_model_version``, started again 3 s later.
  Expected: the server answers 500 meanwhile, the client retries, the step succeeds with one
  READY version.
- validate: ``pg_ctl restart -m fast`` as the step writes its first tag. Expected: the step
  succeeds through the client's retries with its verdict complete (tags, ``@challenger``).
- promote, interrupted after ``@champion`` moved: PostgreSQL stopped right after the alias
  write, the client does not retry, the task fails. PostgreSQL comes back and the task's retry
  runs. Expected: the retry completes the promotion (promotion tags, ``@previous_champion``,
  ``@challenger`` removed) instead of taking the moved alias for a finished promotion.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases
from mlflow_governance.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RequestApprovalOperator,
    ValidateModelVersionOperator,
)
from tests.include.governance.support import GOOD_METRICS, log_tiny_model
from tests.reliability.conftest import FIGURES, connect_airflow_to, running_stack
from tests.reliability.faults import AFTER, BEFORE, inject

pytestmark = pytest.mark.services

CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_retrain"), "run_id": "manual__pg_restart"}
OUTAGE_SECONDS = 3
BETTER = {**GOOD_METRICS, "accuracy": 0.85}


@pytest.fixture(scope="module")
def mlflow_stack(private_postgres, tmp_path_factory):
    """The stack with its backend store in the module's private PostgreSQL."""
    import psycopg

    with psycopg.connect(private_postgres.url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE mlflow_store")
    with running_stack(private_postgres.url("mlflow_store"), tmp_path_factory.mktemp("pg-stack")) as stack:
        yield stack


@pytest.fixture
def steps(mlflow_stack, monkeypatch, client_retries, request):
    """The operators, bound to this test's own model and experiment."""
    connect_airflow_to(mlflow_stack.url, monkeypatch)
    client = mlflow_stack.client()
    model = f"pg_{request.node.name.removeprefix('test_')[:40]}"
    experiment_id = client.create_experiment(model)

    def register(metrics=GOOD_METRICS) -> str:
        run_id, uri = log_tiny_model(client, experiment_id, metrics)
        return RegisterModelVersionOperator(
            task_id="register", model_name=model, run_id=run_id, model_uri=uri, data_fingerprint="sha256:pg",
            submitted_by="trainer",
        ).execute(CONTEXT)["version"]

    def validate(version: str) -> dict:
        return ValidateModelVersionOperator(task_id="validate", model_name=model, version=version).execute(CONTEXT)

    def approve(version: str) -> dict:
        return RequestApprovalOperator(task_id="approve", model_name=model, version=version).execute(CONTEXT)

    def promote(version: str) -> dict:
        return PromoteModelVersionOperator(task_id="promote", model_name=model, version=version).execute(CONTEXT)

    return SimpleNamespace(client=client, model=model, register=register, validate=validate, approve=approve, promote=promote)


def outage(postgres, seconds: float = OUTAGE_SECONDS):
    """Stop PostgreSQL now and start it again ``seconds`` later, in the background."""

    def fault(injection) -> None:
        postgres.down()
        stopped = time.monotonic()

        def come_back() -> None:
            time.sleep(seconds)
            postgres.up()
            FIGURES["private PostgreSQL outage (stop -> started again)"] = f"{time.monotonic() - stopped:.1f} s"

        injection.in_background("postgres back", come_back)

    return fault


def test_register_survives_postgres_down_through_client_retries(private_postgres, steps, monkeypatch):
    injection = inject(monkeypatch, "model-versions/create", outage(private_postgres), moment=BEFORE)
    version = steps.register()
    injection.join()
    assert injection.fired
    found = steps.client.search_model_versions(f"name = '{steps.model}'")
    assert [(str(mv.version), mv.status) for mv in found] == [(version, "READY")]


def test_validate_survives_a_fast_restart_through_client_retries(private_postgres, steps, monkeypatch):
    version = steps.register()

    def restart(injection) -> None:
        injection.in_background("pg_ctl restart", lambda: FIGURES.__setitem__("pg_ctl restart -m fast", f"{private_postgres.restart():.1f} s"))

    injection = inject(monkeypatch, "model-versions/set-tag", restart, moment=BEFORE)
    outcome = steps.validate(version)
    injection.join()
    assert injection.fired and outcome["passed"] is True, outcome
    tags = steps.client.get_model_version(steps.model, version).tags
    assert tags[lc.VALIDATION_STATUS] == "passed" and lc.VALIDATION_TIMESTAMP in tags
    assert get_aliases(steps.client, steps.model) == {lc.CHALLENGER: version}


def test_promote_interrupted_after_the_alias_moved_is_completed_by_the_retry(private_postgres, steps, monkeypatch, client_retries):
    v1 = steps.register()
    steps.validate(v1), steps.approve(v1), steps.promote(v1)
    v2 = steps.register(BETTER)
    assert steps.validate(v2)["passed"] and steps.approve(v2)["status"] == "approved"

    client_retries(0)
    # Promote writes @previous_champion, then @champion: the fault strikes after the second.
    injection = inject(monkeypatch, "registered-models/alias", outage(private_postgres), moment=AFTER, nth=2)
    with pytest.raises(Exception) as first_try:
        steps.promote(v2)
    injection.join()
    assert injection.fired
    print(f"promote's first try failed with {type(first_try.value).__name__}: {str(first_try.value)[:200]}")
    half = get_aliases(steps.client, steps.model)
    print(f"aliases after the interrupted try: {half}")
    assert half[lc.CHAMPION] == v2  # the fault struck after the move, as intended

    client_retries(6)
    retried = steps.promote(v2)
    assert retried["champion_version"] == v2 and retried["previous_champion_version"] == v1, retried
    assert get_aliases(steps.client, steps.model) == {lc.CHAMPION: v2, lc.PREVIOUS_CHAMPION: v1}
    tags = steps.client.get_model_version(steps.model, v2).tags
    assert lc.PROMOTION_TIMESTAMP in tags and tags[lc.PREVIOUS_CHAMPION_VERSION] == v1, tags
    assert lc.ARCHIVED_TIMESTAMP in steps.client.get_model_version(steps.model, v1).tags
