"""The audit table: append-only on SQLite and PostgreSQL, deduplicated, queried in order."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from include.governance import lifecycle as lc
from include.governance import audit, audit_db
from include.governance.audit import (
    AuditContext,
    AuditError,
    AuditEvent,
    AuditLog,
    AuditTrail,
    EventType,
    approval_events,
    connection_from_environment,
    promotion_events,
    resolve_audit_location,
    review_event,
)

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def event(kind=EventType.PROMOTED, version="1", key=None, *, minutes=0, **extra) -> AuditEvent:
    return AuditEvent(
        event=kind, model_name="movie_recommender", version=version, actor="alice",
        occurred_at=T0 + timedelta(minutes=minutes), source="cli", dedup_key=key, **extra,
    )


@pytest.fixture
def sqlite_log(tmp_path):
    return AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.fixture
def pg_url():
    """A throwaway PostgreSQL database (127.0.0.1:5432, trust auth), dropped after the test."""
    name = f"audit_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_log(pg_url):
    log = AuditLog(pg_url)
    yield log
    log.engine.dispose()


def test_events_come_back_in_order_with_their_fields(sqlite_log):
    sqlite_log.append(event(EventType.REGISTERED, minutes=0))
    sqlite_log.append(event(EventType.VALIDATED, minutes=1, metrics={"accuracy": 0.81}, reason="passed 7 checks"))
    sqlite_log.append(event(EventType.PROMOTED, minutes=2, from_alias="challenger", to_alias="champion",
                            dag_id="movie_recommender_retrain", dag_run_id="manual__1", details={"approved_by": "policy"}))
    sqlite_log.append(event(EventType.REGISTERED, version="2", minutes=3))
    events = sqlite_log.events(model_name="movie_recommender", version="1")
    assert [e.event for e in events] == [EventType.REGISTERED, EventType.VALIDATED, EventType.PROMOTED]
    assert [e.id for e in events] == sorted(e.id for e in events)
    promoted = events[-1]
    assert promoted.occurred_at == T0 + timedelta(minutes=2)
    assert promoted.occurred_at.tzinfo is not None and promoted.recorded_at.tzinfo is not None
    assert (promoted.from_alias, promoted.to_alias) == ("challenger", "champion")
    assert promoted.details == {"approved_by": "policy"}
    assert events[1].metrics == {"accuracy": 0.81}
    assert [e.version for e in sqlite_log.events(kinds=[EventType.REGISTERED])] == ["1", "2"]
    assert [e.event for e in sqlite_log.events(limit=2)] == [EventType.PROMOTED, EventType.REGISTERED]
    assert json.loads(json.dumps(promoted.to_dict()))["occurred_at"] == "2025-03-01T12:02:00+00:00"


def test_an_event_with_a_known_dedup_key_is_not_added_twice(sqlite_log):
    assert sqlite_log.append(event(key="promoted/m/1/run/t1")) is True
    assert sqlite_log.append(event(key="promoted/m/1/run/t1", minutes=5)) is False
    assert sqlite_log.append(event(key="promoted/m/1/run/t2")) is True
    # Events without a key are never taken for duplicates.
    assert sqlite_log.append(event()) and sqlite_log.append(event())
    assert len(sqlite_log.events()) == 4


def test_sqlite_table_refuses_update_and_delete_from_any_client(sqlite_log, tmp_path):
    sqlite_log.append(event(key="k"))
    with pytest.raises(sa.exc.IntegrityError, match="append-only: UPDATE refused"):
        with sqlite_log.engine.begin() as conn:
            conn.execute(sa.text("UPDATE governance_audit_events SET actor = 'mallory'"))
    # Not just this API: the triggers live in the database file.
    raw = sqlite3.connect(tmp_path / "audit.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
        raw.execute("DELETE FROM governance_audit_events")
    raw.close()
    (kept,) = sqlite_log.events()
    assert kept.actor == "alice"


@pytest.mark.services
def test_postgresql_table_refuses_update_delete_and_truncate(pg_log):
    assert pg_log.append(event(EventType.VALIDATED, key="k1", metrics={"accuracy": 0.8})) is True
    assert pg_log.append(event(EventType.VALIDATED, key="k1")) is False
    for statement, operation in (
        ("UPDATE governance_audit_events SET actor = 'mallory'", "UPDATE"),
        ("DELETE FROM governance_audit_events", "DELETE"),
        ("TRUNCATE governance_audit_events", "TRUNCATE"),
    ):
        with pytest.raises(sa.exc.DBAPIError, match=f"append-only: {operation} refused"):
            with pg_log.engine.begin() as conn:
                conn.execute(sa.text(statement))
    (kept,) = pg_log.events()
    assert (kept.actor, kept.metrics, kept.occurred_at) == ("alice", {"accuracy": 0.8}, T0)


@pytest.mark.services
def test_postgresql_role_with_only_insert_and_select_can_append(pg_log, pg_url):
    """Once the schema exists nothing runs DDL, so the writers need no more than INSERT."""
    pg_log.ensure_schema()
    role = f"audit_writer_{uuid.uuid4().hex[:8]}"
    with pg_log.engine.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'GRANT SELECT, INSERT ON governance_audit_events TO "{role}"'))
        conn.execute(sa.text(f'GRANT USAGE ON SEQUENCE governance_audit_events_id_seq TO "{role}"'))
    writer = AuditLog(pg_url.replace("postgres@", f"{role}@"))
    try:
        assert writer.append(event(key="w1")) is True
        assert [e.dedup_key for e in writer.events()] == ["w1"]
    finally:
        writer.engine.dispose()
        with pg_log.engine.begin() as conn:
            conn.execute(sa.text(f'REVOKE ALL ON governance_audit_events FROM "{role}"'))
            conn.execute(sa.text(f'REVOKE ALL ON SEQUENCE governance_audit_events_id_seq FROM "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))


def resolve_in(environ: dict, explicit: str | None = None):
    """The rules applied to an environment alone (no Airflow metastore or secrets backend)."""
    return resolve_audit_location(explicit, connection=connection_from_environment(environ=environ), environ=environ)


def test_audit_url_resolution_follows_the_airflow_rules(tmp_path):
    home = tmp_path / "airflow-home"
    default = resolve_in({"AIRFLOW_HOME": str(home)})
    assert default.url == f"sqlite:///{home / 'governance_audit.db'}" and not default.configured
    chosen = resolve_in({"AIRFLOW_HOME": str(home), "MOVIE_RECOMMENDER_AUDIT_DB": str(tmp_path / "a.db")})
    assert (chosen.url, chosen.setting) == (f"sqlite:///{tmp_path / 'a.db'}", "MOVIE_RECOMMENDER_AUDIT_DB")
    conn_env = {"AIRFLOW_CONN_AUDIT_DB": "postgres://audit:s%40cret@db.example:5433/governance",
                "MOVIE_RECOMMENDER_AUDIT_DB": str(tmp_path / "a.db")}
    from_connection = resolve_in(conn_env)
    assert from_connection.url == "postgresql://audit:s%40cret@db.example:5433/governance"
    assert (from_connection.setting, from_connection.conn_id) == ("Airflow connection 'audit_db'", "audit_db")
    # Errors name the setting and the database, never the password.
    assert from_connection.describe() == "Airflow connection 'audit_db' (postgresql://audit:***@db.example:5433/governance)"
    assert "s%40cret" not in repr(from_connection)
    as_json = json.dumps({"conn_type": "postgres", "host": "db", "login": "audit", "schema": "gov", "port": 5432})
    assert resolve_in({"AIRFLOW_CONN_AUDIT_DB": as_json}).url == "postgresql://audit@db:5432/gov"
    assert resolve_in(conn_env, "sqlite:////x/y.db").url == "sqlite:////x/y.db"
    with pytest.raises(AuditError, match="'audit_db' is of type 'mysql'; the audit table needs a postgres connection"):
        resolve_in({"AIRFLOW_CONN_AUDIT_DB": "mysql://u@h/db"})


def fake_version(version="3", **tags):
    return SimpleNamespace(name="movie_recommender", version=version, run_id=f"run{version}", tags=tags, source="s")


CLI = AuditContext(actor="alice", source="cli")
DAG = AuditContext(actor="dag_test", source="airflow", dag_id="retrain", dag_run_id="manual__1", task_id="wait_for_approval")


def test_a_person_decision_is_one_event_whichever_channel_records_it():
    mv = fake_version(**{lc.APPROVAL_STATUS: "approved", lc.APPROVED_BY: "alice",
                         lc.MANUAL_APPROVAL_TIMESTAMP: "2025-03-01T12:00:00+00:00", "validation_accuracy": "0.81"})
    from_cli, from_sensor = review_event(mv, CLI), review_event(mv, DAG)
    assert from_cli.dedup_key == from_sensor.dedup_key
    assert from_sensor.actor == "alice" and from_sensor.metrics == {"accuracy": 0.81}
    # The approve step leaves a person's decision to the channel that recorded it.
    assert approval_events(mv, DAG) == []


def test_policy_decisions_are_attributed_to_the_policy():
    mv = fake_version(**{lc.APPROVAL_STATUS: "approved", lc.APPROVAL_REASON: "First model",
                         lc.APPROVAL_TIMESTAMP: "2025-03-01T12:00:00+00:00", "validation_accuracy": "0.8",
                         "validation_improvement": "+0.030000", "validation_summary": "passed 7 checks"})
    requested, approved = approval_events(mv, DAG)
    assert (requested.event, requested.actor) == (EventType.APPROVAL_REQUESTED, "dag_test")
    assert (approved.event, approved.actor) == (EventType.APPROVED, "policy")
    assert approved.metrics == {"accuracy": 0.8, "improvement": 0.03}
    pending = fake_version(**{lc.APPROVAL_STATUS: "pending", lc.APPROVAL_TIMESTAMP: "2025-03-01T12:00:00+00:00"})
    assert [e.event for e in approval_events(pending, DAG)] == [EventType.APPROVAL_REQUESTED]


def test_promotion_archives_the_old_champion_with_the_same_key_on_retry():
    new = fake_version("4", **{lc.APPROVED_BY: "alice", lc.APPROVAL_REASON: "Approved by alice"})
    old = fake_version("3")
    first = promotion_events(new, old, DAG, promoted_at="2025-03-01T12:00:00+00:00")
    retry = promotion_events(new, old, DAG, promoted_at="2025-03-01T12:00:00+00:00")
    assert [(e.event, e.version, e.counterpart_version) for e in first] == [
        (EventType.PROMOTED, "4", "3"), (EventType.ARCHIVED, "3", "4")
    ]
    assert [e.dedup_key for e in first] == [e.dedup_key for e in retry]
    assert first[0].details["approved_by"] == "alice"


def test_trail_mirrors_every_event_of_a_version_on_its_run(sqlite_log, mlflow_client, mlflow_store, tmp_path):
    experiment = mlflow_client.create_experiment("audit", artifact_location=mlflow_store["artifact_location"])
    run_id = mlflow_client.create_run(experiment).info.run_id
    trail = AuditTrail(sqlite_log, mlflow_client)
    trail.record(event(EventType.REGISTERED, version="5", key="a", run_id=run_id))
    trail.record(event(EventType.VALIDATED, version="5", key="b", run_id=run_id, minutes=1))
    trail.record(event(EventType.VALIDATED, version="5", key="b", run_id=run_id, minutes=1))  # a retry
    path = mlflow_client.download_artifacts(run_id, "audit/events_v5.json", dst_path=str(tmp_path))
    with open(path) as handle:
        document = json.load(handle)
    assert [e["event"] for e in document["events"]] == ["registered", "validated"]
    assert document["version"] == "5" and document["run_id"] == run_id


def test_writers_starting_together_on_a_new_sqlite_file_all_succeed(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / 'fresh.db'}"

    def write(n):
        return AuditLog(url).append(event(key=f"k{n}"))

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(write, range(6))) == [True] * 6
    assert sorted(e.dedup_key for e in AuditLog(url).events()) == [f"k{n}" for n in range(6)]


def test_the_old_audit_db_module_names_the_same_location_rules():
    # The reviewer CLI and older scripts import include.governance.audit_db: it must stay the
    # package's location module, not a copy that could drift.
    assert audit_db.__all__ and set(audit_db.__all__) <= set(audit.__all__)
    for name in audit_db.__all__:
        assert getattr(audit_db, name) is getattr(audit, name), name
