"""Step announcements: "this step is about to change the registry", written before it does.

A step changes the registry first and appends its audit row once it is done, which on a loaded
machine can be a minute after its first tag (validate writes a dozen tags, one request each).
MLflow's webhook for each of those tags arrives in between, and the webhook endpoint must tell a
step's change from one made by hand (``include.governance.webhooks.out_of_band``). So a step
announces itself first, and says when it has finished: two rows, both inserts (the audit
database's writer role may only INSERT and SELECT), tied by one ``intent_id``. A change that
arrives while a step on its version (or, with ``version`` empty, on its model) is under way is
that step's; one that arrives after the step finished is judged by the step's audit rows, which
exist by then (so a by-hand change right after a promotion is still caught).

A step that dies between the two rows leaves its announcement open; it covers changes for
``OPEN_FOR`` at most (so a crash does not hide later by-hand changes for long).
``docker/airflow/migrate-audit-db`` creates the table as the owner, like the audit table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from include.governance.audit.tables import SideTable

TABLE_NAME = "governance_step_intents"
STARTED, FINISHED = "started", "finished"
# The step's host and the endpoint's may disagree on the time by this much.
CLOCK_SKEW = timedelta(seconds=2)
# Longer than any step takes (validate and promote take about a minute on a loaded 2-core machine).
OPEN_FOR = timedelta(minutes=30)
# Serialises the table's creation when two processes start on a fresh PostgreSQL database.
_PG_LOCK_KEY = 7_311_204_457

metadata = sa.MetaData()
intents_table = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("intent_id", sa.String(36), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(256)),
    sa.Column("source", sa.String(64)),
    sa.Column("dag_run_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Index(f"ix_{TABLE_NAME}_model_at", "model_name", "at"),
)


@dataclass(frozen=True)
class StepIntent:
    """One announced step: when it started, when it finished (None: not yet, or it died)."""

    intent_id: str
    model_name: str
    version: str | None
    step: str
    actor: str | None
    source: str | None
    dag_run_id: str | None
    task_id: str | None
    started_at: datetime
    finished_at: datetime | None = None

    def covers(self, model_name: str, version: str | None, at: datetime) -> bool:
        """Whether a change to ``model_name`` v``version`` received at ``at`` may be this step's:
        the step was under way then. After it finished, its audit rows speak for it."""
        if model_name != self.model_name or (self.version is not None and version != self.version):
            return False
        until = self.finished_at if self.finished_at else self.started_at + OPEN_FOR
        return self.started_at - CLOCK_SKEW <= at <= until

    def describe(self) -> str:
        where = f"v{self.version}" if self.version else "the model"
        who = f"run {self.dag_run_id} task {self.task_id}" if self.dag_run_id else (self.source or "a step")
        state = f"finished {self.finished_at:%H:%M:%S}" if self.finished_at else "not finished"
        return f"{self.step} on {where} by {self.actor} ({who}), started {self.started_at:%H:%M:%S}, {state}"


class IntentLog(SideTable):
    """The announcements table in the audit database (SQLite or PostgreSQL)."""

    table = intents_table
    pg_lock_key = _PG_LOCK_KEY

    def start(self, **step: str | None) -> str:
        """Announce a step; return its ``intent_id`` for :meth:`finish` (with the same ``step`` fields).

        :param step: ``model_name``, ``version`` (None: the whole model), ``step``, ``actor``,
            ``source``, ``dag_run_id``, ``task_id``.
        """
        intent_id = str(uuid.uuid4())
        self._insert(intent_id, STARTED, **step)
        return intent_id

    def finish(self, intent_id: str, **step: str | None) -> None:
        """Say that the announced step is done (the same fields as its ``started`` row)."""
        self._insert(intent_id, FINISHED, **step)

    def about(self, model_name: str, *, since: datetime) -> list[StepIntent]:
        """The steps on ``model_name`` started from ``since - OPEN_FOR`` on (those that can still cover a change)."""
        self.ensure_schema()
        table = intents_table
        query = (
            sa.select(table)
            .where(table.c.model_name == model_name, table.c.at >= since - OPEN_FOR)
            .order_by(table.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        started = {row["intent_id"]: row for row in rows if row["phase"] == STARTED}
        finished = {row["intent_id"]: _utc(row["at"]) for row in rows if row["phase"] == FINISHED}
        return [
            StepIntent(intent_id=key, model_name=row["model_name"], version=row["version"], step=row["step"],
                       actor=row["actor"], source=row["source"], dag_run_id=row["dag_run_id"],
                       task_id=row["task_id"], started_at=_utc(row["at"]), finished_at=finished.get(key))
            for key, row in started.items()
        ]

    def _insert(self, intent_id: str, phase: str, **fields) -> None:
        self.ensure_schema()
        if fields.get("version") is not None:
            fields["version"] = str(fields["version"])
        with self.engine.begin() as conn:
            conn.execute(sa.insert(intents_table).values(intent_id=intent_id, phase=phase,
                                                         at=datetime.now(timezone.utc), **fields))


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC).
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
