"""Reporting a version that failed to load: a log line, a metric, and one audit event.

The audit table is found by the project's rules (include/governance/audit/location.py): the
Airflow connection ``audit_db`` as ``AIRFLOW_CONN_AUDIT_DB`` holds it, else
``MOVIE_RECOMMENDER_AUDIT_DB``, else ``$AIRFLOW_HOME/governance_audit.db``; the event is also
mirrored on the version's run (``audit/events_v<N>.json``), as every event is. One event per
version per server process (keyed by the process's instance id): retries of the same load are
counted in the metric and logged, not audited again.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timezone
from typing import Any

from include.governance.audit import (
    AuditContext,
    AuditLog,
    AuditTrail,
    EventType,
    connection_from_environment,
    make_event,
    resolve_audit_location,
)
from include.serving.loading import LoadFailed
from include.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

SERVING_ACTOR = "model-server"
SERVING_SOURCE = "serving"


def audit_trail(client: Any) -> AuditTrail:
    """The audit trail at the configured location, mirroring onto runs through client."""
    location = resolve_audit_location(connection=connection_from_environment())
    log.info("audit trail: %s", location.describe())
    return AuditTrail(AuditLog(location.url), client)


class FailureReporter:
    """Reports load failures of one server process.

    :param client: the MLflow client (to read the failed version for the event).
    :param trail: the audit trail (None: log and metric only).
    :param metrics: the server's metrics.
    :param model_name: the served model.
    """

    def __init__(self, client: Any, trail: AuditTrail | None, metrics: ServingMetrics, model_name: str) -> None:
        self.client = client
        self.trail = trail
        self.metrics = metrics
        self.model_name = model_name
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
        self._audited: set[str] = set()

    def report(self, alias: str, failure: LoadFailed, *, serving: str | None, attempt: int) -> None:
        """Log, count and (first time per version) audit a failed load.

        :param alias: the alias that named the version.
        :param serving: the version still serving for that alias (None: nothing).
        :param attempt: how many times this version has now failed in this process.
        """
        self.metrics.load_failures.labels(self.model_name, failure.version).inc()
        log.error(
            "serving: %s v%s (@%s) not swapped in, attempt %d: %s; still serving %s",
            self.model_name, failure.version, alias, attempt, failure,
            f"v{serving}" if serving else "nothing for that alias",
        )
        if self.trail is None or failure.version in self._audited:
            return
        try:
            self._audit(alias, failure, serving)
        except Exception:  # noqa: BLE001 - the server keeps serving; the failure is logged, with the cause
            log.exception("serving: could not audit the load failure of %s v%s", self.model_name, failure.version)
            return
        self._audited.add(failure.version)

    def _audit(self, alias: str, failure: LoadFailed, serving: str | None) -> None:
        mv = self.client.get_model_version(self.model_name, failure.version)
        event = make_event(
            EventType.SERVING_LOAD_FAILED,
            mv,
            AuditContext(actor=SERVING_ACTOR, source=SERVING_SOURCE),
            stamp=f"{self.instance}",
            occurred_at=datetime.now(timezone.utc),
            reason=str(failure),
            metrics={},
            # No from/to alias: nothing moved (the audit's drift check reads those as alias moves).
            details={"alias": alias, "stage": failure.stage, "still_serving": serving, "server": self.instance},
        )
        self.trail.record(event)
