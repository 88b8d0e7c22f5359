"""Operators and the sensor against a real MLflow store, called as Airflow calls execute()."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases
from mlflow_governance.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RequestApprovalOperator,
    ValidateModelVersionOperator,
)
from mlflow_governance.sensors import ModelVersionApprovalSensor
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_retrain"), "run_id": "manual__2025-01-01"}


@pytest.fixture
def logged_run(mlflow_connection, mlflow_client):
    experiment_id = mlflow_client.create_experiment("ops", artifact_location=mlflow_connection["artifact_location"])

    def log(metrics=None):
        return log_tiny_model(mlflow_client, experiment_id, metrics or GOOD_METRICS)

    return log


def register(run_id, model_uri, submitted_by="trainer"):
    op = RegisterModelVersionOperator(
        task_id="register", model_name=MODEL, run_id=run_id, model_uri=model_uri,
        data_fingerprint="sha256:abc", submitted_by=submitted_by,
    )
    return op.execute(CONTEXT)


def test_register_retried_twice_makes_one_version_with_lineage(logged_run, mlflow_client):
    run_id, model_uri = logged_run()
    results = [register(run_id, model_uri) for _ in range(3)]
    assert [r["created"] for r in results] == [True, False, False]
    assert {r["version"] for r in results} == {"1"}
    assert len(mlflow_client.search_model_versions(f"name = '{MODEL}'")) == 1
    tags = mlflow_client.get_model_version(MODEL, "1").tags
    assert tags[lc.SUBMITTED_BY] == "trainer"
    assert tags[lc.AIRFLOW_DAG_ID] == "movie_recommender_retrain"
    assert tags[lc.AIRFLOW_RUN_ID] == "manual__2025-01-01"
    assert tags[lc.DATA_FINGERPRINT] == "sha256:abc"


def validate(version, **overrides):
    return ValidateModelVersionOperator(task_id="validate", model_name=MODEL, version=version, policy_overrides=overrides).execute(CONTEXT)


def approve(version, mode="auto"):
    return RequestApprovalOperator(task_id="approve", model_name=MODEL, version=version, approval_mode=mode).execute(CONTEXT)


def promote(version):
    return PromoteModelVersionOperator(task_id="promote", model_name=MODEL, version=version).execute(CONTEXT)


def sensor(version, **kwargs):
    return ModelVersionApprovalSensor(task_id="wait_for_approval", model_name=MODEL, version=version, **kwargs)


def test_the_lifecycle_through_the_operators(logged_run, mlflow_client):
    version = register(*logged_run())["version"]
    assert validate(version)["passed"] is True
    assert approve(version)["status"] == "approved"
    assert sensor(version).poke(CONTEXT).xcom_value == {"status": "approved", "approved_by": None}
    result = promote(version)
    assert result == {"model_name": MODEL, "champion_version": version, "previous_champion_version": None, "changed": True}
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == version


def test_threshold_override_is_applied_and_recorded(logged_run, mlflow_client):
    version = register(*logged_run())["version"]
    outcome = validate(version, min_accuracy=0.9, min_recall=None)
    assert outcome["passed"] is False and "accuracy" in outcome["summary"]
    assert mlflow_client.get_model_version(MODEL, version).tags["validation_policy_overrides"] == '{"min_accuracy": 0.9}'


def test_invalid_override_fails_the_task_for_good(logged_run):
    version = register(*logged_run())["version"]
    with pytest.raises(AirflowFailException, match="unknown policy override"):
        validate(version, min_acuracy=0.9)


def test_rejection_fails_approve_without_retry_and_champion_stays(logged_run, mlflow_client):
    v1 = register(*logged_run())["version"]
    validate(v1), approve(v1), promote(v1)
    v2 = register(*logged_run({**GOOD_METRICS, "accuracy": 0.70}))["version"]
    validate(v2)
    with pytest.raises(AirflowFailException, match=f"v{v2} rejected: Model failed validation checks: accuracy"):
        approve(v2)
    with pytest.raises(AirflowFailException, match="Promotion refused"):
        promote(v2)
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v1


def test_promote_of_an_unapproved_version_is_refused(logged_run, mlflow_client):
    version = register(*logged_run())["version"]
    validate(version)
    approve(version, mode="manual")
    with pytest.raises(AirflowFailException, match="is not approved"):
        promote(version)
    assert lc.CHAMPION not in get_aliases(mlflow_client, MODEL)


@pytest.mark.parametrize(
    ("tags", "outcome"),
    [
        ({"approval_status": "pending"}, False),
        ({"approval_status": "needs_review"}, False),
        ({"approval_status": "expired"}, False),
        ({"approval_status": "approved", "approved_by": "alice"}, True),
        ({"approval_status": "rejected", "approved_by": "bob", "approval_notes": "worse on new users"}, "rejected by bob"),
        ({"approval_status": "approved", "approved_by": "trainer"}, "separation of duties"),
        ({"approval_status": "APPROVED ", "approved_by": "alice"}, True),
        ({"approval_status": "yes"}, "unknown approval_status 'yes'"),
    ],
)
def test_sensor_reads_the_decision_on_the_version(logged_run, mlflow_client, tags, outcome):
    version = register(*logged_run())["version"]
    validate(version)
    approve(version, mode="manual")
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(MODEL, version, key, value)
    waiting = sensor(version)
    if isinstance(outcome, str):
        with pytest.raises(AirflowFailException, match=outcome):
            waiting.poke(CONTEXT)
    elif outcome:
        assert waiting.poke(CONTEXT).is_done
    else:
        assert waiting.poke(CONTEXT) is False


def test_sensor_waits_in_reschedule_mode_by_default():
    waiting = sensor("1")
    assert waiting.mode == "reschedule"


def test_sensor_timeout_expires_the_version_and_a_later_approval_resumes(logged_run, mlflow_client):
    version = register(*logged_run())["version"]
    validate(version)
    approve(version, mode="manual")
    waiting = sensor(version, mode="poke", poke_interval=0.2, approval_timeout_minutes=0.01)
    with pytest.raises(AirflowSensorTimeout):
        waiting.execute(CONTEXT)
    tags = mlflow_client.get_model_version(MODEL, version).tags
    assert tags[lc.APPROVAL_STATUS] == "expired"
    assert "nothing was promoted" in tags[lc.APPROVAL_REASON]
    assert lc.CHAMPION not in get_aliases(mlflow_client, MODEL)
    # A reviewer decides after the expiry; the cleared task then succeeds.
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVAL_STATUS, "approved")
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVED_BY, "alice")
    assert sensor(version, mode="poke", poke_interval=0.2, approval_timeout_minutes=0.01).execute(CONTEXT)["approved_by"] == "alice"
    promote(version)
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == version


@pytest.mark.parametrize("bad", ["soon", -5, 0])
def test_sensor_rejects_a_bad_timeout(bad):
    with pytest.raises(AirflowFailException, match="approval_timeout_minutes"):
        sensor("1", mode="poke", approval_timeout_minutes=bad).execute(CONTEXT)
