"""The audit sink for Airflow tasks: where governance events are appended, and who acts.

Where the audit table lives follows ``include.governance.audit.location``, the rules the
reviewer CLI follows too: the Airflow connection ``audit_db`` (type postgres; its engine comes
from the Postgres provider's hook) when it exists; otherwise the SQLite file named by
``MOVIE_RECOMMENDER_AUDIT_DB``, else ``$AIRFLOW_HOME/governance_audit.db``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from include.governance.audit import AuditContext, AuditLog, AuditTrail
    from include.governance.audit.location import AuditLocation

AUDIT_CONN_ID = "audit_db"
# Who a DAG event is attributed to when the run has no triggering user (a scheduled run); the
# same fallback the register step writes to ``submitted_by``.
SCHEDULER_ACTOR = "airflow"

# One AuditLog per database and process: the schema check runs once per task, not per event.
_logs: dict[str, "AuditLog"] = {}


def audit_log(conn_id: str = AUDIT_CONN_ID) -> "AuditLog":
    """The audit table from the Airflow connection, else the local SQLite file.

    :param conn_id: the Airflow connection of the audit database (type postgres).
    """
    from include.governance.audit import AuditError, AuditLog
    from include.governance.audit.location import resolve_audit_location

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        conn = None
    try:
        location = resolve_audit_location(connection=conn, conn_id=conn_id)
    except AuditError as exc:
        raise AirflowException(str(exc)) from None
    key = f"conn:{conn_id}" if location.conn_id else location.url
    if key not in _logs:
        _logs[key] = AuditLog(_engine(location))
    return _logs[key]


def _engine(location: "AuditLocation") -> Any:
    from include.governance.audit import create_audit_engine

    if location.conn_id is None:
        return create_audit_engine(location.url)
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    # The provider's hook honours the connection's extras (sqlalchemy_query, IAM tokens).
    return PostgresHook(postgres_conn_id=location.conn_id).get_sqlalchemy_engine(engine_kwargs={"pool_pre_ping": True})


def audit_trail(client: "MlflowClient", conn_id: str = AUDIT_CONN_ID) -> "AuditTrail":
    """The audit table plus the version artifacts on ``client``'s tracking server."""
    from include.governance.audit import AuditTrail

    return AuditTrail(audit_log(conn_id), client)


def triggering_user(context: Any) -> str:
    """The user who triggered the task's DAG run (``airflow`` for scheduled runs)."""
    dag_run = context.get("dag_run")
    return getattr(dag_run, "triggering_user_name", None) or SCHEDULER_ACTOR


def audit_context(context: Any, task_id: str | None = None) -> "AuditContext":
    """Who and where for events a task records: the triggering user and the DAG run.

    :param context: the task's Airflow context.
    :param task_id: the recording task (taken from the context when None).
    """
    from include.governance.audit import AuditContext

    dag = context.get("dag")
    ti = context.get("ti") or context.get("task_instance")
    return AuditContext(
        actor=triggering_user(context),
        source="airflow",
        dag_id=getattr(dag, "dag_id", None),
        dag_run_id=context.get("run_id"),
        task_id=task_id or getattr(ti, "task_id", None),
    )
