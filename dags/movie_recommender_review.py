"""
### Record a reviewer's decision on a model version from the Airflow UI

Trigger this DAG with the form (*Trigger DAG*): the model, the version, the decision and your
notes. The decision is written to the version's tags in the MLflow Model Registry with **your
authenticated Airflow user name** as `approved_by` -- the same record a reviewer would write in
the MLflow UI, so the waiting retrain run's `wait_for_approval` task picks it up.

The policy still applies, with the overrides the version's run was validated under: the
submitter of a version cannot approve it (separation of duties), only an allowed approver may
decide where the policy names approvers, a version that has not passed validation or is no
longer the candidate cannot be approved, the serving champion cannot be rejected, and a recorded
decision is final. A refused decision fails this run with the reason and is audited.

If the retrain run's `wait_for_approval` task had already timed out, clear it (with downstream)
after this run succeeds: it re-reads the decision and the run continues.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag

from include.governance.lifecycle import DEFAULT_MODEL_NAME, MODEL_NAME_PATTERN
from mlflow_governance.review import DECISIONS, RecordReviewOperator


@dag(
    dag_id="movie_recommender_review",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        "model_name": Param(DEFAULT_MODEL_NAME, type="string", pattern=MODEL_NAME_PATTERN,
                            description="Registered model name."),
        "version": Param(1, type="integer", minimum=1, description="The model version to decide on."),
        "decision": Param("approve", type="string", enum=list(DECISIONS), description="Your decision."),
        "notes": Param("", type="string", maxLength=4000, description="Why (kept on the version as approval_notes)."),
    },
    render_template_as_native_obj=True,
    default_args={"owner": "ml-platform", "retries": 0},
    tags=["mlflow", "model-registry", "governance"],
)
def movie_recommender_review():
    RecordReviewOperator(
        task_id="record_decision",
        model_name="{{ params.model_name }}",
        version="{{ params.version }}",
        decision="{{ params.decision }}",
        notes="{{ params.notes }}",
    )


movie_recommender_review()
