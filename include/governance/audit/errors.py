"""The one error the audit trail raises: its database cannot be used as an append-only trail."""

from __future__ import annotations


class AuditError(RuntimeError):
    """The audit database cannot be used as an append-only trail; the message says why."""
