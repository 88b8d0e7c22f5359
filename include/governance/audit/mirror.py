"""The audit mirror: events appended to the store and copied onto each version's MLflow run.

The events of a version are written as ``audit/events_v<N>.json`` on its run, rewritten whole
each time, so the run's artifacts always show the version's whole trail.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from include.governance.audit.events import AuditEvent
from include.governance.audit.store import AuditLog

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_DIR = "audit"


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
