"""
### Record a reviewer's decision on a model version from the Airflow UI

Trigger this DAG with the form (*Trigger DAG*): the model, the version, the decision and your
notes. The decision is written to the version's tags in the MLflow Model Registry with **your
authenticated Airflow user name** as `approved_by` -- the same record a reviewer would write in
the MLflow UI, so the waiting retrain run's `wait_for_approval` task picks it up.

The policy still applies: the submitter of a version cannot approve it (separation of duties),
only an allowed approver may decide where the policy names approvers, and a version that has not
passed validation cannot be approved. A refused decision fails this run with the reason.

If the retrain run's `wait_for_approval` task had already timed out, clear it (with downstream)
after this run succeeds: it re-reads the decision and the run continues.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task

MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]{0,127}$"


@dag(
    dag_id="movie_recommender_review",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        "model_name": Param("movie_recommender", type="string", pattern=MODEL_NAME_PATTERN,
                            description="Registered model name."),
        "version": Param(1, type="integer", minimum=1, description="The model version to decide on."),
        "decision": Param("approve", type="string", enum=["approve", "reject"], description="Your decision."),
        "notes": Param("", type="string", maxLength=4000, description="Why (kept on the version as approval_notes)."),
    },
    default_args={"owner": "ml-platform", "retries": 0},
    tags=["mlflow", "model-registry", "governance"],
)
def movie_recommender_review():
    @task
    def record_decision() -> dict:
        """Write the decision with the triggering user as reviewer; refusals fail the run."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.governance.approval import ApprovalError, record_review
        from include.governance.policy import GovernancePolicy
        from include.governance.registry import RegistryError
        from mlflow_governance.hooks import GOVERNANCE_CONN_ID, MlflowHook

        context = get_current_context()
        params = context["params"]
        reviewer = context["dag_run"].triggering_user_name
        if not reviewer:
            # Scheduled or API runs without a user cannot stand for a person's decision.
            raise AirflowFailException("This run has no triggering user; trigger it from the UI or API as yourself")
        try:
            record = record_review(
                MlflowHook(GOVERNANCE_CONN_ID).get_conn(),
                params["model_name"],
                str(params["version"]),
                approve=params["decision"] == "approve",
                reviewer=reviewer,
                notes=params["notes"] or None,
                policy=GovernancePolicy.load().approval,
            )
        except (ApprovalError, RegistryError) as exc:
            raise AirflowFailException(f"Decision refused: {exc}") from exc
        return {"model_name": params["model_name"], "version": str(params["version"]),
                "status": record.status.value, "approved_by": reviewer}

    record_decision()


movie_recommender_review()
