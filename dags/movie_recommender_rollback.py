"""
### Roll the movie recommender's `@champion` back to a version that served before

`plan -> rollback`

Trigger manually (Airflow UI: *Trigger DAG* form, or the REST API) with the model name, the
version to restore (empty: the model's `@previous_champion`) and a reason. Only a version that
passed validation, was approved and was champion before can be restored; anything else fails
the `plan` task with the reason and leaves `@champion` where it was.

`rollback` moves `@champion` to the planned version, points `@previous_champion` at the version
rolled back from (so the rollback itself can be undone the same way), tags both versions and
appends `rolled_back` and `archived` events to the audit trail, attributed to the user who
triggered the run. A retry after the move changes nothing.

The same is available from the command line:
`python -m include.governance rollback MODEL [--to VERSION] --actor NAME --reason TEXT`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag

from include.governance.lifecycle import DEFAULT_MODEL_NAME, MODEL_NAME_PATTERN
from mlflow_governance.common import DEFAULT_TASK_ARGS
from mlflow_governance.operators import PlanRollbackOperator, RollbackModelOperator

PARAMS = {
    "model_name": Param(DEFAULT_MODEL_NAME, type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model name in the MLflow Model Registry."),
    "to_version": Param(None, type=["null", "string"], pattern=r"^([1-9][0-9]*)?$",
                        description="Version to restore as @champion; empty restores @previous_champion."),
    "reason": Param(type="string", minLength=3, maxLength=4000,
                    description="Why the champion is rolled back (recorded on the version and in the audit trail)."),
}


@dag(
    dag_id="movie_recommender_rollback",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    render_template_as_native_obj=True,
    default_args=DEFAULT_TASK_ARGS,
    tags=["mlflow", "model-registry", "recommender", "rollback"],
)
def movie_recommender_rollback():
    plan = PlanRollbackOperator(
        task_id="plan",
        model_name="{{ params.model_name }}",
        to_version="{{ params.to_version }}",
    )
    RollbackModelOperator(
        task_id="rollback",
        model_name="{{ params.model_name }}",
        to_version=plan.output["target"],
        expected_champion=plan.output["current_champion"],
        from_alias=plan.output["from_alias"],
        reason="{{ params.reason }}",
    )


movie_recommender_rollback()
