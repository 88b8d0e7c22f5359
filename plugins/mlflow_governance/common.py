"""What the governance operators, the sensor and the HITL operator share: connection ids, the
promotion pool, the policy with a run's overrides, and the approval timeout.

Kept free of MLflow and of the include/ packages at import time: DAG files import operators at
parse time.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from mlflow_governance.audit import AUDIT_CONN_ID
from mlflow_governance.hooks import GOVERNANCE_CONN_ID, MlflowHook

# Every DAG's task defaults but the review DAG's (a reviewer's decision is never retried).
DEFAULT_TASK_ARGS = {"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30)}

__all__ = [
    "AUDIT_CONN_ID",
    "GOVERNANCE_CONN_ID",
    "PROMOTION_POOL",
    "TRAINING_CONN_ID",
    "GovernanceStepMixin",
    "approval_timeout",
    "default_deferrable",
    "load_policy",
]

TRAINING_CONN_ID = MlflowHook.default_conn_name

# Moves of @champion run one at a time across all DAG runs (promote and rollback). The pool must
# exist where the scheduler runs: `airflow pools set model_promotion 1 ...` (make airflow-ui,
# scripts/demo.py and docker/airflow/init.sh create it); tasks in a missing pool never start.
PROMOTION_POOL = "model_promotion"


def load_policy(policy_path: str | None, overrides: dict[str, Any] | None, approval_mode: str | None = None):
    """The governance policy with this run's overrides applied (errors fail the task for good).

    :param policy_path: a governance policy YAML (the packaged one when empty).
    :param overrides: per-run overrides; None values are ignored.
    :param approval_mode: the run's approval mode, written over the policy's ``mode``.
    """
    from include.governance.policy import GovernancePolicy, PolicyError

    merged = dict(overrides or {})
    if approval_mode:
        merged["mode"] = approval_mode
    try:
        return GovernancePolicy.load(policy_path or None).with_overrides(merged)
    except PolicyError as exc:
        raise AirflowFailException(f"Invalid governance policy: {exc}") from exc


def approval_timeout(value: float | str | None) -> float | None:
    """Minutes from a rendered ``approval_timeout_minutes`` (None when unset); bad values fail the task."""
    if value in (None, ""):
        return None
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise AirflowFailException(f"approval_timeout_minutes={value!r} is not a number") from None
    if minutes <= 0:
        raise AirflowFailException(f"approval_timeout_minutes must be positive, got {minutes}")
    return minutes


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable``, the default of every deferrable operator."""
    from airflow.sdk.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class GovernanceStepMixin:
    """The plumbing every governance task shares: its MLflow hook, and what a step takes.

    The class sets ``mlflow_conn_id`` and ``audit_conn_id``; the hook is built on first use, in
    ``execute``, never at parse time.
    """

    mlflow_conn_id: str
    audit_conn_id: str
    task_id: str

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def step_args(self, client: Any, context: Any, actor: str | None = None) -> tuple[Any, Any]:
        """The audit trail and the actor a governance step takes: this task, its run and its user.

        :param actor: who acts when not the run's triggering user (e.g. a rollback's named actor).
        """
        from dataclasses import replace

        from mlflow_governance.audit import audit_context, audit_trail

        who = audit_context(context, self.task_id)
        return audit_trail(client, self.audit_conn_id), replace(who, actor=actor) if actor else who
