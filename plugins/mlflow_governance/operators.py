"""Operators that wrap MLflow Model Registry steps of the lifecycle.

Every operator takes keyword-only arguments, templates its identifiers (so XComArgs and Jinja
resolve at run time) and builds its client in ``execute``. Refusals that a retry cannot fix
(a rejected or stale version) raise ``AirflowFailException`` so the task fails without retrying.

Each step appends its governance events to the audit trail (``mlflow_governance.audit``) after
the registry change, keyed by the registry state it left: a retry that finds the work done
records nothing twice, and one that follows a crash before the audit fills the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from mlflow_governance.audit import AUDIT_CONN_ID, audit_context, audit_trail
from mlflow_governance.common import PROMOTION_POOL, GovernanceStepMixin, load_policy
from mlflow_governance.hooks import GOVERNANCE_CONN_ID, MlflowHook, runs_as_connection_identity

__all__ = [
    "PROMOTION_POOL",
    "load_policy",
    "PlanRollbackOperator",
    "PromoteModelVersionOperator",
    "RegisterModelVersionOperator",
    "RequestApprovalOperator",
    "RollbackModelOperator",
    "ValidateModelVersionOperator",
]


class _MlflowRegistryOperator(GovernanceStepMixin, BaseOperator):
    """Shared plumbing: the connection id, a lazily built hook, and per-key XComs.

    Results are small dicts pushed one key per XCom as well, so downstream tasks can take
    ``register.output["version"]``. Each ``execute`` runs as the step's MLflow connection
    (``runs_as_connection_identity``).

    :param mlflow_conn_id: the MLflow identity (connection) the step acts as; by default the
        training account for registration and the governance account for the steps that write
        verdicts and decisions or move aliases (``default_mlflow_conn_id``).
    :param audit_conn_id: the Airflow connection of the audit database (see ``audit.py``).
    """

    default_mlflow_conn_id = MlflowHook.default_conn_name

    def __init__(
        self,
        *,
        model_name: str,
        mlflow_conn_id: str | None = None,
        audit_conn_id: str = AUDIT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.mlflow_conn_id = mlflow_conn_id or self.default_mlflow_conn_id
        self.audit_conn_id = audit_conn_id

    def audit(self, client: Any, context: Context, build: Any) -> None:
        """Record the events ``build(audit_context)`` returns (none when it returns nothing)."""
        events = build(audit_context(context, self.task_id))
        if events:
            audit_trail(client, self.audit_conn_id).record(*events)


class RegisterModelVersionOperator(_MlflowRegistryOperator):
    """Register a run's model as a new version, or find the version a previous try made.

    :param model_name: registered model name.
    :param run_id: the MLflow run the model was logged in.
    :param model_uri: the logged model's URI (``models:/m-...`` or ``runs:/<run_id>/model``).
    :param data_fingerprint: fingerprint of the training data, written as a lineage tag.
    :param submitted_by: who submitted the model (the DAG run's triggering user by default).
    :param submission_notes: the submitter's note: after the description's "Trained by" line, and
        as the ``submission_notes`` tag (kept when the description is later rewritten).
    """

    template_fields: Sequence[str] = (
        "model_name", "run_id", "model_uri", "data_fingerprint", "submitted_by", "submission_notes",
    )

    def __init__(
        self,
        *,
        run_id: str,
        model_uri: str,
        data_fingerprint: str,
        submitted_by: str = "{{ dag_run.triggering_user_name or 'airflow' }}",
        submission_notes: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.model_uri = model_uri
        self.data_fingerprint = data_fingerprint
        self.submitted_by = submitted_by
        self.submission_notes = submission_notes

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance import lifecycle as lc
        from include.governance.names import InvalidName
        from include.governance.registry import RegistrationRefused, register_version

        tags = {
            lc.SUBMITTED_BY: self.submitted_by or "airflow",
            lc.AIRFLOW_DAG_ID: context["dag"].dag_id,
            lc.AIRFLOW_RUN_ID: context["run_id"],
            lc.DATA_FINGERPRINT: self.data_fingerprint,
        }
        description = f"Trained by Airflow DAG {context['dag'].dag_id}, run {context['run_id']}"
        # Native rendering turns a note such as "42" into a number: the note is text.
        note = str(self.submission_notes).strip() if self.submission_notes is not None else ""
        if note:
            tags[lc.SUBMISSION_NOTES] = note
            description += f"\n\nSubmitter's note: {note}"
        client = self.hook.get_conn()
        try:
            version, created = register_version(
                client,
                model_name=self.model_name,
                model_uri=self.model_uri,
                run_id=self.run_id,
                tags=tags,
                description=description,
            )
        except (InvalidName, RegistrationRefused) as exc:
            # Bad input, not a fault: a retry would be refused the same way.
            raise AirflowFailException(f"Registration refused: {exc}") from exc
        self.log.info("%s %s v%s", "Registered" if created else "Found", self.model_name, version.version)
        from include.governance.audit import registered_event

        self.audit(client, context, lambda ctx: [registered_event(version, ctx)])
        return {"model_name": self.model_name, "version": str(version.version), "created": created}


class _VersionPolicyOperator(_MlflowRegistryOperator):
    """An operator acting on one version under the governance policy (with run overrides).

    It acts as the governance account (``mlflow_governance``, falling back to ``mlflow_default``).

    :param version: the model version.
    :param policy_path: a governance policy YAML (the packaged one when empty).
    :param policy_overrides: per-run policy overrides, e.g. ``{"min_accuracy": 0.8}``.
    """

    template_fields: Sequence[str] = ("model_name", "version", "policy_path", "policy_overrides")
    default_mlflow_conn_id = GOVERNANCE_CONN_ID

    def __init__(
        self,
        *,
        version: str,
        policy_path: str | None = None,
        policy_overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.policy_path = policy_path
        self.policy_overrides = policy_overrides


class ValidateModelVersionOperator(_VersionPolicyOperator):
    """Run the policy's quality gates on a version and record the verdict on it.

    A failed validation is a verdict, not a task failure: it is tagged on the version and the
    approval step rejects it.

    :param version: the model version to validate.
    :param policy_path: a governance policy YAML (the packaged one when empty).
    :param policy_overrides: per-run threshold overrides, e.g. ``{"min_accuracy": 0.8}``.
    """

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.steps import validate

        policy = load_policy(self.policy_path, self.policy_overrides)
        client = self.hook.get_conn()
        outcome = validate(client, policy, *self.step_args(client, context), self.model_name, self.version)
        if outcome.passed:
            self.log.info("%s v%s passed validation", self.model_name, outcome.version)
        else:
            self.log.warning("%s v%s failed validation: %s", self.model_name, outcome.version, outcome.summary)
        return outcome.as_xcom()


class RequestApprovalOperator(_VersionPolicyOperator):
    """Apply the approval policy to a validated version and record the decision on it.

    Approved and pending decisions succeed (the sensor then waits for a person where needed);
    a rejection fails the task without retry, with the reason.

    :param version: the model version.
    :param approval_mode: ``auto`` (the policy decides) or ``manual`` (a person must approve).
    """

    template_fields: Sequence[str] = (*_VersionPolicyOperator.template_fields, "approval_mode")

    def __init__(self, *, approval_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.approval_mode = approval_mode

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.approval import ApprovalError
        from include.governance.lifecycle import ApprovalStatus
        from include.governance.steps import request_approval

        policy = load_policy(self.policy_path, self.policy_overrides, self.approval_mode)
        client = self.hook.get_conn()
        try:
            decision = request_approval(client, policy, *self.step_args(client, context), self.model_name, self.version)
        except ApprovalError as exc:
            raise AirflowFailException(str(exc)) from exc
        if decision.status is ApprovalStatus.REJECTED:
            raise AirflowFailException(f"{self.model_name} v{self.version} rejected: {decision.reason}")
        self.log.info("%s v%s: %s (%s)", self.model_name, self.version, decision.status.value, decision.reason)
        return {"model_name": self.model_name, "version": str(self.version), "status": decision.status.value, "reason": decision.reason}


class PromoteModelVersionOperator(_VersionPolicyOperator):
    """Move ``@champion`` to an approved, validated ``@challenger`` and read it back.

    Refuses (without retry) a version that is not approved, not validated, or no longer the
    candidate; the champion is then left where it was.

    :param version: the model version to promote.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("pool", PROMOTION_POOL)
        super().__init__(**kwargs)

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.promotion import PromotionRefused
        from include.governance.steps import promote

        policy = load_policy(self.policy_path, self.policy_overrides)
        client = self.hook.get_conn()
        try:
            result = promote(client, policy, *self.step_args(client, context), self.model_name, self.version)
        except PromotionRefused as exc:
            raise AirflowFailException(f"Promotion refused: {exc}") from exc
        return result.as_xcom()


class PlanRollbackOperator(_MlflowRegistryOperator):
    """Resolve and check a rollback of ``@champion`` without changing anything.

    Fails without retry when there is nothing to roll back to or the target does not qualify
    (it must have passed validation and approval and served as champion before).

    :param to_version: the version to restore; empty or None means ``@previous_champion``.
    """

    template_fields: Sequence[str] = ("model_name", "to_version")
    default_mlflow_conn_id = GOVERNANCE_CONN_ID

    def __init__(self, *, to_version: str | int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.to_version = to_version

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.registry import VersionNotFound
        from include.governance.rollback import RollbackRefused
        from include.governance.steps import plan_rollback

        target = None if self.to_version in (None, "") else str(self.to_version)
        try:
            plan = plan_rollback(self.hook.get_conn(), self.model_name, target)
        except (RollbackRefused, VersionNotFound) as exc:
            raise AirflowFailException(f"Rollback refused: {exc}") from exc
        self.log.info("Rollback of %s planned: v%s -> v%s", self.model_name, plan.current_champion, plan.target)
        return plan.as_xcom()


class RollbackModelOperator(_MlflowRegistryOperator):
    """Move ``@champion`` back to the planned version and record ``rolled_back`` and ``archived``.

    Takes the plan's versions, not the aliases, so a retry after the move changes nothing
    (``@previous_champion`` then points at the version rolled back from).

    :param to_version: the version to restore (the plan's ``target``).
    :param expected_champion: the champion when planned (the plan's ``current_champion``).
    :param from_alias: the alias the target held when planned (the plan's ``from_alias``).
    :param reason: why (required).
    :param actor: who rolls back (the DAG run's triggering user by default).
    """

    template_fields: Sequence[str] = ("model_name", "to_version", "expected_champion", "from_alias", "reason", "actor")
    default_mlflow_conn_id = GOVERNANCE_CONN_ID

    def __init__(
        self,
        *,
        to_version: str,
        expected_champion: str,
        reason: str,
        from_alias: str | None = None,
        actor: str = "{{ dag_run.triggering_user_name or 'airflow' }}",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("pool", PROMOTION_POOL)
        super().__init__(**kwargs)
        self.to_version = to_version
        self.expected_champion = expected_champion
        self.from_alias = from_alias
        self.reason = reason
        self.actor = actor

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.rollback import RollbackPlan, RollbackRefused
        from include.governance.steps import rollback

        client = self.hook.get_conn()
        plan = RollbackPlan(
            self.model_name,
            str(self.to_version),
            str(self.expected_champion),
            self.from_alias or None,
        )
        try:
            result = rollback(client, None, *self.step_args(client, context, self.actor or "airflow"), plan, reason=self.reason)
        except RollbackRefused as exc:
            raise AirflowFailException(f"Rollback refused: {exc}") from exc
        return result.as_xcom()
