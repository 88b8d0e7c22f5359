"""
### Keep the movie recommender's registry tidy: the last N archived versions stay

`retain`

Archived versions (champions that were replaced: the `archived_timestamp` tag) pile up with
every promotion. This DAG keeps the `keep` most recently archived ones and deletes the older
ones through the same guarded delete step as `python -m include.governance delete`: a version
holding `@champion`, `@challenger` or `@previous_champion`, or awaiting a decision, is never
deleted (it is logged and kept), and every deletion is audited with the version's evidence
(tags, metrics, source, run id). `dry_run` only lists what would go.

Scheduled weekly by default; `MOVIE_RECOMMENDER_RETENTION_SCHEDULE` sets a cron or preset
(`none`: only when triggered). The same from the command line:
`python -m include.governance retain MODEL --keep N --actor NAME [--dry-run]`.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import Param, dag

from include.governance.lifecycle import DEFAULT_MODEL_NAME, MODEL_NAME_PATTERN
from mlflow_governance.common import DEFAULT_TASK_ARGS
from mlflow_governance.retention import ApplyRetentionOperator

# Read at parse time from the environment only (no DB, no network), as the retrain DAG does.
SCHEDULE = os.environ.get("MOVIE_RECOMMENDER_RETENTION_SCHEDULE", "@weekly")
SCHEDULE = None if SCHEDULE.strip().lower() == "none" else SCHEDULE

PARAMS = {
    "model_name": Param(DEFAULT_MODEL_NAME, type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model name in the MLflow Model Registry."),
    "keep": Param(5, type="integer", minimum=0,
                  description="How many archived versions to keep (the most recently archived)."),
    "dry_run": Param(False, type="boolean", description="Only list what would be deleted."),
}


@dag(
    dag_id="movie_recommender_retention",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args=DEFAULT_TASK_ARGS,
    tags=["mlflow", "model-registry", "recommender", "retention"],
)
def movie_recommender_retention():
    ApplyRetentionOperator(
        task_id="retain",
        model_name="{{ params.model_name }}",
        keep="{{ params.keep }}",
        dry_run="{{ params.dry_run }}",
    )


movie_recommender_retention()
