"""A sensor that waits for the approval decision recorded on a model version."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from mlflow_governance.common import (
    AUDIT_CONN_ID,
    GOVERNANCE_CONN_ID,
    GovernanceStepMixin,
    approval_timeout,
    default_deferrable,
    load_policy,
)
from mlflow_governance.hooks import runs_as_connection_identity


class ModelVersionApprovalSensor(GovernanceStepMixin, BaseSensorOperator):
    """Wait until a version's ``approval_status`` tag says approved.

    approved -> success (after checking the approver against the policy); rejected -> fail
    without retry, saying who rejected it and why; pending, needs_review or expired -> keep
    waiting. On timeout a version still awaiting a decision is tagged ``expired`` (never
    approved by default) and the task fails; once a reviewer has decided, clearing this task
    resumes the run. Runs in reschedule mode by default, so no worker slot is held while waiting.
    With ``deferrable=True`` it waits in the triggerer instead (``ModelVersionApprovalTrigger``
    reads the tag every ``poke_interval``): no worker slot either, and no worker process started
    per check, so a short interval costs little; the decision is then judged by the same
    ``poke`` in a worker. With MLflow webhooks on (``MOVIE_RECOMMENDER_MLFLOW_WEBHOOKS=on``) the
    trigger wakes when a delivery about the version arrives and reads MLflow only every
    ``MOVIE_RECOMMENDER_WEBHOOK_SAFETY_NET_SECONDS`` (600) besides; reschedule mode is not woken. Every MLflow call runs as ``mlflow_conn_id``'s account.

    A person's decision it sees is appended to the audit trail as ``approved`` or ``rejected``
    (attributed to the reviewer; one row even when the CLI already recorded it), and an expiry
    as ``expired``.

    :param model_name: registered model name.
    :param version: the model version.
    :param approval_timeout_minutes: how long to wait (templated; overrides ``timeout``).
    :param policy_path: a governance policy YAML (the packaged one when empty).
    :param policy_overrides: per-run policy overrides (e.g. an approvers allow-list).
    :param audit_conn_id: the Airflow connection of the audit database.
    :param deferrable: wait in the triggerer instead of rescheduling the task (default: Airflow's
        ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = (
        "model_name",
        "version",
        "approval_timeout_minutes",
        "policy_path",
        "policy_overrides",
    )
    ui_color = "#fff3d6"

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        approval_timeout_minutes: float | str | None = None,
        policy_path: str | None = None,
        policy_overrides: dict[str, Any] | None = None,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        audit_conn_id: str = AUDIT_CONN_ID,
        mode: str = "reschedule",
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(mode=mode, **kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.audit_conn_id = audit_conn_id
        self.model_name = model_name
        self.version = version
        self.approval_timeout_minutes = approval_timeout_minutes
        self.policy_path = policy_path
        self.policy_overrides = policy_overrides
        self.mlflow_conn_id = mlflow_conn_id

    @runs_as_connection_identity
    def execute(self, context: Context) -> Any:
        minutes = approval_timeout(self.approval_timeout_minutes)
        if minutes is not None:
            self.timeout = minutes * 60
        if self.deferrable:
            return self._check_or_defer(context, deadline=time.time() + self.timeout)
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            self._expire(context)
            raise

    @runs_as_connection_identity
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: judge the decision, or wait on until the deadline.

        An ``error`` event (the trigger could not read the version) fails the task with its message.
        """
        if event.get("status") == "error":
            raise AirflowFailException(f"{self.model_name} v{self.version}: {event.get('message') or 'the trigger failed'}")
        return self._check_or_defer(context, deadline=float(event["deadline"]))

    def _check_or_defer(self, context: Context, deadline: float) -> Any:
        """One poke; done -> its XCom, deadline passed -> expire, else hand the wait to the triggerer."""
        checked = self.poke(context)
        if checked:
            return checked.xcom_value
        if time.time() >= deadline:
            self._expire(context)
            raise AirflowSensorTimeout(f"{self.model_name} v{self.version}: no decision within {self.timeout:g} s")
        from mlflow_governance.triggers import ModelVersionApprovalTrigger, approval_wait

        try:
            poll_interval, wake_check_interval = approval_wait(self.poke_interval)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        self.defer(
            trigger=ModelVersionApprovalTrigger(
                model_name=self.model_name,
                version=str(self.version),
                deadline=deadline,
                poll_interval=poll_interval,
                mlflow_conn_id=self.mlflow_conn_id,
                wake_check_interval=wake_check_interval,
                audit_conn_id=self.audit_conn_id,
            ),
            method_name="execute_complete",
        )

    def _expire(self, context: Context) -> None:
        """Tag a version still awaiting a decision ``expired`` and audit it (a decision stays)."""
        from include.governance.steps import expire

        waited = f"{self.timeout / 60:g} minutes"
        client = self.hook.get_conn()
        policy = load_policy(self.policy_path, self.policy_overrides)
        if expire(client, policy, *self.step_args(client, context), self.model_name, self.version, waited=waited):
            self.log.warning("%s v%s expired after %s without a decision", self.model_name, self.version, waited)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from include.governance.approval import ReviewRefused
        from include.governance.lifecycle import ApprovalStatus
        from include.governance.steps import observe_decision

        where = f"{self.model_name} v{self.version}"
        client = self.hook.get_conn()
        policy = load_policy(self.policy_path, self.policy_overrides)
        try:
            record = observe_decision(client, policy, *self.step_args(client, context), self.model_name, self.version)
        except ReviewRefused as refused:
            raise AirflowFailException(f"Decision refused: {refused}") from refused
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        if record.status is None:
            raise AirflowFailException(f"{where} has no approval request (run the approve task first)")
        if record.status is ApprovalStatus.REJECTED:
            who = record.approved_by or "the approval policy"
            notes = f": {record.notes}" if record.notes else ""
            raise AirflowFailException(f"{where} was rejected by {who} ({record.reason}){notes}")
        if record.status is ApprovalStatus.APPROVED:
            self.log.info("%s approved by %s", where, record.approved_by or "policy")
            return PokeReturnValue(
                is_done=True,
                xcom_value={"status": record.status.value, "approved_by": record.approved_by},
            )
        self.log.info("%s is %s; waiting for a reviewer", where, record.status.value)
        return False
