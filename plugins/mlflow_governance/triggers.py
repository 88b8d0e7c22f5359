"""The trigger behind the approval sensor's deferrable mode: waits in the triggerer, not a worker.

It only watches a version's ``approval_status`` tag; the decision itself (who approved, is that
person allowed, the audit record) is judged by the sensor's ``poke`` when the task resumes in a
worker, so both modes apply exactly the same rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from include.governance import lifecycle as lc
from mlflow_governance.hooks import GOVERNANCE_CONN_ID

# Statuses the sensor keeps waiting on (pending, needs_review, expired), as tag values.
WAITING_STATUSES = frozenset(status.value for status in lc.AWAITING_DECISION | {lc.ApprovalStatus.EXPIRED})


class ModelVersionApprovalTrigger(BaseTrigger):
    """Poll a model version's ``approval_status`` until it leaves the waiting statuses.

    Fires one event: ``decided`` (the tag says something else: approved, rejected, or a value
    the sensor will refuse), ``timeout`` (the deadline passed first) or ``error`` (the version
    could not be read; the resumed sensor reports why). MLflow's client is synchronous, so each
    read runs in a thread and the triggerer's event loop never blocks. The triggerer runs every
    deferred task in one process: each read runs as this trigger's connection only (the hook's
    client sets the identity per call, in the thread that makes it), never in the environment.

    :param model_name: registered model name.
    :param version: the model version.
    :param deadline: when to give up, in seconds since the epoch.
    :param poll_interval: seconds between reads.
    :param mlflow_conn_id: the Airflow connection of the MLflow tracking server.
    """

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        deadline: float,
        poll_interval: float,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
    ) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.model_name = model_name
        self.version = str(version)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.mlflow_conn_id = mlflow_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_name": self.model_name,
                "version": self.version,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "mlflow_conn_id": self.mlflow_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self._client()
        except Exception as exc:  # noqa: BLE001 - the resumed sensor raises the real error
            yield self._event("error", message=f"cannot build an MLflow client: {exc}")
            return
        while True:
            try:
                status = await asyncio.to_thread(self._approval_status, client)
            except Exception as exc:  # noqa: BLE001 - as above
                yield self._event("error", message=_read_error(exc, f"{self.model_name} v{self.version}"))
                return
            if status not in WAITING_STATUSES:
                yield self._event("decided", approval_status=status)
                return
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield self._event("timeout", approval_status=status)
                return
            self.log.debug("%s v%s is %s; next read in %.1f s", self.model_name, self.version, status, self.poll_interval)
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def _client(self):
        # The connection lookup talks to the triggerer's supervisor: asgiref's thread does that
        # safely (a bare thread has no way back to the event loop that owns the channel).
        from asgiref.sync import sync_to_async

        from mlflow_governance.hooks import MlflowHook

        return await sync_to_async(MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_conn)()

    def _approval_status(self, client: Any) -> str | None:
        from include.governance.registry import require_version

        # VersionNotFound names the version ("... v99 does not exist"): the message the task fails with.
        tags = require_version(client, self.model_name, self.version).tags
        status = tags.get(lc.APPROVAL_STATUS)
        return status.strip().lower() if isinstance(status, str) else status

    def _event(self, status: str, **details: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "deadline": self.deadline, **details})


def _read_error(exc: Exception, what: str) -> str:
    """The error event's message: a missing version as such, any other failure as a failed read."""
    from include.governance.registry import VersionNotFound

    return str(exc) if isinstance(exc, VersionNotFound) else f"cannot read {what}: {exc}"
