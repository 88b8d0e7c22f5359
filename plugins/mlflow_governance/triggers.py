"""The trigger behind the approval sensor's deferrable mode: waits in the triggerer, not a worker.

It only watches a version's ``approval_status`` tag; the decision itself (who approved, is that
person allowed, the audit record) is judged by the sensor's ``poke`` when the task resumes in a
worker, so both modes apply exactly the same rules.

Woken by MLflow webhooks: the webhook endpoint (``mlflow_governance.webhook_app``) inserts each
delivery into the deliveries table of the audit database before it answers MLflow. With
``wake_check_interval`` set, the trigger asks that table every ``wake_check_interval`` seconds
(about 1 s) for a row about its version newer than the last it saw, one indexed ``max(id)``
query, and reads MLflow at once when there is one. MLflow itself is then read every
``poll_interval`` only (10 min when webhooks are on), a safety net, since MLflow delivers each
webhook once, best-effort, and keeps nothing. Why a table and not a push into the triggerer: the
endpoint runs in the api-server and the trigger in the triggerer, possibly on other machines and
in several workers; both already reach the audit database, the row is durable (a delivery that
arrives while the trigger is being resumed elsewhere is still seen), and Airflow offers no way
for a plugin app to wake one deferred task. A table that cannot be read costs only the early wake:
the trigger logs it and keeps its MLflow poll.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from include.governance import lifecycle as lc
from mlflow_governance.audit import AUDIT_CONN_ID
from mlflow_governance.hooks import GOVERNANCE_CONN_ID

# With webhooks on (the stack: docker-compose.yaml), the trigger wakes on a delivery and polls
# MLflow only as a safety net.
WEBHOOKS_ENV = "MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS"
SAFETY_NET_ENV = "MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS"
DEFAULT_SAFETY_NET_SECONDS = 600.0
WAKE_CHECK_SECONDS = 1.0

# Statuses the sensor keeps waiting on (pending, needs_review, expired), as tag values.
WAITING_STATUSES = frozenset(status.value for status in lc.AWAITING_DECISION | {lc.ApprovalStatus.EXPIRED})


def approval_wait(poke_interval: float, environ: Mapping[str, str] | None = None) -> tuple[float, float | None]:
    """(MLflow poll interval, wake check interval or None) for a deferred approval wait.

    ``MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS=on``: MLflow every ``MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS``
    (600) and the deliveries table every second; otherwise MLflow every ``poke_interval``.
    """
    environ = os.environ if environ is None else environ
    switch = environ.get(WEBHOOKS_ENV, "").strip().lower()
    if switch in ("", "off", "false", "0"):
        return float(poke_interval), None
    if switch not in ("on", "true", "1"):
        raise ValueError(f"{WEBHOOKS_ENV}={switch!r}: expected on or off")
    raw = environ.get(SAFETY_NET_ENV, "").strip()
    try:
        safety_net = float(raw) if raw else DEFAULT_SAFETY_NET_SECONDS
    except ValueError:
        raise ValueError(f"{SAFETY_NET_ENV}={raw!r} is not a number of seconds") from None
    if safety_net <= 0:
        raise ValueError(f"{SAFETY_NET_ENV}={raw!r} must be positive")
    return safety_net, WAKE_CHECK_SECONDS


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
    :param poll_interval: seconds between reads of MLflow.
    :param mlflow_conn_id: the Airflow connection of the MLflow tracking server.
    :param wake_check_interval: seconds between looks at the webhook deliveries table (None: no
        webhooks, MLflow is polled only).
    :param audit_conn_id: the Airflow connection of the audit database holding that table.
    """

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        deadline: float,
        poll_interval: float,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        wake_check_interval: float | None = None,
        audit_conn_id: str = AUDIT_CONN_ID,
    ) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        if wake_check_interval is not None and wake_check_interval <= 0:
            raise ValueError(f"wake_check_interval must be positive or None, got {wake_check_interval}")
        self.model_name = model_name
        self.version = str(version)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.mlflow_conn_id = mlflow_conn_id
        self.wake_check_interval = None if wake_check_interval is None else float(wake_check_interval)
        self.audit_conn_id = audit_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_name": self.model_name,
                "version": self.version,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "mlflow_conn_id": self.mlflow_conn_id,
                "wake_check_interval": self.wake_check_interval,
                "audit_conn_id": self.audit_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self._client()
        except Exception as exc:  # noqa: BLE001 - the resumed sensor raises the real error
            yield self._event("error", message=f"cannot build an MLflow client: {exc}")
            return
        # Taken before the first read of MLflow: a delivery after it is news to that read.
        wake = await DeliveryWatch.open(self) if self.wake_check_interval else None
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
            if wake is None:
                await asyncio.sleep(min(self.poll_interval, remaining))
            elif await wake.until_news(min(self.poll_interval, remaining)):
                self.log.info("%s v%s: a webhook delivery arrived; reading MLflow now", self.model_name, self.version)

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


class DeliveryWatch:
    """Waits for a new webhook delivery about one version, looking every ``wake_check_interval``.

    ``seen`` is the newest delivery row id already accounted for by a read of MLflow.
    """

    def __init__(self, trigger: ModelVersionApprovalTrigger, deliveries: Any, seen: int) -> None:
        self.trigger = trigger
        self.deliveries = deliveries
        self.seen = seen
        self.failing = False

    @classmethod
    async def open(cls, trigger: ModelVersionApprovalTrigger) -> "DeliveryWatch | None":
        """The watch on the audit database's deliveries table, or None (logged) when it cannot be read."""
        from asgiref.sync import sync_to_async

        try:
            deliveries = await sync_to_async(_deliveries_table)(trigger.audit_conn_id)
            seen = await asyncio.to_thread(deliveries.latest_id, trigger.model_name, trigger.version)
        except Exception as exc:  # noqa: BLE001 - webhooks only speed the wait up; MLflow polling stays
            trigger.log.warning("webhook deliveries cannot be read (%s); polling MLflow every %.0f s only",
                                exc, trigger.poll_interval)
            return None
        return cls(trigger, deliveries, seen)

    async def until_news(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a newer delivery about the version is there."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.trigger.wake_check_interval, left))
            if await self._news():
                return True
        return False

    async def _news(self) -> bool:
        trigger = self.trigger
        try:
            latest = await asyncio.to_thread(self.deliveries.latest_id, trigger.model_name, trigger.version)
        except Exception as exc:  # noqa: BLE001 - as in open(): the MLflow poll still runs
            if not self.failing:
                trigger.log.warning("webhook deliveries cannot be read (%s); MLflow is still polled", exc)
            self.failing = True
            return False
        self.failing = False
        if latest > self.seen:
            self.seen = latest
            return True
        return False


def _deliveries_table(audit_conn_id: str) -> Any:
    """The deliveries table in the audit database of ``audit_conn_id`` (found as tasks find it)."""
    from include.governance.webhooks.deliveries import DeliveryLog
    from mlflow_governance.audit import audit_log

    return DeliveryLog(audit_log(audit_conn_id).engine)


def _read_error(exc: Exception, what: str) -> str:
    """The error event's message: a missing version as such, any other failure as a failed read."""
    from include.governance.registry import VersionNotFound

    return str(exc) if isinstance(exc, VersionNotFound) else f"cannot read {what}: {exc}"
