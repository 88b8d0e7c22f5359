"""The audit trail: an append-only table of governance events, mirrored on each version's run.

Every event (registered, validated, approval_requested, approved, rejected, approval_refused,
expired, promoted, archived, rolled_back) is one row: who, when (UTC), which model version, the
alias move, the reason, the Airflow DAG run, and the metrics that decided it. The table lives in
any database SQLAlchemy reaches; SQLite (the embedded default) and PostgreSQL (production) are
supported, because on both the table gets triggers that refuse UPDATE and DELETE (and TRUNCATE
on PostgreSQL): this API only inserts, and nobody else can change a row either. The same events
are written as ``audit/events_v<N>.json`` on the version's MLflow run, rewritten whole each
time. Triggers do not stop a table owner from dropping the table: on PostgreSQL, let the writers
connect as a role granted only INSERT and SELECT (this module runs no DDL once the schema
exists).

Retries write no second row: an event carries a ``dedup_key`` built from the registry state it
describes (e.g. the ``promotion_timestamp`` tag), and the table has a unique index on it. A
retried task that finds its work already done re-records the same key, which is a no-op when
the first try got as far as the audit, and fills the gap when it crashed before.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from include.governance import lifecycle as lc

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TABLE_NAME = "governance_audit_events"
ARTIFACT_DIR = "audit"
POLICY_ACTOR = "policy"


class EventType(str, Enum):
    REGISTERED = "registered"
    VALIDATED = "validated"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    # A person's answer the policy did not accept (the submitter, someone off the allow-list).
    APPROVAL_REFUSED = "approval_refused"
    EXPIRED = "expired"
    PROMOTED = "promoted"
    ARCHIVED = "archived"
    ROLLED_BACK = "rolled_back"


# Events that put a version in @champion: the champion's succession.
CHAMPION_EVENTS = (EventType.PROMOTED, EventType.ROLLED_BACK)


class AuditError(RuntimeError):
    """The audit database cannot be used as an append-only trail; the message says why."""


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where: the same for every event one task or command records.

    :param actor: the user (a DAG run's triggering user, a reviewer, ``policy``).
    :param source: the channel: ``airflow``, ``cli``.
    :param dag_id: the Airflow DAG, when an Airflow task records the event.
    :param dag_run_id: the Airflow DAG run id.
    :param task_id: the Airflow task id.
    """

    actor: str
    source: str
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit table.

    ``counterpart_version`` is the version on the other side of an alias move: the champion
    that was replaced (promoted, rolled_back) or the version that replaced it (archived).
    """

    event: EventType
    model_name: str
    version: str
    actor: str
    occurred_at: datetime
    source: str
    run_id: str | None = None
    from_alias: str | None = None
    to_alias: str | None = None
    counterpart_version: str | None = None
    reason: str | None = None
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    id: int | None = None
    recorded_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (timestamps as ISO 8601 UTC strings)."""
        data = asdict(self)
        data["event"] = self.event.value
        data["metrics"] = dict(self.metrics)
        data["details"] = dict(self.details)
        for key in ("occurred_at", "recorded_at"):
            data[key] = _iso(data[key])
        return data


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value else None


