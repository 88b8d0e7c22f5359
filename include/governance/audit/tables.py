"""Creating one of the audit database's side tables (deliveries, step announcements) on first use."""

from __future__ import annotations

import sqlalchemy as sa


def ensure_table(engine: sa.engine.Engine, table: sa.Table, pg_lock_key: int) -> None:
    """Create ``table`` and its indexes when missing; no DDL at all when they exist.

    On PostgreSQL an advisory lock serialises two processes starting on a fresh database; SQLite
    has none, so a creation that lost the race ("already exists") counts as done.
    """
    if _complete(engine, table):
        return
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": pg_lock_key})
            table.create(conn, checkfirst=True)
            for index in table.indexes:
                index.create(conn, checkfirst=True)
    except sa.exc.OperationalError as exc:
        if "already exists" not in str(exc):
            raise


def _complete(engine: sa.engine.Engine, table: sa.Table) -> bool:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(table.name):
            return False
        present = {index["name"] for index in inspector.get_indexes(table.name)}
    return all(index.name in present for index in table.indexes)


class SideTable:
    """A store over one side table of the audit database; the table is created on first use."""

    table: sa.Table
    pg_lock_key: int

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self._schema_ready = False

    def ensure_schema(self) -> None:
        """Create the table and its indexes when missing (no DDL at all when they exist)."""
        if not self._schema_ready:
            ensure_table(self.engine, self.table, self.pg_lock_key)
            self._schema_ready = True
