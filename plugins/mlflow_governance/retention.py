"""The retention DAG's step: keep the last N archived versions, delete older ones (guarded)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from mlflow_governance.audit import AUDIT_CONN_ID
from mlflow_governance.common import GOVERNANCE_CONN_ID, GovernanceStepMixin, load_policy
from mlflow_governance.hooks import runs_as_connection_identity

log = logging.getLogger(__name__)


def parse_keep(value: Any) -> int:
    """A rendered ``keep`` as a count >= 0; anything else fails the task for good."""
    try:
        keep = int(str(value).strip())
    except (TypeError, ValueError):
        raise AirflowFailException(f"keep={value!r} is not a whole number of archived versions") from None
    if keep < 0:
        raise AirflowFailException(f"keep must be 0 or more, got {keep}")
    return keep


class ApplyRetentionOperator(GovernanceStepMixin, BaseOperator):
    """Delete the archived versions of a model older than the last ``keep``, one by one, through
    the guarded delete step (audited with their evidence; never a version holding a governance
    alias or awaiting a decision: those the guard refuses are logged and kept, the task succeeds).

    :param model_name: registered model name.
    :param keep: archived versions to keep (newest archived first).
    :param dry_run: only plan; return what would be deleted.
    :param policy_path: a governance policy YAML (the packaged one when empty).
    """

    template_fields: Sequence[str] = ("model_name", "keep", "dry_run", "policy_path")

    def __init__(
        self,
        *,
        model_name: str,
        keep: int | str,
        dry_run: bool | str = False,
        policy_path: str | None = None,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        audit_conn_id: str = AUDIT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.keep = keep
        self.dry_run = dry_run
        self.policy_path = policy_path
        self.mlflow_conn_id = mlflow_conn_id
        self.audit_conn_id = audit_conn_id

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.names import InvalidName
        from include.governance.retention import apply_retention, plan_retention

        keep = parse_keep(self.keep)
        client = self.hook.get_conn()
        try:
            plan = plan_retention(client, self.model_name, keep)
        except InvalidName as exc:
            raise AirflowFailException(str(exc)) from exc
        log.info("%s: keep %s, delete %s, protected %s", self.model_name, plan.kept, plan.to_delete, plan.protected)
        if str(self.dry_run).strip().lower() in ("true", "1", "yes"):
            return {**plan.as_dict(), "dry_run": True}
        policy = load_policy(self.policy_path, None)
        trail, actor = self.step_args(client, context)
        result = apply_retention(client, policy, trail, actor, plan)
        for version, why in result.refused.items():
            log.warning("kept v%s: %s", version, why)
        return result.as_dict()
