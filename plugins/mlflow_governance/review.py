"""The review DAG's step: a person's decision from the Airflow UI, recorded on the version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from mlflow_governance.common import AUDIT_CONN_ID, GOVERNANCE_CONN_ID, GovernanceStepMixin, load_policy
from mlflow_governance.hooks import runs_as_connection_identity

DECISIONS = ("approve", "reject")


class RecordReviewOperator(GovernanceStepMixin, BaseOperator):
    """Record the triggering user's approval or rejection of a version, under every review rule.

    The user who triggered the run is the reviewer (``approved_by``): a run without one (a
    scheduled or anonymous API run) cannot stand for a person's decision and fails. The policy
    is the file's with the overrides the version's run was validated under. A refused decision
    (and a missing version) fails the task without retry; the refusal is audited.

    :param model_name: registered model name.
    :param version: the model version.
    :param decision: ``approve`` or ``reject``.
    :param notes: why (kept on the version as ``approval_notes``).
    :param policy_path: a governance policy YAML (the packaged one when empty).
    :param policy_overrides: overrides on top of the run's (rarely needed).
    """

    template_fields: Sequence[str] = ("model_name", "version", "decision", "notes", "policy_path", "policy_overrides")

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        decision: str,
        notes: str | None = None,
        policy_path: str | None = None,
        policy_overrides: dict[str, Any] | None = None,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        audit_conn_id: str = AUDIT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.decision = decision
        self.notes = notes
        self.policy_path = policy_path
        self.policy_overrides = policy_overrides
        self.mlflow_conn_id = mlflow_conn_id
        self.audit_conn_id = audit_conn_id

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.approval import ApprovalError
        from include.governance.registry import VersionNotFound
        from include.governance.steps import record_review

        if self.decision not in DECISIONS:
            raise AirflowFailException(f"decision {self.decision!r} is not one of {', '.join(DECISIONS)}")
        reviewer = context["dag_run"].triggering_user_name
        if not reviewer:
            raise AirflowFailException("This run has no triggering user; trigger it from the UI or API as yourself")
        client = self.hook.get_conn()
        policy = load_policy(self.policy_path, self.policy_overrides)
        try:
            record = record_review(
                client, policy, *self.step_args(client, context), self.model_name, str(self.version),
                approve=self.decision == "approve", reviewer=reviewer, notes=self.notes or None,
            )
        except (ApprovalError, VersionNotFound) as exc:
            raise AirflowFailException(f"Decision refused: {exc}") from exc
        return {"model_name": self.model_name, "version": str(self.version),
                "status": record.status.value, "approved_by": reviewer}
