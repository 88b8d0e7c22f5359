"""Approval through Airflow's human-in-the-loop page, recorded on the model version.

Airflow's ApprovalOperator waits in ``awaiting_input`` (no worker slot) until someone answers on
the Required Actions page. The answer is written straight to the version's tags with the
responding user as ``approved_by``: the registry, not Airflow's HITL record, holds the decision.
Clearing this task deletes Airflow's record of the response, so on a re-run the operator first
looks at the version and asks again only when no person has decided yet.

An answer the policy refuses (from the submitter, or from someone off the approver allow-list)
records nothing on the version and does not fail the run: it is audited as
``approval_refused`` and the same form opens again, until the original deadline. Airflow keeps a
form's subject and body for the whole try (re-posting the request only clears the answer), so
the body says up front whose answers will be refused and why.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Context, Param
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from include.governance import lifecycle as lc
from mlflow_governance.common import AUDIT_CONN_ID, GOVERNANCE_CONN_ID, GovernanceStepMixin, approval_timeout, load_policy

if TYPE_CHECKING:
    from include.governance.policy import ApprovalPolicy

HITL_MODE = "hitl"
# Auth managers whose user ids are the user names the policy's allow-list holds, so the form
# can be assigned to those users (FAB's ids are numbers: there the policy refuses others' answers).
AUTH_MANAGERS_WITH_NAME_IDS = ("airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",)


class ModelVersionHITLApprovalOperator(GovernanceStepMixin, HITLOperator):
    """Ask a person to approve or reject a version in the Airflow UI, and record the answer.

    Does nothing unless ``approval_mode`` is ``hitl`` or when the version already carries a
    decision. A rejection is recorded and the task succeeds: the downstream approval sensor then
    fails the run with who rejected it and why. An answer the policy refuses is audited and
    asked again; where the policy names approvers, the form is assigned to them.

    :param model_name: registered model name.
    :param version: the model version.
    :param approval_mode: the run's approval mode; only ``hitl`` asks.
    :param approval_timeout_minutes: how long to wait for an answer before the version expires.
    :param policy_path: a governance policy YAML (the packaged one when empty).
    :param policy_overrides: per-run policy overrides (e.g. an approvers allow-list).
    :param audit_conn_id: the Airflow connection of the audit database.
    """

    # Approve or reject, as Airflow's ApprovalOperator asks; unlike it, a rejection skips nothing
    # downstream: the approval sensor must see it and fail the run with who rejected and why.
    APPROVE = "Approve"
    REJECT = "Reject"

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
        audit_conn_id: str = AUDIT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve model {{ params.model_name }} for production?")
        kwargs.setdefault("params", {"notes": Param("", type="string", description="Why (kept on the version).")})
        super().__init__(options=[self.APPROVE, self.REJECT], multiple=False, **kwargs)
        self.model_name = model_name
        self.version = version
        self.approval_mode = approval_mode
        self.approval_timeout_minutes = approval_timeout_minutes
        self.policy_path = policy_path
        self.policy_overrides = policy_overrides
        self.mlflow_conn_id = mlflow_conn_id
        self.audit_conn_id = audit_conn_id

    @property
    def where(self) -> str:
        return f"{self.model_name} v{self.version}"

    def execute(self, context: Context) -> Any:
        from include.governance.approval import read_record
        from include.governance.registry import require_version

        if self.approval_mode != HITL_MODE:
            self.log.info("Approval mode is %r: nothing to ask in Airflow", self.approval_mode)
            return None
        mv = require_version(self.hook.get_conn(), self.model_name, self.version)
        record = read_record(mv.tags, where=self.where)
        if record.status not in lc.AWAITING_DECISION | {lc.ApprovalStatus.EXPIRED}:
            self.log.info("%s already has a decision (%s); not asking again", self.where, record.status)
            return None
        self._prepare_form(mv.tags)
        minutes = approval_timeout(self.approval_timeout_minutes)
        deadline = None
        if minutes is not None:
            self.response_timeout = timedelta(minutes=minutes)
            deadline = time.time() + minutes * 60
        try:
            return super().execute(context)
        except TaskAwaitingInput as awaiting:
            # The deadline travels with the wait, so asking again after a refused answer keeps it.
            awaiting.kwargs = {**(awaiting.kwargs or {}), "deadline": deadline}
            raise

    def execute_complete(self, context: Context, event: dict[str, Any], deadline: float | None = None) -> Any:
        from include.governance.approval import AlreadyDecided, ApprovalError, ReviewerRefused
        from include.governance.steps import record_review

        client = self.hook.get_conn()
        if event.get("error_type") == "timeout":
            return self._timed_out(client, context)
        answer = super().execute_complete(context, event)
        user = answer["responded_by_user"] or {}
        reviewer = user.get("name") or user.get("id")
        approve = answer["chosen_options"] == [self.APPROVE]
        try:
            record = record_review(
                client, self.policy, *self.step_args(client, context), self.model_name, self.version,
                approve=approve, reviewer=reviewer, notes=(answer["params_input"] or {}).get("notes") or None,
                answered_at=_iso(answer["responded_at"]),
            )
        except ReviewerRefused as refused:
            # Someone else may still answer: the same form again (the refusal is audited).
            self.log.warning("Decision refused: %s; asking again", refused)
            return self._ask_again(client, context, deadline)
        except AlreadyDecided as refused:
            # Another channel decided first: that decision stands and the sensor judges it.
            self.log.warning("Decision refused: %s", refused)
            return None
        except ApprovalError as exc:
            raise AirflowFailException(f"Decision refused: {exc}") from exc
        self.log.info("%s %s by %s", self.where, record.status.value, reviewer)
        return {"status": record.status.value, "approved_by": reviewer}

    @cached_property
    def policy(self):
        """The run's policy (a person decides here whatever the approval mode says)."""
        return load_policy(self.policy_path, self.policy_overrides, "manual")

    @property
    def approval_policy(self) -> "ApprovalPolicy":
        return self.policy.approval

    def _prepare_form(self, tags: dict[str, str]) -> None:
        """Subject, body and assignees of the request, from the version's tags and the policy."""
        from airflow.sdk.configuration import conf


        self.subject = f"Approve {self.where} for production?"
        policy = self.approval_policy
        self.body = _review_body(self.where, tags, _refusal_rules(tags.get(lc.SUBMITTED_BY), policy))
        if policy.approvers:
            auth_manager = conf.get("core", "auth_manager")
            if auth_manager in AUTH_MANAGERS_WITH_NAME_IDS:
                self.assigned_users = [{"id": name, "name": name} for name in policy.approvers]
            else:
                self.log.info("%s identifies users by id, not by name: the form is not assigned to %s", auth_manager, policy.approvers)

    def _ask_again(self, client: Any, context: Context, deadline: float | None) -> Any:
        """Open the same form again (its answer cleared) until the first ask's deadline."""
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        remaining = None if deadline is None else deadline - time.time()
        if remaining is not None and remaining <= 0:
            return self._timed_out(client, context)
        mv = client.get_model_version(self.model_name, str(self.version))
        if self._decided_elsewhere(mv.tags):
            return None
        self._prepare_form(mv.tags)
        # An existing request keeps its subject and body; posting it again clears the answer.
        upsert_hitl_detail(
            ti_id=context["task_instance"].id,
            options=self.options,
            subject=self.subject,
            body=self.body,
            defaults=self.defaults,
            multiple=self.multiple,
            params=self.serialized_params,
            assigned_users=self.assigned_users,
        )
        raise TaskAwaitingInput(
            method_name="execute_complete",
            kwargs={"deadline": deadline},
            timeout=None if remaining is None else timedelta(seconds=remaining),
        )

    def _timed_out(self, client: Any, context: Context) -> None:
        """No accepted answer before the deadline: expire the version and fail.

        A decision that reached the version through another channel meanwhile stands: the task
        then ends quietly and the approval sensor judges that decision.
        """
        from include.governance.steps import expire

        waited = f"{self.approval_timeout_minutes} minutes"
        expired = expire(client, self.policy, *self.step_args(client, context), self.model_name, self.version, waited=waited)
        if not expired and self._decided_elsewhere(client.get_model_version(self.model_name, str(self.version)).tags):
            return None
        raise AirflowFailException(f"{self.where}: no accepted answer before the timeout; expired")

    def _decided_elsewhere(self, tags: dict[str, str]) -> bool:
        """Whether the version carries a decision (approved or rejected) made outside this form."""
        from include.governance.approval import read_record
        from include.governance.lifecycle import ApprovalStatus

        record = read_record(tags, where=self.where)
        if record.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
            self.log.info("%s was %s meanwhile (by %s); not asking again", self.where, record.status.value, record.approved_by or "the policy")
            return True
        return False



