"""
### Monitor the movie recommender's champion and retrain it when it degrades

`score_champion -> assess -> trigger_retrain | no_retrain`, and beside them `verify_audit_trail`

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
the reason is on the monitoring run (tag `trigger_reason`), in the triggered run's note and in
the audit trail (`retrain_triggered`, notified when the policy's `notifications:` routes it).
A champion that holds, a window with too few ratings, or no champion at all: `no_retrain`.
A paused retrain DAG keeps the triggered run queued until it is unpaused.

**Out-of-band changes**: `verify_audit_trail` compares the model's registry entries with the
audit trail (as `python -m include.governance audit verify MODEL` does) and fails, so Airflow
alerts, when an alias moved, a version was deleted or a governance tag changed without an audit
event; its error lists each change and the command that restores the audited state. It has no
upstream or downstream task: scoring and retraining run whatever it finds.

**Params**: `model_name`, `data_source` (as in the retrain DAG), `window_days` and `margin`
(empty: the policy file's `monitor_window_days` and `monitor_max_drift`), `check_drift` (false:
skip the audit-trail comparison).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag, task

from include.governance.lifecycle import MODEL_NAME_PATTERN
from mlflow_governance.common import DEFAULT_TASK_ARGS
from mlflow_governance.drift import VerifyAuditTrailOperator
from mlflow_governance.monitoring import ScoreChampionOperator, TriggerRetrainOperator, choose_after_scoring

# Read at parse time from the environment only (no DB, no network).
SCHEDULE = os.environ.get("MOVIE_RECOMMENDER_MONITOR_SCHEDULE", "@daily")
RETRAIN_DAG_ID = "movie_recommender_retrain"

PARAMS = {
    "model_name": Param("movie_recommender", type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model whose @champion is monitored."),
    "data_source": Param("synthetic", type="string", minLength=1,
                         description="Where the recent ratings come from, as in the retrain DAG: "
                                     "'synthetic', 'synthetic:n_ratings=20000,seed=7', a MovieLens "
                                     "directory, 's3://bucket/prefix' or "
                                     "'postgres://<connection id>[/<table prefix>]'."),
    "window_days": Param(None, type=["null", "integer"], minimum=1, maximum=3650,
                         description="Days of ratings to score (empty: the policy's monitor_window_days)."),
    "margin": Param(None, type=["null", "number"], minimum=0, maximum=1,
                    description="Allowed drop below the champion's validation metrics "
                                "(empty: the policy's monitor_max_drift)."),
    "check_drift": Param(True, type="boolean",
                         description="Compare the registry with the audit trail; fail verify_audit_trail "
                                     "on changes no governed step made."),
}

# This run's policy overrides from the params (unset ones render as None and are ignored).
MONITOR_OVERRIDES = {"monitor_window_days": "{{ params.window_days }}", "monitor_max_drift": "{{ params.margin }}"}


@dag(
    dag_id="movie_recommender_monitor",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args=DEFAULT_TASK_ARGS,
    tags=["mlflow", "model-registry", "recommender", "monitoring"],
)
def movie_recommender_monitor():
    score_champion = ScoreChampionOperator(
        task_id="score_champion",
        model_name="{{ params.model_name }}",
        data_source="{{ params.data_source }}",
        policy_overrides=MONITOR_OVERRIDES,
    )

    @task.branch
    def assess(scored: dict, policy_overrides: dict) -> str:
        """Decide whether the champion degraded; record the verdict; pick the next task."""
        from airflow.sdk import get_current_context

        return choose_after_scoring(
            scored, policy_overrides, get_current_context(),
            retrain_task_id="trigger_retrain", hold_task_id="no_retrain",
        )

    trigger_retrain = TriggerRetrainOperator(
        task_id="trigger_retrain",
        trigger_dag_id=RETRAIN_DAG_ID,
        # One retrain per monitor run: a retried trigger finds its run and skips.
        trigger_run_id="monitor__{{ run_id }}",
        skip_when_already_exists=True,
        # Only params the retrain DAG declares (they are validated); the reason goes in the note.
        conf={"model_name": "{{ params.model_name }}", "data_source": "{{ params.data_source }}"},
        note="{{ ti.xcom_pull(task_ids='assess', key='trigger_reason') }}",
        # Audited as retrain_triggered (and notified when the policy routes it).
        model_name="{{ params.model_name }}",
        champion_version="{{ ti.xcom_pull(task_ids='score_champion', key='champion_version') }}",
    )
    no_retrain = EmptyOperator(task_id="no_retrain")

    assess(score_champion.output, MONITOR_OVERRIDES) >> [trigger_retrain, no_retrain]

    # Beside the scoring branch, not upstream of it: a drift alert never holds back a retrain.
    VerifyAuditTrailOperator(
        task_id="verify_audit_trail",
        model_name="{{ params.model_name }}",
        check_drift="{{ params.check_drift }}",
    )


movie_recommender_monitor()
