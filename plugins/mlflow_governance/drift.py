"""The monitor DAG's drift check: the registry compared with the audit trail (``audit verify``).

A change no governed step made (an alias moved or a version deleted in the MLflow UI, an approval
tag edited by hand) fails the task, so Airflow alerts; the error lists every finding and the
command that restores the audited state. Nothing is changed: restoring is a person's decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from mlflow_governance.audit import AUDIT_CONN_ID, audit_log
from mlflow_governance.common import GOVERNANCE_CONN_ID, GovernanceStepMixin
from mlflow_governance.hooks import runs_as_connection_identity

__all__ = ["VerifyAuditTrailOperator", "drift_report", "is_enabled"]


def is_enabled(value: Any) -> bool:
    """A rendered ``check_drift`` (a bool, or its text from a template) as a bool."""
    return str(value).strip().lower() not in ("false", "0", "no", "off", "")


def drift_report(model_name: str, found: Sequence[Any]) -> str:
    """The task's error message: what changed behind the project's back, and how to restore it."""
    lines = [f"{model_name}: {len(found)} change(s) in the registry that no audit event explains:"]
    for drift in found:
        when = drift.last_right_at.isoformat(timespec="seconds") if drift.last_right_at else "never"
        lines.append(f"- {drift.kind}: {drift.describe()} (last right at {when}, {drift.last_event or 'no event'})")
        lines.append(f"  restore: {drift.restore}")
    lines.append(f"Re-check with: python -m include.governance audit verify {model_name}")
    return "\n".join(lines)


class VerifyAuditTrailOperator(GovernanceStepMixin, BaseOperator):
    """Fail when the registry differs from the audit trail for ``model_name``; return the check's result.

    :param model_name: registered model name.
    :param check_drift: False skips the check (the task succeeds and says so).
    :param mlflow_conn_id: the MLflow identity the check reads as.
    :param audit_conn_id: the Airflow connection of the audit database.
    """

    template_fields: Sequence[str] = ("model_name", "check_drift")

    def __init__(
        self,
        *,
        model_name: str,
        check_drift: bool | str = True,
        mlflow_conn_id: str = GOVERNANCE_CONN_ID,
        audit_conn_id: str = AUDIT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        # A drift found stays found on a retry: alert at once.
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.check_drift = check_drift
        self.mlflow_conn_id = mlflow_conn_id
        self.audit_conn_id = audit_conn_id

    @runs_as_connection_identity
    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.drift import verify

        if not is_enabled(self.check_drift):
            self.log.info("check_drift is off: the registry is not compared with the audit trail")
            return {"checked": False, "drift": []}
        found = verify(self.hook.get_conn(), audit_log(self.audit_conn_id), self.model_name)
        if found:
            raise AirflowFailException(drift_report(self.model_name, found))
        self.log.info("%s: no drift, the registry is as the audit trail left it", self.model_name)
        return {"checked": True, "drift": []}