def _iso(value: Any) -> str:
    """An answer's time as ISO 8601 (Airflow hands a datetime; a serialized event, a string)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _refusal_rules(submitted_by: str | None, policy: "ApprovalPolicy") -> list[str]:
    """Whose answers the policy will refuse, in the words of the refusal (``reviewer_problem``)."""
    from include.governance.approval import ApprovalRecord, reviewer_problem
    from include.governance.lifecycle import ApprovalStatus

    rules = []
    if submitted_by:
        as_submitter = ApprovalRecord(ApprovalStatus.APPROVED, "", submitted_by, None, submitted_by)
        if policy.require_distinct_approver and (problem := reviewer_problem(as_submitter, policy)):
            rules.append(problem)
    if policy.approvers:
        rules.append(f"only {', '.join(policy.approvers)} may answer (the policy's approvers)")
    return rules


def _submitter_note(note: str | None) -> str:
    """The submitter's note as a Markdown quote (each line quoted, so it cannot end the block)."""
    if not note:
        return ""
    quoted = "\n".join(f"> {line}" for line in note.splitlines())
    return f"**Submitter's note:**\n\n{quoted}\n\n"


def _review_body(where: str, tags: dict[str, str], refusal_rules: Sequence[str] = ()) -> str:
    """Markdown shown to the reviewer: the evidence the decision rests on, and who may decide."""
    metrics = "\n".join(
        f"| {key.removeprefix(lc.VALIDATION_METRIC_PREFIX)} | {value} |"
        for key, value in sorted(tags.items())
        if key.startswith(lc.VALIDATION_METRIC_PREFIX)
        and key not in {lc.VALIDATION_STATUS, lc.VALIDATION_TIMESTAMP, lc.VALIDATION_SUMMARY}
    )
    refusals = ""
    if refusal_rules:
        refusals = (
            "**Answers the policy refuses** (nothing is recorded, the refusal is audited and this form "
            "opens again):\n\n" + "\n".join(f"- {rule}" for rule in refusal_rules) + "\n\n"
        )
    return (
        f"**{where}** waits for a decision.\n\n"
        f"- validation: {tags.get(lc.VALIDATION_STATUS, 'unknown')} ({tags.get(lc.VALIDATION_SUMMARY, '')})\n"
        f"- approval policy: {tags.get(lc.APPROVAL_STATUS, 'unknown')} ({tags.get(lc.APPROVAL_REASON, '')})\n"
        f"- submitted by: {tags.get(lc.SUBMITTED_BY, 'unknown')}\n\n"
        f"{_submitter_note(tags.get(lc.SUBMISSION_NOTES))}"
        f"{refusals}"
        f"| evidence | value |\n|---|---|\n{metrics}\n"
    )
