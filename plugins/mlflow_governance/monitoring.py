"""Airflow pieces of champion monitoring: score the champion, pick the branch, trigger a retrain.

The decisions themselves are pure (include/governance/monitoring.py) and their MLflow records
live in include/governance/champion_monitor.py; this module only adapts them to tasks. Kept
free of MLflow and the include/ packages at import time: DAG files import it at parse time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, DagRunTriggerException

from mlflow_governance.common import TRAINING_CONN_ID, load_policy
from mlflow_governance.hooks import MlflowHook

log = logging.getLogger(__name__)

NO_CHAMPION = "no_champion"  # include.governance.monitoring.MonitoringStatus.NO_CHAMPION's value


class ScoreChampionOperator(BaseOperator):
    """Score a model's ``@champion`` on the recent window of a data source; log a monitoring run.

    The data source is read by the retrain DAG's loader, so every source it accepts works here.
    Returns the score (one XCom per key; see ``ChampionScore.as_xcom``), or
    ``{"status": "no_champion", "model_name": ...}`` when the model has none.

    :param model_name: the registered model.
    :param data_source: "synthetic[:...]", a directory, "s3://..." or "postgres://<conn id>[/<prefix>]".
    :param policy_overrides: this run's monitoring overrides (e.g. ``monitor_window_days``).
    :param mlflow_conn_id: the MLflow identity the monitoring run is logged as.
    """

    template_fields: Sequence[str] = ("model_name", "data_source", "policy_overrides")

    def __init__(
        self,
        *,
        model_name: str,
        data_source: str,
        policy_overrides: dict[str, Any] | None = None,
        mlflow_conn_id: str = TRAINING_CONN_ID,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.model_name = model_name
        self.data_source = data_source
        self.policy_overrides = policy_overrides
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from include.governance.champion_monitor import score_champion
        from include.recommender.schema import DataValidationError
        from mlflow_governance.data_sources import load_training_data

        policy = load_policy(None, self.policy_overrides)
        try:
            data = load_training_data(self.data_source)
        except (DataValidationError, ValueError) as exc:
            raise AirflowFailException(f"Bad monitoring data: {exc}") from exc
        # The champion's download (mlflow.artifacts) runs as the connection's account too.
        with self.hook.identity():
            result = score_champion(
                self.hook.get_conn(),
                model_name=self.model_name,
                data=data,
                requested_end=_requested_end(context),
                policy=policy,
                run_tags={
                    "airflow_dag_id": context["dag"].dag_id,
                    "airflow_run_id": context["run_id"],
                    "airflow_try_number": str(context["ti"].try_number),
                },
                artifact_location=self.hook.artifact_location,
            )
        if result is None:
            return {"status": NO_CHAMPION, "model_name": self.model_name}
        return result.as_xcom()


def _requested_end(context: Context) -> datetime:
    """The end of the window to score: the data interval end, else the run's logical date or run_after."""
    return context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after


def choose_after_scoring(
    scored: dict[str, Any],
    policy_overrides: dict[str, Any] | None,
    context: Context,
    *,
    retrain_task_id: str,
    hold_task_id: str,
    mlflow_conn_id: str = TRAINING_CONN_ID,
) -> str:
    """Judge a champion score and return the task id to follow (a branch callable's body).

    Records the verdict on the monitoring run (``judge``); a degraded champion's reason is
    pushed as the ``trigger_reason`` XCom for the retrain's run note.

    :param scored: ``ScoreChampionOperator``'s result.
    :param policy_overrides: this run's monitoring overrides.
    :param context: the task's context.
    :param retrain_task_id: the task that triggers a retrain.
    :param hold_task_id: the task taken when the champion holds or there is nothing to judge.
    :param mlflow_conn_id: the MLflow identity the verdict is recorded as.
    """
    from include.governance.champion_monitor import ChampionScore, judge

    if scored.get("status") == NO_CHAMPION:
        log.info("%s has no @champion: nothing to monitor, no retrain", scored["model_name"])
        return hold_task_id
    policy = load_policy(None, policy_overrides)
    decision = judge(MlflowHook(mlflow_conn_id=mlflow_conn_id).get_conn(), ChampionScore.from_xcom(scored), policy)
    if not decision.degraded:
        return hold_task_id
    reason = f"{scored['model_name']} v{scored['champion_version']} degraded: {decision.reason}"
    context["ti"].xcom_push(key="trigger_reason", value=reason)
    return retrain_task_id


