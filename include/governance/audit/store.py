"""The audit store: an append-only table of governance events in a SQL database.

The table lives in any database SQLAlchemy reaches; SQLite (the embedded default) and PostgreSQL
(production) are supported, because on both the table gets triggers that refuse UPDATE and
DELETE (and TRUNCATE on PostgreSQL): this API only inserts, and nobody else can change a row
either. Triggers do not stop a table owner from dropping the table: on PostgreSQL, let the
writers connect as a role granted only INSERT and SELECT (this module runs no DDL once the
schema exists).

Retries write no second row: the table has a unique index on the events' ``dedup_key``, and an
event whose key is already there is not inserted (see ``events.py`` for how keys are built).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from include.governance.audit.errors import AuditError
from include.governance.audit.events import CHAMPION_EVENTS, AuditEvent, EventType, as_utc

log = logging.getLogger(__name__)

TABLE_NAME = "governance_audit_events"

metadata = sa.MetaData()
events_table = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("from_alias", sa.String(256)),
    sa.Column("to_alias", sa.String(256)),
    sa.Column("counterpart_version", sa.String(32)),
    sa.Column("reason", sa.Text),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("dag_run_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("dedup_key", sa.String(512)),
    sa.Index(f"ix_{TABLE_NAME}_model_version", "model_name", "version"),
    sa.Index(f"ux_{TABLE_NAME}_dedup_key", "dedup_key", unique=True),
)

_REFUSE_FUNCTION = "governance_audit_refuse_change"
_TRIGGERS = {
    "sqlite": {
        f"{TABLE_NAME}_no_update": (
            f"CREATE TRIGGER IF NOT EXISTS {TABLE_NAME}_no_update BEFORE UPDATE ON {TABLE_NAME} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE_NAME} is append-only: UPDATE refused'); END"
        ),
        f"{TABLE_NAME}_no_delete": (
            f"CREATE TRIGGER IF NOT EXISTS {TABLE_NAME}_no_delete BEFORE DELETE ON {TABLE_NAME} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE_NAME} is append-only: DELETE refused'); END"
        ),
    },
    "postgresql": {
        f"{TABLE_NAME}_no_update_delete": (
            f"CREATE TRIGGER {TABLE_NAME}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE_NAME} "
            f"FOR EACH ROW EXECUTE FUNCTION {_REFUSE_FUNCTION}()"
        ),
        f"{TABLE_NAME}_no_truncate": (
            f"CREATE TRIGGER {TABLE_NAME}_no_truncate BEFORE TRUNCATE ON {TABLE_NAME} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_REFUSE_FUNCTION}()"
        ),
    },
}
_PG_FUNCTION = (
    f"CREATE OR REPLACE FUNCTION {_REFUSE_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{TABLE_NAME} is append-only: % refused', TG_OP; END $$"
)
# Serialises schema creation when several tasks start at once on a fresh PostgreSQL database.
_PG_LOCK_KEY = 7_311_204_455
_PG_CONNECT_TIMEOUT_SECONDS = 10


class AuditLog:
    """The audit table in one database: create it when missing, append events, query them.

    :param engine: a SQLAlchemy engine, or a database URL (``sqlite:////abs/path.db``,
        ``postgresql://user@host/db``).
    """

    def __init__(self, engine: sa.engine.Engine | str) -> None:
        if isinstance(engine, str):
            engine = create_audit_engine(engine)
        self.engine = engine
        dialect = engine.dialect.name
        if dialect not in _TRIGGERS:
            raise AuditError(
                f"audit database {engine.url.render_as_string(hide_password=True)}: dialect {dialect!r} "
                f"is not supported (append-only triggers exist for {', '.join(sorted(_TRIGGERS))})"
            )
        self._schema_ready = False

    def ensure_schema(self) -> None:
        """Create the table, its indexes and its append-only triggers where any is missing.

        Nothing is executed when everything exists, so a role allowed only INSERT and SELECT can
        write to a table an administrator created.
        """
        if self._schema_ready:
            return
        dialect = self.engine.dialect.name
        attempts = 5
        for attempt in range(attempts):
            if not self._missing_triggers() and not self._missing_indexes():
                break
            try:
                with self.engine.begin() as conn:
                    if dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                    metadata.create_all(conn, checkfirst=True)
                    # create_all skips the indexes of a table another writer has just created;
                    # the dedup index must exist before any insert relies on it.
                    for index in events_table.indexes:
                        index.create(conn, checkfirst=True)
                    missing = self._missing_triggers(conn)
                    if dialect == "postgresql" and missing:
                        conn.execute(sa.text(_PG_FUNCTION))
                    for name in missing:
                        conn.execute(sa.text(_TRIGGERS[dialect][name]))
            except sa.exc.OperationalError:
                # SQLite has no lock to take: another process created part of it meanwhile
                # ("already exists"); every step is idempotent, so look again and finish it.
                if dialect != "sqlite" or attempt == attempts - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        self._schema_ready = True

    def _missing_indexes(self) -> list[str]:
        with self.engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(TABLE_NAME):
                return [index.name for index in events_table.indexes]
            present = {index["name"] for index in inspector.get_indexes(TABLE_NAME)}
        return [index.name for index in events_table.indexes if index.name not in present]

    def _missing_triggers(self, conn: sa.engine.Connection | None = None) -> list[str]:
        wanted = list(_TRIGGERS[self.engine.dialect.name])
        if conn is None:
            with self.engine.connect() as own:
                return self._missing_triggers(own)
        if not sa.inspect(conn).has_table(TABLE_NAME):
            return wanted
        if self.engine.dialect.name == "sqlite":
            query = sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table")
        else:
            query = sa.text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table) AND NOT tgisinternal"
            )
        present = {row[0] for row in conn.execute(query, {"table": TABLE_NAME})}
        return [name for name in wanted if name not in present]

    def append(self, event: AuditEvent) -> bool:
        """Insert one event; return False when an event with its ``dedup_key`` is already there."""
        self.ensure_schema()
        row = {
            "occurred_at": as_utc(event.occurred_at),
            "recorded_at": datetime.now(timezone.utc),
            "event": EventType(event.event).value,
            "model_name": event.model_name,
            "version": str(event.version),
            "actor": event.actor,
            "source": event.source,
            "run_id": event.run_id,
            "from_alias": event.from_alias,
            "to_alias": event.to_alias,
            "counterpart_version": event.counterpart_version,
            "reason": event.reason,
            "dag_id": event.dag_id,
            "dag_run_id": event.dag_run_id,
            "task_id": event.task_id,
            "metrics": dict(event.metrics),
            "details": _jsonable(event.details),
            "dedup_key": event.dedup_key,
        }
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = (
            insert(events_table)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(events_table.c.id)
        )
        with self.engine.begin() as conn:
            # A row comes back only when one was inserted (rowcount is not reliable across drivers).
            inserted = conn.execute(statement).first() is not None
        if inserted:
            log.info("audit: %s %s v%s by %s", row["event"], event.model_name, event.version, event.actor)
        else:
            log.info("audit: %s %s v%s already recorded (%s)", row["event"], event.model_name, event.version, event.dedup_key)
        return inserted

    def events(
        self,
        *,
        model_name: str | None = None,
        version: str | int | None = None,
        run_id: str | None = None,
        kinds: Iterable[EventType] | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Events in the order they were recorded, optionally filtered.

        :param limit: keep only the last ``limit`` matching events (still oldest first).
        """
        self.ensure_schema()
        table = events_table
        query = sa.select(table)
        if model_name is not None:
            query = query.where(table.c.model_name == model_name)
        if version is not None:
            query = query.where(table.c.version == str(version))
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        if kinds is not None:
            query = query.where(table.c.event.in_([EventType(k).value for k in kinds]))
        if limit is not None:
            query = query.order_by(table.c.id.desc()).limit(limit)
        else:
            query = query.order_by(table.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        found = [_from_row(row) for row in rows]
        return sorted(found, key=lambda e: e.id) if limit is not None else found

    def champion_history(self, model_name: str) -> list[AuditEvent]:
        """Every event that put a version in ``@champion``, oldest first."""
        return self.events(model_name=model_name, kinds=CHAMPION_EVENTS)


def _from_row(row: Mapping[str, Any]) -> AuditEvent:
    values = dict(row)
    values["event"] = EventType(values["event"])
    values["occurred_at"] = as_utc(values["occurred_at"])
    values["recorded_at"] = as_utc(values["recorded_at"])
    values["metrics"] = values["metrics"] or {}
    values["details"] = values["details"] or {}
    return AuditEvent(**values)


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(details), default=str))


def create_audit_engine(url: str) -> sa.engine.Engine:
    """An engine for an audit database URL; a SQLite file's folder is created when missing.

    :param url: a SQLAlchemy URL.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Several task processes may write at once: wait for the file lock instead of failing.
        return sa.create_engine(parsed, connect_args={"timeout": 30})
    if parsed.get_backend_name() == "postgresql":
        # A host that drops packets would otherwise hang the command instead of failing it.
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_SECONDS})
    return sa.create_engine(parsed, pool_pre_ping=True)