def _utc(value: datetime) -> datetime:
    """Naive datetimes read back from SQLite are UTC: make them aware."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


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
            "occurred_at": _utc(event.occurred_at),
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
    values["occurred_at"] = _utc(values["occurred_at"])
    values["recorded_at"] = _utc(values["recorded_at"])
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


class AuditTrail:
    """Append events to the audit table and mirror them on each version's MLflow run.

    :param log: the audit table.
    :param client: the registry the events are about; None writes no run artifact.
    """

    def __init__(self, log: AuditLog, client: "MlflowClient | None" = None) -> None:
        self.log = log
        self.client = client

    def record(self, *events: AuditEvent) -> list[bool]:
        """Append each event (a known ``dedup_key`` is skipped) and rewrite the run artifacts.

        :return: per event, whether a row was added.
        """
        added = [self.log.append(event) for event in events]
        if self.client is not None:
            written = set()
            for event in events:
                key = (event.model_name, str(event.version), event.run_id)
                if event.run_id and key not in written:
                    self.write_artifact(*key)
                    written.add(key)
        return added

    def write_artifact(self, model_name: str, version: str, run_id: str) -> str:
        """Rewrite ``audit/events_v<N>.json`` on the run with every event of that version."""
        events = self.log.events(model_name=model_name, version=version, run_id=run_id)
        document = {
            "model_name": model_name,
            "version": str(version),
            "run_id": run_id,
            "events": [event.to_dict() for event in events],
        }
        path = f"{ARTIFACT_DIR}/events_v{version}.json"
        self.client.log_text(run_id, json.dumps(document, indent=2), path)
        return path


# ---- Building events from the registry state a step left behind -------------------------

_NON_METRIC_VALIDATION_TAGS = frozenset(
    {
        lc.VALIDATION_STATUS,
        lc.VALIDATION_TIMESTAMP,
        lc.VALIDATION_BASELINE_VERSION,
        "validation_summary",
        "validation_policy_overrides",
    }
)


def evidence_metrics(tags: Mapping[str, str]) -> dict[str, float]:
    """The numbers validation recorded on a version (``validation_<metric>`` tags), by metric."""
    metrics = {}
    for key, value in tags.items():
        if not key.startswith(lc.VALIDATION_METRIC_PREFIX) or key in _NON_METRIC_VALIDATION_TAGS:
            continue
        try:
            metrics[key.removeprefix(lc.VALIDATION_METRIC_PREFIX)] = float(value)
        except (TypeError, ValueError):
            continue  # a text tag that shares the prefix is not evidence
    return metrics


def _when(tag_value: str | None) -> datetime:
    """The instant a tag recorded, or now when the tag is absent or unreadable."""
    if tag_value:
        try:
            return _utc(datetime.fromisoformat(tag_value))
        except ValueError:
            pass
    return datetime.now(timezone.utc)


def _from_millis(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc) if value else None


def make_event(
    kind: EventType,
    mv: Any,
    context: AuditContext,
    *,
    stamp: str | None,
    actor: str | None = None,
    reason: str | None = None,
    from_alias: str | None = None,
    to_alias: str | None = None,
    counterpart_version: str | None = None,
    metrics: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """An event about a model version, keyed by the registry state it describes.

    :param mv: the ModelVersion (name, version, run_id, tags) after the step.
    :param stamp: the timestamp tag the step wrote: the event's time and its dedup key, so the
        same state change recorded twice (a retry, a second channel) is one row.
    :param actor: overrides the context's actor (``policy``, a reviewer).
    :param metrics: the deciding numbers (the version's validation evidence when None).
    :param occurred_at: when it happened, when no timestamp tag says so.
    """
    version = str(mv.version)
    key = f"{kind.value}/{mv.name}/{version}/{mv.run_id}/{stamp}" if stamp else None
    return AuditEvent(
        event=kind,
        model_name=mv.name,
        version=version,
        actor=actor or context.actor,
        occurred_at=occurred_at or _when(stamp),
        source=context.source,
        run_id=mv.run_id,
        from_alias=from_alias,
        to_alias=to_alias,
        counterpart_version=counterpart_version,
        reason=reason,
        dag_id=context.dag_id,
        dag_run_id=context.dag_run_id,
        task_id=context.task_id,
        metrics=evidence_metrics(mv.tags) if metrics is None else dict(metrics),
        details=dict(details or {}),
        dedup_key=key,
    )


def registered_event(mv: Any, context: AuditContext) -> AuditEvent:
    """A version was created from a run (one per version: keyed by its run)."""
    return make_event(
        EventType.REGISTERED,
        mv,
        context,
        stamp="created",
        occurred_at=_from_millis(getattr(mv, "creation_timestamp", None)),
        actor=mv.tags.get(lc.SUBMITTED_BY) or context.actor,
        reason=f"Registered from run {mv.run_id}",
        metrics={},
        details={
            "source": getattr(mv, "source", None),
            lc.DATA_FINGERPRINT: mv.tags.get(lc.DATA_FINGERPRINT),
        },
    )


def validated_event(mv: Any, context: AuditContext) -> AuditEvent:
    """The gates' verdict on a version, read from the tags validation wrote."""
    tags = mv.tags
    passed = tags.get(lc.VALIDATION_STATUS) == lc.ValidationStatus.PASSED.value
    return make_event(
        EventType.VALIDATED,
        mv,
        context,
        stamp=tags.get(lc.VALIDATION_TIMESTAMP),
        reason=tags.get("validation_summary"),
        to_alias=lc.CHALLENGER if passed else None,
        details={
            "status": tags.get(lc.VALIDATION_STATUS),
            "baseline_version": tags.get(lc.VALIDATION_BASELINE_VERSION),
            "policy_overrides": tags.get("validation_policy_overrides"),
        },
    )


def approval_events(mv: Any, context: AuditContext) -> list[AuditEvent]:
    """The approval step's events: the request, then the policy's own decision if it made one.

    A decision a person already recorded yields nothing here: the channel that recorded it (the
    CLI, the sensor) writes that event.
    """
    tags = mv.tags
    status = lc.ApprovalStatus.parse(tags.get(lc.APPROVAL_STATUS), where=f"{mv.name} v{mv.version}")
    if tags.get(lc.APPROVED_BY) or status is None:
        return []
    stamp = tags.get(lc.APPROVAL_TIMESTAMP)
    reason = tags.get(lc.APPROVAL_REASON)
    details = {"status": status.value, "baseline_version": tags.get(lc.VALIDATION_BASELINE_VERSION)}
    events = [make_event(EventType.APPROVAL_REQUESTED, mv, context, stamp=stamp, reason=reason, details=details)]
    decided = {lc.ApprovalStatus.APPROVED: EventType.APPROVED, lc.ApprovalStatus.REJECTED: EventType.REJECTED}
    if status in decided:
        events.append(
            make_event(decided[status], mv, context, stamp=stamp, actor=POLICY_ACTOR, reason=reason, details=details)
        )
    return events


def review_event(mv: Any, context: AuditContext) -> AuditEvent | None:
    """A person's approval or rejection recorded on the version, or None when there is none.

    Keyed by the decision's timestamp, so the CLI that records it and the sensor that later
    sees it write one row.
    """
    tags = mv.tags
    reviewer = tags.get(lc.APPROVED_BY)
    status = lc.ApprovalStatus.parse(tags.get(lc.APPROVAL_STATUS), where=f"{mv.name} v{mv.version}")
    kinds = {lc.ApprovalStatus.APPROVED: EventType.APPROVED, lc.ApprovalStatus.REJECTED: EventType.REJECTED}
    if not reviewer or status not in kinds:
        return None
    # A decision typed into the MLflow UI may lack the timestamp tag: key it by the reviewer.
    stamp = tags.get(lc.MANUAL_APPROVAL_TIMESTAMP) or f"{status.value}-by-{reviewer}"
    return make_event(
        kinds[status],
        mv,
        context,
        stamp=stamp,
        actor=reviewer,
        reason=tags.get(lc.APPROVAL_REASON) or f"{status.value} by {reviewer}",
        details={"notes": tags.get(lc.APPROVAL_NOTES), "submitted_by": tags.get(lc.SUBMITTED_BY)},
    )


def refused_review_event(
    mv: Any, context: AuditContext, *, reviewer: str, reason: str, answered_at: str, decision: str, notes: str | None = None
) -> AuditEvent:
    """A person's answer the policy refused; nothing was recorded on the version.

    :param answered_at: when the person answered (ISO 8601): one row per answer.
    :param decision: what the person chose (``approved`` or ``rejected``).
    """
    return make_event(
        EventType.APPROVAL_REFUSED,
        mv,
        context,
        stamp=f"{answered_at}-by-{reviewer}",
        occurred_at=_when(answered_at),
        actor=reviewer,
        reason=reason,
        details={"decision": decision, "notes": notes, "submitted_by": mv.tags.get(lc.SUBMITTED_BY)},
    )


def expired_event(mv: Any, context: AuditContext) -> AuditEvent:
    """A version's wait for a decision ran out (the policy's timeout, so the actor is the policy)."""
    return make_event(
        EventType.EXPIRED,
        mv,
        context,
        stamp=mv.tags.get(lc.APPROVAL_TIMESTAMP),
        actor=POLICY_ACTOR,
        reason=mv.tags.get(lc.APPROVAL_REASON),
    )


def promotion_events(mv: Any, old: Any | None, context: AuditContext, *, promoted_at: str) -> list[AuditEvent]:
    """``promoted`` for the new champion and ``archived`` for the one it replaced.

    :param mv: the new champion.
    :param old: the champion it replaced (None for the first).
    :param promoted_at: the promotion's timestamp (its ``promotion_timestamp`` tag).
    """
    tags = mv.tags
    approver = tags.get(lc.APPROVED_BY) or POLICY_ACTOR
    events = [
        make_event(
            EventType.PROMOTED,
            mv,
            context,
            stamp=promoted_at,
            reason=f"Approved by {approver}: {tags.get(lc.APPROVAL_REASON) or 'no reason recorded'}",
            from_alias=lc.CHALLENGER,
            to_alias=lc.CHAMPION,
            counterpart_version=str(old.version) if old is not None else None,
            details={
                "approved_by": approver,
                "auto_promoted": tags.get(lc.AUTO_PROMOTED),
                "validation_baseline_version": tags.get(lc.VALIDATION_BASELINE_VERSION),
                "approval_notes": tags.get(lc.APPROVAL_NOTES),
            },
        )
    ]
    if old is not None:
        events.append(
            make_event(
                EventType.ARCHIVED,
                old,
                context,
                stamp=promoted_at,
                reason=f"Replaced as {lc.CHAMPION} by v{mv.version}",
                from_alias=lc.CHAMPION,
                to_alias=lc.PREVIOUS_CHAMPION,
                counterpart_version=str(mv.version),
            )
        )
    return events