class TriggerRetrainOperator(BaseOperator):
    """Trigger one run of the retrain DAG, with a templated run note.

    Does what the standard TriggerDagRunOperator does in Airflow 3 (raise
    ``DagRunTriggerException``; the task runner asks the API server to create the run) without
    importing that operator's module, which pulls Airflow's core (ORM, API) into every parse of
    the monitor DAG: 0.35 s of the DAG processor's time for a task that rarely runs. The note is
    templated because the reason for a retrain (the monitor's verdict) is known only at run time.

    :param trigger_dag_id: the DAG to run.
    :param trigger_run_id: its run id; with ``skip_when_already_exists`` a retried trigger finds
        the run it made and skips instead of starting a second one.
    :param conf: the run's conf (params the triggered DAG declares).
    :param note: the run note.
    :param skip_when_already_exists: skip, not fail, when the run id exists.
    :param model_name: the model whose degraded champion this retrains; when given, the trigger is
        audited as ``retrain_triggered`` (once per triggered run id) and notified by the policy.
    :param champion_version: the degraded champion's version, for that event.
    :param policy_path: the governance policy whose ``notifications`` route the event (the
        packaged one when empty).
    """

    template_fields: Sequence[str] = (
        "trigger_dag_id", "trigger_run_id", "conf", "note", "model_name", "champion_version", "policy_path",
    )
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        trigger_run_id: str | None = None,
        conf: dict[str, Any] | None = None,
        note: str | None = None,
        skip_when_already_exists: bool = False,
        model_name: str | None = None,
        champion_version: str | None = None,
        policy_path: str | None = None,
        mlflow_conn_id: str = TRAINING_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.champion_version = champion_version
        self.policy_path = policy_path
        self.mlflow_conn_id = mlflow_conn_id
        self.trigger_dag_id = trigger_dag_id
        self.trigger_run_id = trigger_run_id
        self.conf = conf
        self.note = note
        self.skip_when_already_exists = skip_when_already_exists

    def execute(self, context: Context) -> None:
        try:
            json.dumps(self.conf)
        except TypeError as exc:
            raise ValueError(f"conf for {self.trigger_dag_id} is not JSON-serializable: {self.conf!r}") from exc
        now = datetime.now(timezone.utc)
        run_id = self.trigger_run_id or f"manual__{now.isoformat()}"
        self.log.info("Triggering %s run %s", self.trigger_dag_id, run_id)
        if self.model_name:
            self._audit_trigger(context, run_id)
        raise DagRunTriggerException(
            trigger_dag_id=self.trigger_dag_id,
            dag_run_id=run_id,
            conf=self.conf,
            logical_date=now,
            run_after=now,
            reset_dag_run=False,
            skip_when_already_exists=self.skip_when_already_exists,
            wait_for_completion=False,
            allowed_states=[],
            failed_states=[],
            poke_interval=60,
            deferrable=False,
            note=self.note or None,
        )

    def _audit_trigger(self, context: Context, run_id: str) -> None:
        """Record (and so notify) ``retrain_triggered``; a retry re-records the same key: no-op.

        Recorded just before the trigger is handed to the task runner, which creates the run.
        """
        from include.governance.audit import retrain_triggered_event
        from include.governance.steps.recording import record
        from mlflow_governance.audit import audit_context, audit_trail

        event = retrain_triggered_event(
            self.model_name,
            str(self.champion_version or ""),
            audit_context(context),
            reason=self.note or f"{self.model_name}: champion degraded",
            retrain_dag_id=self.trigger_dag_id,
            retrain_run_id=run_id,
        )
        trail = audit_trail(MlflowHook(mlflow_conn_id=self.mlflow_conn_id).get_conn())
        record(trail, event, policy=load_policy(self.policy_path, None))
