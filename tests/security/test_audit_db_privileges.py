"""The audit database's roles, proven on the machine's real PostgreSQL (issue #5).

docker/postgres/audit-db.sql runs here exactly as init-databases.sh runs it (psql, the same
variables), then docker/airflow/migrate-audit-db creates the table as the owner, as airflow-init
does. The writer role, which Airflow's `audit_db` connection logs in as, may append and read
events through the project's AuditLog, and nothing else: UPDATE, DELETE, TRUNCATE, DDL and DROP
are refused by its privileges, and UPDATE, DELETE and TRUNCATE by the triggers even for the owner.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from include.governance.audit import TABLE_NAME, AuditEvent, AuditLog, EventType
from tests.services.conftest import POSTGRES_URL, _admin_connection

ROOT = Path(__file__).resolve().parents[2]
AUDIT_DB_SQL = ROOT / "docker" / "postgres" / "audit-db.sql"
MIGRATE = ROOT / "docker" / "airflow" / "migrate-audit-db"

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql (postgresql-client) is not installed")


def _url(database: str, user: str, password: str) -> sa.engine.URL:
    server = sa.engine.make_url(POSTGRES_URL)
    return sa.engine.URL.create(
        "postgresql+psycopg2", username=user, password=password, host=server.host, port=server.port or 5432,
        database=database,
    )


@pytest.fixture(scope="module")
def audit_db():
    """Roles and database made by audit-db.sql, the table made by migrate-audit-db; dropped after."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "database": f"audit_sec_{suffix}",
        "owner": f"audit_owner_{suffix}",
        "owner_password": "owner-pw-1",
        "writer": f"audit_writer_{suffix}",
        "writer_password": "writer-pw-1",
    }
    server = sa.engine.make_url(POSTGRES_URL)
    command = ["psql", "-v", "ON_ERROR_STOP=1", "--host", server.host or "127.0.0.1", "--port", str(server.port or 5432),
               "--username", server.username or "postgres", "--dbname", server.database or "postgres"]
    for key, value in names.items():
        command += ["-v", f"{key}={value}"]
    try:
        result = subprocess.run([*command, "-f", str(AUDIT_DB_SQL)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"audit-db.sql failed:\n{result.stdout}\n{result.stderr}"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AUDIT_DB_HOST": server.host or "127.0.0.1",
            "AUDIT_DB_PORT": str(server.port or 5432),
            "AUDIT_DB_NAME": names["database"],
            "AUDIT_DB_OWNER": names["owner"],
            "AUDIT_DB_OWNER_PASSWORD": names["owner_password"],
        }
        migrated = subprocess.run([sys.executable, str(MIGRATE)], env=env, capture_output=True, text=True, timeout=120)
        assert migrated.returncode == 0, f"migrate-audit-db failed:\n{migrated.stdout}\n{migrated.stderr}"
        yield names
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{names["database"]}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{names["writer"]}"')
            admin.execute(f'DROP ROLE IF EXISTS "{names["owner"]}"')


@pytest.fixture(scope="module")
def writer_engine(audit_db):
    engine = sa.create_engine(_url(audit_db["database"], audit_db["writer"], audit_db["writer_password"]))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def owner_engine(audit_db):
    engine = sa.create_engine(_url(audit_db["database"], audit_db["owner"], audit_db["owner_password"]))
    yield engine
    engine.dispose()


def _event(key: str) -> AuditEvent:
    return AuditEvent(
        event=EventType.APPROVED, model_name="movie_recommender", version="3", actor="alice",
        occurred_at=datetime.now(timezone.utc), source="test", reason="holdout ok", dedup_key=key,
    )


def _refused(engine, statement: str) -> str:
    with pytest.raises(sa.exc.DBAPIError) as raised:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    return str(raised.value.orig)


def test_the_writer_appends_and_reads_events_through_the_project_code(writer_engine):
    log = AuditLog(writer_engine)
    assert log.append(_event(f"k-{uuid.uuid4()}")) is True
    key = f"k-{uuid.uuid4()}"
    assert log.append(_event(key)) is True
    # ON CONFLICT DO NOTHING needs no UPDATE privilege: a retry is a no-op, not an error.
    assert log.append(_event(key)) is False
    assert [e.actor for e in log.events(model_name="movie_recommender")][-2:] == ["alice", "alice"]


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        (f"UPDATE {TABLE_NAME} SET actor = 'mallory'", "permission denied"),
        (f"DELETE FROM {TABLE_NAME}", "permission denied"),
        (f"TRUNCATE {TABLE_NAME}", "permission denied"),
        (f"DROP TABLE {TABLE_NAME}", "must be owner"),
        (f"ALTER TABLE {TABLE_NAME} DISABLE TRIGGER ALL", "must be owner"),
        ("CREATE TABLE shadow (id int)", "permission denied"),
    ],
)
def test_the_writer_cannot_change_or_remove_events(writer_engine, statement, why):
    AuditLog(writer_engine).append(_event(f"k-{uuid.uuid4()}"))
    assert why in _refused(writer_engine, statement)


@pytest.mark.parametrize("statement", [f"UPDATE {TABLE_NAME} SET actor = 'mallory'", f"DELETE FROM {TABLE_NAME}", f"TRUNCATE {TABLE_NAME}"])
def test_the_triggers_refuse_changes_even_for_the_owner(owner_engine, writer_engine, statement):
    AuditLog(writer_engine).append(_event(f"k-{uuid.uuid4()}"))
    assert "append-only" in _refused(owner_engine, statement)


def test_other_roles_cannot_connect(audit_db):
    # PUBLIC lost CONNECT: a role that is neither owner nor writer (here: a fresh login) is refused.
    intruder = f"audit_intruder_{uuid.uuid4().hex[:8]}"
    with _admin_connection() as admin:
        admin.execute(f"CREATE ROLE \"{intruder}\" LOGIN PASSWORD 'x'")
    try:
        engine = sa.create_engine(_url(audit_db["database"], intruder, "x"))
        with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
            with engine.connect():
                pass
        engine.dispose()
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{intruder}"')
