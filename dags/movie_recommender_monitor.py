"""
### Monitor the movie recommender's champion and retrain it when it degrades

`score_champion -> assess -> trigger_retrain | no_retrain`

Every run scores the current `@champion` of `model_name` on the most recent window of ratings
from `data_source`: the ratings in `[end - window_days, end)`, where `end` is the run's data
interval end. When the data stops before that instant (the embedded synthetic data spans
2024-01-01..2025-12-31; a real feed whose ingest stopped), the window ends just after the
latest rating instead, so the monitor still judges the champion on the freshest data there is;
the MLflow run records this (`window_anchor=latest_rating`, metric `data_staleness_days`).

The metrics (accuracy, precision, recall, f1_score, roc_auc, rating count) are logged to a run
of the MLflow experiment `movie_recommendation_monitoring`, tagged with the champion's version.

**Degraded** means: a metric falls below the governance policy's validation minimum, or more
than `margin` below the champion's own validation metric (its `validation_<metric>` tags).
Then `trigger_retrain` starts `movie_recommender_retrain` for the same model and data source;
the reason is on the monitoring run (tag `trigger_reason`) and in the triggered run's note.
A champion that holds, a window with too few ratings, or no champion at all: `no_retrain`.
A paused retrain DAG keeps the triggered run queued until it is unpaused.

**Params**: `model_name`, `data_source` (as in the retrain DAG), `window_days` and `margin`
(empty: the policy file's `monitor_window_days` and `monitor_max_drift`).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag, task

from mlflow_governance.monitoring import TriggerRetrainOperator

log = logging.getLogger(__name__)

# Read at parse time from the environment only (no DB, no network).
SCHEDULE = os.environ.get("MOVIE_RECOMMENDER_MONITOR_SCHEDULE", "@daily")
RETRAIN_DAG_ID = "movie_recommender_retrain"
# The same rule as the retrain DAG's model_name param: what this DAG passes on must be valid there.
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]{0,127}$"

PARAMS = {
    "model_name": Param("movie_recommender", type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model whose @champion is monitored."),
    "data_source": Param("synthetic", type="string", minLength=1,
                         description="Where the recent ratings come from: 'synthetic', "
                                     "'synthetic:n_ratings=20000,seed=7', or a MovieLens directory."),
    "window_days": Param(None, type=["null", "integer"], minimum=1, maximum=3650,
                         description="Days of ratings to score (empty: the policy's monitor_window_days)."),
    "margin": Param(None, type=["null", "number"], minimum=0, maximum=1,
                    description="Allowed drop below the champion's validation metrics "
                                "(empty: the policy's monitor_max_drift)."),
}


@dag(
    dag_id="movie_recommender_monitor",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["mlflow", "model-registry", "recommender", "monitoring"],
)
def movie_recommender_monitor():
    @task
    def score_champion() -> dict:
        """Score @champion on the recent window and log the metrics to a monitoring run."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.governance.champion_monitor import score_champion as score
        from include.governance.monitoring import MonitoringStatus
        from include.recommender.loading import load_movielens
        from include.recommender.schema import DataValidationError
        from mlflow_governance.hooks import MlflowHook
        from mlflow_governance.operators import load_policy

        context = get_current_context()
        params = context["params"]
        policy = load_policy(None, _overrides(params))
        try:
            data = load_movielens(params["data_source"])
        except (DataValidationError, ValueError) as exc:
            raise AirflowFailException(f"Bad monitoring data: {exc}") from exc
        hook = MlflowHook()
        requested_end = context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after
        # The champion's download (mlflow.artifacts) runs as the connection's account too.
        with hook.identity():
            result = score(
                hook.get_conn(),
                model_name=params["model_name"],
                data=data,
                requested_end=requested_end,
                policy=policy,
                run_tags={
                    "airflow_dag_id": context["dag"].dag_id,
                    "airflow_run_id": context["run_id"],
                    "airflow_try_number": str(context["ti"].try_number),
                },
                artifact_location=hook.artifact_location,
            )
        if result is None:
            return {"status": MonitoringStatus.NO_CHAMPION.value, "model_name": params["model_name"]}
        return result.as_xcom()

    @task.branch
    def assess(scored: dict) -> str:
        """Decide whether the champion degraded; record the verdict; pick the next task."""
        from airflow.sdk import get_current_context

        from include.governance.champion_monitor import ChampionScore, judge
        from include.governance.monitoring import MonitoringStatus
        from mlflow_governance.hooks import MlflowHook
        from mlflow_governance.operators import load_policy

        context = get_current_context()
        if scored.get("status") == MonitoringStatus.NO_CHAMPION.value:
            log.info("%s has no @champion: nothing to monitor, no retrain", scored["model_name"])
            return "no_retrain"
        policy = load_policy(None, _overrides(context["params"]))
        decision = judge(MlflowHook().get_conn(), ChampionScore.from_xcom(scored), policy)
        if decision.degraded:
            context["ti"].xcom_push(
                key="trigger_reason",
                value=f"{scored['model_name']} v{scored['champion_version']} degraded: {decision.reason}",
            )
            return "trigger_retrain"
        return "no_retrain"

    trigger_retrain = TriggerRetrainOperator(
        task_id="trigger_retrain",
        trigger_dag_id=RETRAIN_DAG_ID,
        # One retrain per monitor run: a retried trigger finds its run and skips.
        trigger_run_id="monitor__{{ run_id }}",
        skip_when_already_exists=True,
        # Only params the retrain DAG declares (they are validated); the reason goes in the note.
        conf={"model_name": "{{ params.model_name }}", "data_source": "{{ params.data_source }}"},
        note="{{ ti.xcom_pull(task_ids='assess', key='trigger_reason') }}",
    )
    no_retrain = EmptyOperator(task_id="no_retrain")

    assess(score_champion()) >> [trigger_retrain, no_retrain]


def _overrides(params) -> dict:
    """This run's policy overrides from the params (unset ones are None and ignored)."""
    return {"monitor_window_days": params.get("window_days"), "monitor_max_drift": params.get("margin")}


movie_recommender_monitor()
