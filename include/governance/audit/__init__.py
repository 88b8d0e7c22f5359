"""The governance audit trail, by concern; this package re-exports every public name.

- ``events``: what an event is (EventType, AuditEvent, AuditContext) and the builders that turn
  the registry state a step left behind into events;
- ``store``: the append-only table (schema, triggers, AuditLog, create_audit_engine);
- ``mirror``: AuditTrail, which appends to the store and writes each version's events to its
  MLflow run;
- ``location``: where the audit table lives (explicit, Airflow connection, environment, default
  file);
- ``errors``: AuditError.
"""

from include.governance.audit.errors import AuditError
from include.governance.audit.events import (
    CHAMPION_EVENTS,
    POLICY_ACTOR,
    AuditContext,
    AuditEvent,
    EventType,
    approval_events,
    evidence_metrics,
    expired_event,
    make_event,
    notification_failed_event,
    promotion_events,
    refused_review_event,
    registered_event,
    retrain_triggered_event,
    review_event,
    validated_event,
)
from include.governance.audit.location import (
    AUDIT_CONN_ID,
    AUDIT_DB_ENV,
    DEFAULT_AUDIT_FILE,
    DEFAULT_SETTING,
    AuditLocation,
    ConnectionFields,
    connection_from_environment,
    connection_url,
    find_airflow_connection,
    local_audit_location,
    resolve_audit_location,
)
from include.governance.audit.mirror import ARTIFACT_DIR, AuditTrail
from include.governance.audit.store import TABLE_NAME, AuditLog, create_audit_engine, events_table, metadata

__all__ = [
    "ARTIFACT_DIR",
    "AUDIT_CONN_ID",
    "AUDIT_DB_ENV",
    "CHAMPION_EVENTS",
    "DEFAULT_AUDIT_FILE",
    "DEFAULT_SETTING",
    "POLICY_ACTOR",
    "TABLE_NAME",
    "AuditContext",
    "AuditError",
    "AuditEvent",
    "AuditLocation",
    "AuditLog",
    "AuditTrail",
    "ConnectionFields",
    "EventType",
    "approval_events",
    "connection_from_environment",
    "connection_url",
    "create_audit_engine",
    "events_table",
    "evidence_metrics",
    "expired_event",
    "find_airflow_connection",
    "local_audit_location",
    "make_event",
    "notification_failed_event",
    "metadata",
    "promotion_events",
    "refused_review_event",
    "registered_event",
    "retrain_triggered_event",
    "resolve_audit_location",
    "review_event",
    "validated_event",
]
