"""Where the audit table lives, under its old name: the names of ``include.governance.audit.location``.

Kept because the reviewer CLI and older scripts import it; it defines nothing of its own.
"""

from include.governance.audit.errors import AuditError
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

__all__ = [
    "AUDIT_CONN_ID",
    "AUDIT_DB_ENV",
    "DEFAULT_AUDIT_FILE",
    "DEFAULT_SETTING",
    "AuditError",
    "AuditLocation",
    "ConnectionFields",
    "connection_from_environment",
    "connection_url",
    "find_airflow_connection",
    "local_audit_location",
    "resolve_audit_location",
]
