"""
### Record how each served version of the movie recommender serves: figures back into the registry

`record_serving_figures`

Reads the model server's `/metrics` (the Airflow connection `model_server`, e.g.
`AIRFLOW_CONN_MODEL_SERVER=http://model-server:8000`; without it the task skips and says so) and,
for every version the server answers with (as `champion`, `canary` or `shadow`), records the
requests, errors, error rate, p50 and p95 latency and, for a canary, its share of the model's
requests:

- as `serving_<variant>_<figure>` tags on the version (`serving_canary_requests`,
  `serving_champion_p95_ms`, ...) and `serving_canary_share`, which `python -m include.governance
  show` and `compare` present and the policy's canary rule (`require_canary_evidence`) reads;
- as metrics of the version's serving run (experiment `movie_recommender_serving`, tagged
  `model_name`/`model_version`): totals and this window's figures at one step per recording.

The figures are totals since the version was first served, across server restarts: each
recording adds what the counters rose by since the last one (a restart is seen from the series'
creation time and counts from zero).

A DAG of its own, not a task of the monitor: canary evidence gates an approval, so it has to
reach the version within minutes (every 15 by default, `MOVIE_RECOMMENDER_SERVING_FIGURES_SCHEDULE`
sets a cron or preset, `none`: only when triggered), while the monitor scores the champion on a
month of ratings once a day.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import Param, dag

from include.governance.lifecycle import DEFAULT_MODEL_NAME, MODEL_NAME_PATTERN
from mlflow_governance.common import DEFAULT_TASK_ARGS
from mlflow_governance.serving_figures import RecordServingFiguresOperator

# Read at parse time from the environment only (no DB, no network).
SCHEDULE = os.environ.get("MOVIE_RECOMMENDER_SERVING_FIGURES_SCHEDULE", "*/15 * * * *")
SCHEDULE = None if SCHEDULE.strip().lower() == "none" else SCHEDULE

PARAMS = {
    "model_name": Param(DEFAULT_MODEL_NAME, type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model whose served versions get their figures."),
}


@dag(
    dag_id="movie_recommender_serving_figures",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    # One recording at a time: each adds the counters' rise since the last one.
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args=DEFAULT_TASK_ARGS,
    tags=["mlflow", "model-registry", "recommender", "serving"],
)
def movie_recommender_serving_figures():
    RecordServingFiguresOperator(task_id="record_serving_figures", model_name="{{ params.model_name }}")


movie_recommender_serving_figures()
