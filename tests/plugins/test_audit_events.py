"""The operators and the sensor append the lifecycle's events to the audit trail, once each."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from include.governance import lifecycle as lc
from include.governance.approval import record_review
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType, review_event
from include.governance.policy import GovernancePolicy
from mlflow_governance import audit as airflow_audit
from mlflow_governance.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RequestApprovalOperator,
    ValidateModelVersionOperator,
)
from mlflow_governance.sensors import ModelVersionApprovalSensor
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

DAG_ID = "movie_recommender_retrain"


def context(run_id="manual__2025-01-01", user="carol"):
    return {
        "dag": SimpleNamespace(dag_id=DAG_ID),
        "run_id": run_id,
        "dag_run": SimpleNamespace(triggering_user_name=user),
    }


@pytest.fixture
def audit_db(tmp_path, monkeypatch):
    path = tmp_path / "audit.db"
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(path))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    return AuditLog(f"sqlite:///{path}")


@pytest.fixture
def logged_run(mlflow_connection, mlflow_client):
    experiment_id = mlflow_client.create_experiment("ops", artifact_location=mlflow_connection["artifact_location"])
    return lambda metrics=None: log_tiny_model(mlflow_client, experiment_id, metrics or GOOD_METRICS)


def register(run_id, model_uri, ctx):
    return RegisterModelVersionOperator(
        task_id="register", model_name=MODEL, run_id=run_id, model_uri=model_uri,
        data_fingerprint="sha256:abc", submitted_by=ctx["dag_run"].triggering_user_name,
    ).execute(ctx)["version"]


def validate(version, ctx):
    return ValidateModelVersionOperator(task_id="validate", model_name=MODEL, version=version).execute(ctx)


def approve(version, ctx, mode="auto"):
    return RequestApprovalOperator(task_id="approve", model_name=MODEL, version=version, approval_mode=mode).execute(ctx)


def promote(version, ctx):
    return PromoteModelVersionOperator(task_id="promote", model_name=MODEL, version=version).execute(ctx)


def sensor(version, **kwargs):
    return ModelVersionApprovalSensor(task_id="wait_for_approval", model_name=MODEL, version=version, **kwargs)


def summary(events):
    return [(e.event.value, e.version, e.actor) for e in events]


def test_a_lifecycle_with_retries_records_each_event_once(audit_db, logged_run, mlflow_client, tmp_path):
    ctx = context()
    run_id, model_uri = logged_run()
    v1 = register(run_id, model_uri, ctx)
    register(run_id, model_uri, ctx)  # a retry finds the version: no second "registered"
    validate(v1, ctx)
    approve(v1, ctx)
    promote(v1, ctx)
    promote(v1, ctx)  # a retry of a promotion that went through: a no-op, no second "promoted"
    assert summary(audit_db.events()) == [
        ("registered", "1", "carol"),
        ("validated", "1", "carol"),
        ("approval_requested", "1", "carol"),
        ("approved", "1", "policy"),
        ("promoted", "1", "carol"),
    ]
    registered, validated, _, approved, promoted = audit_db.events()
    assert (validated.to_alias, validated.details["status"]) == ("challenger", "passed")
    assert validated.metrics["accuracy"] == pytest.approx(0.80)
    assert approved.reason == "First model meets validation criteria"
    assert (promoted.from_alias, promoted.to_alias, promoted.counterpart_version) == ("challenger", "champion", None)
    assert (promoted.dag_id, promoted.dag_run_id, promoted.task_id) == (DAG_ID, "manual__2025-01-01", "promote")
    assert promoted.details["approved_by"] == "policy" and promoted.metrics["accuracy"] == pytest.approx(0.80)

    # The same events, in order, on the version's run.
    path = mlflow_client.download_artifacts(run_id, "audit/events_v1.json", str(tmp_path))
    with open(path) as handle:
        assert [e["event"] for e in json.load(handle)["events"]] == [e.event.value for e in audit_db.events()]


def test_a_second_champion_archives_the_first(audit_db, logged_run):
    ctx = context()
    v1 = register(*logged_run(), ctx)
    validate(v1, ctx), approve(v1, ctx), promote(v1, ctx)
    v2 = register(*logged_run({**GOOD_METRICS, "accuracy": 0.83}), context(run_id="manual__2"))
    for step in (validate, approve, promote):
        step(v2, context(run_id="manual__2"))
    promoted, archived = audit_db.events(kinds=[EventType.PROMOTED, EventType.ARCHIVED])[-2:]
    assert (promoted.event, promoted.version, promoted.counterpart_version) == (EventType.PROMOTED, v2, v1)
    assert (archived.event, archived.version, archived.from_alias, archived.to_alias) == (
        EventType.ARCHIVED, v1, "champion", "previous_champion"
    )
    assert [e.version for e in audit_db.champion_history(MODEL)] == [v1, v2]


def test_a_reviewer_decision_seen_by_the_sensor_is_one_event(audit_db, logged_run, mlflow_client):
    ctx = context()
    version = register(*logged_run(), ctx)
    validate(version, ctx)
    approve(version, ctx, mode="manual")
    assert sensor(version).poke(ctx) is False
    # The reviewer decides through the CLI's path, which records the event itself ...
    record_review(mlflow_client, MODEL, version, approve=True, reviewer="alice", notes="ok",
                  policy=GovernancePolicy.load().approval)
    mv = mlflow_client.get_model_version(MODEL, version)
    AuditTrail(audit_db, mlflow_client).record(review_event(mv, AuditContext(actor="alice", source="cli")))
    # ... and the sensor, poked twice, adds nothing.
    assert sensor(version).poke(ctx).is_done and sensor(version).poke(ctx).is_done
    assert summary(audit_db.events())[2:] == [("approval_requested", version, "carol"), ("approved", version, "alice")]
    assert audit_db.events()[-1].source == "cli" and audit_db.events()[-1].details["notes"] == "ok"


def test_a_decision_typed_into_mlflow_is_recorded_by_the_sensor(audit_db, logged_run, mlflow_client):
    ctx = context()
    version = register(*logged_run(), ctx)
    validate(version, ctx)
    approve(version, ctx, mode="manual")
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVAL_STATUS, "rejected")
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVED_BY, "bob")
    mlflow_client.set_model_version_tag(MODEL, version, lc.APPROVAL_NOTES, "worse on new users")
    for _ in range(2):
        with pytest.raises(AirflowFailException, match="rejected by bob"):
            sensor(version).poke(ctx)
    rejected = audit_db.events()[-1]
    assert summary([rejected]) == [("rejected", version, "bob")]
    assert (rejected.dag_id, rejected.task_id, rejected.details["notes"]) == (DAG_ID, "wait_for_approval", "worse on new users")
    assert len(audit_db.events(kinds=[EventType.REJECTED])) == 1


def test_expiry_is_recorded_as_the_policy(audit_db, logged_run):
    ctx = context()
    version = register(*logged_run(), ctx)
    validate(version, ctx)
    approve(version, ctx, mode="manual")
    with pytest.raises(AirflowSensorTimeout):
        sensor(version, mode="poke", poke_interval=0.2, approval_timeout_minutes=0.005).execute(ctx)
    expired = audit_db.events()[-1]
    assert summary([expired]) == [("expired", version, "policy")]
    assert "nothing was promoted" in expired.reason


def test_a_policy_rejection_is_recorded_before_the_task_fails(audit_db, logged_run):
    ctx = context()
    version = register(*logged_run({**GOOD_METRICS, "accuracy": 0.6}), ctx)
    validate(version, ctx)
    with pytest.raises(AirflowFailException, match="rejected"):
        approve(version, ctx)
    assert summary(audit_db.events())[1:] == [
        ("validated", version, "carol"), ("approval_requested", version, "carol"), ("rejected", version, "policy")
    ]
    assert audit_db.events()[1].details["status"] == "failed" and audit_db.events()[1].to_alias is None


def test_a_scheduled_run_is_attributed_to_airflow():
    assert airflow_audit.triggering_user({"dag_run": SimpleNamespace(triggering_user_name=None)}) == "airflow"
    assert airflow_audit.audit_context(context(user="dave"), "promote").actor == "dave"


def test_the_sink_defaults_to_a_file_in_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MOVIE_RECOMMENDER_AUDIT_DB", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert str(airflow_audit.audit_log().engine.url) == f"sqlite:///{tmp_path / 'governance_audit.db'}"


def test_a_non_postgres_audit_connection_is_an_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_DB", json.dumps({"conn_type": "mysql", "host": "db"}))
    with pytest.raises(AirflowException, match="type 'mysql'.*needs a postgres connection"):
        airflow_audit.audit_log()


@pytest.mark.services
def test_the_audit_db_connection_uses_the_postgres_hook(monkeypatch):
    name = f"audit_conn_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_DB", f"postgres://postgres@127.0.0.1:5432/{name}")
    try:
        log = airflow_audit.audit_log()
        assert log.engine.dialect.name == "postgresql" and log.engine.url.database == name
        ctx = AuditContext(actor="carol", source="airflow")
        mv = SimpleNamespace(name=MODEL, version="1", run_id="r", tags={}, source="s", creation_timestamp=0)
        from include.governance.audit import registered_event

        assert log.append(registered_event(mv, ctx)) is True
        assert summary(log.events()) == [("registered", "1", "carol")]
        log.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
