"""The audit sink for Airflow tasks: where governance events are appended, and who acts.

The audit table lives in the database of the Airflow connection ``audit_db`` (type postgres,
through the Postgres provider's hook) when that connection exists; otherwise in the SQLite file
named by ``MOVIE_RECOMMENDER_AUDIT_DB``, else ``$AIRFLOW_HOME/governance_audit.db``. The reviewer
CLI follows the same rules (``include.governance.audit.resolve_audit_url``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from include.governance.audit import AuditContext, AuditLog, AuditTrail

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
    from include.governance.audit import AuditLog, create_audit_engine, local_audit_url

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        conn = None
    if conn is None:
        url = local_audit_url()
        if url not in _logs:
            _logs[url] = AuditLog(create_audit_engine(url))
        return _logs[url]
    if conn.conn_type not in ("postgres", "postgresql"):
        raise AirflowException(
            f"Airflow connection {conn_id!r} is of type {conn.conn_type!r}; the audit table needs a postgres "
            "connection (or none: then a SQLite file, see MOVIE_RECOMMENDER_AUDIT_DB)"
        )
    key = f"conn:{conn_id}"
    if key not in _logs:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        _logs[key] = AuditLog(PostgresHook(postgres_conn_id=conn_id).get_sqlalchemy_engine(engine_kwargs={"pool_pre_ping": True}))
    return _logs[key]


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
