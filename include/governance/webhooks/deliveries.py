"""The table of received MLflow webhook deliveries, next to the audit table in the audit database.

One row per delivery id, inserted once (a unique id: a second insert of the same id adds
nothing, which is how a replay is refused, across every api-server worker and restart). Rows are
never changed, so the audit database's writer role (INSERT and SELECT only) is all it needs;
``docker/airflow/migrate-audit-db`` creates the table as the owner, like the audit table.

The approval trigger reads it to wake early: ``latest_id(model, version)`` is one indexed query
returning the newest row about that version, so "anything new since I last read MLflow?" costs
a comparison of two integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from include.governance.audit.tables import SideTable
from include.governance.webhooks.changes import RegistryChange

TABLE_NAME = "mlflow_webhook_deliveries"
# Serialises the table's creation when two processes start on a fresh PostgreSQL database.
_PG_LOCK_KEY = 7_311_204_456

metadata = sa.MetaData()
deliveries_table = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(128), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(256)),
    sa.Column("version", sa.String(32)),
    sa.Column("alias", sa.String(256)),
    sa.Column("tag_key", sa.String(250)),
    sa.Column("tag_value", sa.Text),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index(f"ux_{TABLE_NAME}_delivery_id", "delivery_id", unique=True),
    sa.Index(f"ix_{TABLE_NAME}_model_version", "model_name", "version", "id"),
)


@dataclass(frozen=True)
class Delivery:
    """A delivery as recorded: its id, times, the change it reports and the body it came with."""

    delivery_id: str
    received_at: datetime
    sent_at: datetime
    change: RegistryChange
    payload: dict[str, Any]
    id: int | None = None


class DeliveryLog(SideTable):
    """The deliveries table in one database (SQLite or PostgreSQL).

    :param engine: the audit database's engine (``AuditLog.engine``).
    """

    table = deliveries_table
    pg_lock_key = _PG_LOCK_KEY

    def record(self, delivery: Delivery) -> int | None:
        """Insert the delivery; return its row id, or None when its delivery id is already there."""
        self.ensure_schema()
        change = delivery.change
        row = {
            "delivery_id": delivery.delivery_id,
            "received_at": delivery.received_at,
            "sent_at": delivery.sent_at,
            "event": change.event[:64],
            "model_name": change.model_name,
            "version": change.version,
            "alias": change.alias,
            "tag_key": change.key,
            "tag_value": change.value,
            "payload": delivery.payload,
        }
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = (
            insert(deliveries_table)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["delivery_id"])
            .returning(deliveries_table.c.id)
        )
        with self.engine.begin() as conn:
            inserted = conn.execute(statement).first()
        return inserted[0] if inserted is not None else None

    def latest_id(self, model_name: str, version: str) -> int:
        """The newest row id about this version (0 when there is none)."""
        self.ensure_schema()
        table = deliveries_table
        query = sa.select(sa.func.max(table.c.id)).where(
            table.c.model_name == model_name, table.c.version == str(version)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar() or 0

    def changes(self, model_name: str) -> list[RegistryChange]:
        """The changes received about a model, oldest first."""
        self.ensure_schema()
        table = deliveries_table
        query = sa.select(table).where(table.c.model_name == model_name).order_by(table.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            RegistryChange(event=row["event"], model_name=row["model_name"], version=row["version"],
                           alias=row["alias"], key=row["tag_key"], value=row["tag_value"])
            for row in rows
        ]

    def count(self) -> int:
        """How many deliveries were received (for tests and the bench)."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(deliveries_table)).scalar() or 0


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
