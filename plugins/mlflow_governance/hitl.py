"""Approval through Airflow's human-in-the-loop page, recorded on the model version.

Airflow's ApprovalOperator waits in ``awaiting_input`` (no worker slot) until someone answers on
the Required Actions page. The answer is written straight to the version's tags with the
responding user as ``approved_by``: the registry, not Airflow's HITL record, holds the decision.
Clearing this task deletes Airflow's record of the response, so on a re-run the operator first
looks at the version and asks again only when no person has decided yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Context, Param
from airflow.sdk.exceptions import AirflowFailException

from mlflow_governance.hooks import GOVERNANCE_CONN_ID, MlflowHook
from mlflow_governance.operators import load_policy
from mlflow_governance.sensors import approval_timeout

HITL_MODE = "hitl"


class ModelVersionHITLApprovalOperator(ApprovalOperator):
    """Ask a person to approve or reject a version in the Airflow UI, and record the answer.

    Does nothing unless ``approval_mode`` is ``hitl`` or when the version already carries a
    decision. A rejection is recorded and the task succeeds: the downstream approval sensor then
    fails the run with who rejected it and why.

    :param model_name: registered model name.
    :param version: the model version.
    :param approval_mode: the run's approval mode; only ``hitl`` asks.
    :param approval_timeout_minutes: how long to wait for an answer before the version expires.
    """

    template_fields: Sequence[str] = (
        "subject",
        "body",
        "model_name",
        "version",
        "approval_mode",
        "approval_timeout_minutes",
        "policy_path",
        "policy_overrides",
    )

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        approval_mode: str,
        approval_timeout_minutes: float | str | None = None,
        policy_path: str | None = None,
        policy_overrides: dict[str, Any] | None = None,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve model {{ params.model_name }} for production?")
        kwargs.setdefault("params", {"notes": Param("", type="string", description="Why (kept on the version).")})
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.approval_mode = approval_mode
        self.approval_timeout_minutes = approval_timeout_minutes
        self.policy_path = policy_path
        self.policy_overrides = policy_overrides
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> Any:
        from include.governance import lifecycle as lc
        from include.governance.approval import read_record
        from include.governance.registry import require_version

        if self.approval_mode != HITL_MODE:
            self.log.info("Approval mode is %r: nothing to ask in Airflow", self.approval_mode)
            return None
        where = f"{self.model_name} v{self.version}"
        mv = require_version(self.hook.get_conn(), self.model_name, self.version)
        record = read_record(mv.tags, where=where)
        if record.status not in lc.AWAITING_DECISION | {lc.ApprovalStatus.EXPIRED}:
            self.log.info("%s already has a decision (%s); not asking again", where, record.status)
            return None
        self.subject = f"Approve {where} for production?"
        self.body = _review_body(where, mv.tags)
        minutes = approval_timeout(self.approval_timeout_minutes)
        if minutes is not None:
            self.response_timeout = timedelta(minutes=minutes)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from include.governance.approval import ApprovalError, expire, record_review

        client = self.hook.get_conn()
        if event.get("error_type") == "timeout":
            expire(client, self.model_name, self.version, waited=f"{self.approval_timeout_minutes} minutes")
            raise AirflowFailException(f"{self.model_name} v{self.version}: no answer before the timeout; expired")
        answer = HITLOperator.execute_complete(self, context, event)
        user = answer["responded_by_user"] or {}
        reviewer = user.get("name") or user.get("id")
        approve = answer["chosen_options"] == [self.APPROVE]
        notes = (answer["params_input"] or {}).get("notes") or None
        policy = load_policy(self.policy_path, self.policy_overrides, "manual")
        try:
            record = record_review(
                client, self.model_name, self.version, approve=approve, reviewer=reviewer, notes=notes, policy=policy.approval
            )
        except ApprovalError as exc:
            raise AirflowFailException(f"Answer not accepted: {exc}") from exc
        self.log.info("%s v%s %s by %s", self.model_name, self.version, record.status.value, reviewer)
        return {"status": record.status.value, "approved_by": reviewer}


def _review_body(where: str, tags: dict[str, str]) -> str:
    """Markdown shown to the reviewer: the evidence the decision rests on."""
    metrics = "\n".join(
        f"| {key.removeprefix('validation_')} | {value} |"
        for key, value in sorted(tags.items())
        if key.startswith("validation_") and key not in {"validation_status", "validation_timestamp", "validation_summary"}
    )
    return (
        f"**{where}** waits for a decision.\n\n"
        f"- validation: {tags.get('validation_status', 'unknown')} ({tags.get('validation_summary', '')})\n"
        f"- approval policy: {tags.get('approval_status', 'unknown')} ({tags.get('approval_reason', '')})\n"
        f"- submitted by: {tags.get('submitted_by', 'unknown')} (who may not approve it)\n\n"
        f"| evidence | value |\n|---|---|\n{metrics}\n"
    )
