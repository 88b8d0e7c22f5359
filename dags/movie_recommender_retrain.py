"""
### Retrain the movie recommender and govern it through the MLflow Model Registry

`train -> log -> register -> validate -> approve -> review_in_airflow -> wait_for_approval -> promote`

Every run trains a model on the ratings that fall before the run's data interval end (a re-run
of the same interval trains on the same rows), logs it to MLflow, registers it as a new version
of `model_name`, validates it against the governance policy and the current `@champion`, decides
its approval, and promotes it to `@champion` only once approved.

**Trigger with params** (Airflow UI: *Trigger DAG* form, or the REST API): model type and
hyperparameters, data source (`synthetic`, a directory or `s3://` prefix with MovieLens
`ratings.csv` and `movies.csv`, or `postgres://<connection id>` tables), approval mode, approval
timeout and threshold overrides. Invalid params are refused before the run starts.

**Approve a waiting version** (`approval_mode=manual` or `hitl`, or a drop against the champion
that needs review). With `approval_mode=hitl` the `review_in_airflow` task asks on Airflow's
*Required Actions* page and writes your answer, with your user name, to the version. Any mode
also accepts the *movie_recommender_review* DAG's form, the reviewer CLI
(`python -m include.governance approve ...`), or the version's tags `approval_status=approved` (or `rejected`), `approved_by=<you>`
and optionally `approval_notes` in the MLflow UI or any MLflow client. The
`wait_for_approval` task notices within its poke interval and the run promotes the version.
The approver must not be the submitter (tag `submitted_by`).

**Resume a timed-out run**: when `wait_for_approval` timed out (the version is then tagged
`approval_status=expired`) or failed, record the decision on the version, then *Clear* the
`wait_for_approval` task (with its downstream) in the Airflow UI: it re-reads the decision and
the run continues.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, chain, dag, task

from mlflow_governance.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RequestApprovalOperator,
    ValidateModelVersionOperator,
    load_policy,
)
from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
from mlflow_governance.sensors import ModelVersionApprovalSensor

# Read at parse time from the environment only (no DB, no network): deployment-level knobs.
SCHEDULE = os.environ.get("MOVIE_RECOMMENDER_SCHEDULE", "@weekly")
# "none" means no schedule at all (runs only when triggered); a cron string cannot say that.
SCHEDULE = None if SCHEDULE.strip().lower() == "none" else SCHEDULE
APPROVAL_POKE_SECONDS = float(os.environ.get("MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS", "60"))
# "reschedule" (a worker checks every poke interval) or "deferrable" (the triggerer checks).
APPROVAL_SENSOR_MODE = os.environ.get("MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE", "reschedule").strip().lower()
if APPROVAL_SENSOR_MODE not in ("reschedule", "deferrable"):
    raise ValueError(f"MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE={APPROVAL_SENSOR_MODE!r}: expected reschedule or deferrable")
# Under CeleryExecutor train and log go to a queue of their own, so bigger workers can take
# them (`airflow celery worker --queues training`); LocalExecutor ignores queues.
TRAINING_QUEUE = os.environ.get("MOVIE_RECOMMENDER_TRAINING_QUEUE", "training")
EXPERIMENT_NAME = "movie_recommendation"
# Keep in step with include.recommender.models.MODEL_TYPES (a test checks they match).
MODEL_TYPES = ["hist_gradient_boosting", "logistic_regression", "torch_ncf", "popularity"]
# A safe registered-model name: a letter, then letters, digits, . _ - (no slashes, quotes, spaces).
MODEL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9._-]{0,127}$"

PARAMS = {
    "model_name": Param("movie_recommender", type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model name in the MLflow Model Registry."),
    "model_type": Param(MODEL_TYPES[0], type="string", enum=MODEL_TYPES, description="Which model to train."),
    "hyperparameters": Param({}, type="object",
                             description='Estimator hyperparameters, e.g. {"max_iter": 200, "learning_rate": 0.1}.'),
    "data_source": Param("synthetic", type="string", minLength=1,
                         description="'synthetic' (generated MovieLens-shaped data), "
                                     "'synthetic:n_ratings=20000,seed=7', a directory with ratings.csv "
                                     "and movies.csv (or .parquet), 's3://bucket/prefix' holding those "
                                     "files, or 'postgres://<connection id>[/<table prefix>]' for the "
                                     "tables <prefix>ratings and <prefix>movies (e.g. "
                                     "'postgres://ratings_warehouse')."),
    "data_cutoff": Param(None, type=["null", "string"], format="date-time",
                         description="Train on ratings before this instant instead of the data interval end."),
    "holdout_fraction": Param(0.2, type="number", minimum=0.05, maximum=0.5,
                              description="Share of the most recent ratings held out for evaluation."),
    "approval_mode": Param("auto", type="string", enum=["auto", "manual", "hitl"],
                           description="auto: the policy decides; manual: every version waits for a reviewer; "
                                       "hitl: manual, and the reviewer answers on Airflow's Required Actions page."),
    "approval_timeout_minutes": Param(24 * 60, type="number", exclusiveMinimum=0, maximum=30 * 24 * 60,
                                      description="How long a version may wait for a reviewer before it expires."),
    "min_accuracy": Param(None, type=["null", "number"], minimum=0, maximum=1,
                          description="Override the policy's accuracy gate for this run."),
    "min_precision": Param(None, type=["null", "number"], minimum=0, maximum=1,
                           description="Override the policy's precision gate for this run."),
    "min_recall": Param(None, type=["null", "number"], minimum=0, maximum=1,
                        description="Override the policy's recall gate for this run."),
    "policy_overrides": Param({}, type="object",
                              description='Any other policy value, e.g. {"max_degradation_vs_champion": 0.03}.'),
}

# One flat mapping of this run's policy overrides (unset thresholds render as None and are ignored).
POLICY_OVERRIDES = (
    "{{ dict(params.policy_overrides, min_accuracy=params.min_accuracy, "
    "min_precision=params.min_precision, min_recall=params.min_recall) }}"
)


@dag(
    dag_id="movie_recommender_retrain",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    # Params render as native values (numbers, dicts), not strings, in operator fields.
    render_template_as_native_obj=True,
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["mlflow", "model-registry", "recommender"],
)
def movie_recommender_retrain():
    @task(retries=1, queue=TRAINING_QUEUE)
    def train() -> dict:
        """Fit the model on the interval's data snapshot and log it to one MLflow run."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from include.recommender.schema import DataValidationError
        from include.recommender.training import train_and_log
        from mlflow_governance.data_sources import load_training_data
        from mlflow_governance.hooks import MlflowHook

        context = get_current_context()
        params = context["params"]
        _check_policy_overrides(params)
        try:
            cutoff = _cutoff(params.get("data_cutoff"), context.get("data_interval_end"))
            data = load_training_data(params["data_source"])
        except (DataValidationError, ValueError) as exc:
            raise AirflowFailException(f"Bad training data: {exc}") from exc
        hook = MlflowHook()
        try:
            # The fluent API (start_run, log_model, artifact uploads) runs as the connection's account.
            with hook.identity():
                result = train_and_log(
                    data=data,
                    model_type=params["model_type"],
                    hyperparameters=params["hyperparameters"],
                    experiment_name=EXPERIMENT_NAME,
                    tracking_uri=hook.tracking_uri,
                    cutoff=cutoff,
                    run_tags={
                        "airflow_dag_id": context["dag"].dag_id,
                        "airflow_run_id": context["run_id"],
                        "airflow_try_number": str(context["ti"].try_number),
                    },
                    holdout_fraction=params["holdout_fraction"],
                    artifact_location=hook.artifact_location,
                )
        except (DataValidationError, ValueError) as exc:
            # Bad data or bad hyperparameters: a retry cannot fix them.
            raise AirflowFailException(f"Training refused: {exc}") from exc
        return {
            "run_id": result.run_id,
            "model_uri": result.model_uri,
            "data_fingerprint": result.data_fingerprint,
            "training_seconds": result.training_seconds,
            "cutoff": cutoff.isoformat() if cutoff else None,
        }

    @task(task_id="log", queue=TRAINING_QUEUE)
    def log_evaluation(trained: dict) -> dict:
        """Evaluate on the time-based holdout and log metrics and reports to the same run."""
        from airflow.sdk import get_current_context

        from include.recommender.evaluation import evaluate_and_log
        from mlflow_governance.data_sources import load_training_data
        from mlflow_governance.hooks import MlflowHook

        params = get_current_context()["params"]
        cutoff = datetime.fromisoformat(trained["cutoff"]) if trained["cutoff"] else None
        data = load_training_data(params["data_source"])
        hook = MlflowHook()
        with hook.identity():
            return evaluate_and_log(
                run_id=trained["run_id"],
                data=data,
                cutoff=cutoff,
                holdout_fraction=params["holdout_fraction"],
                tracking_uri=hook.tracking_uri,
            )

    trained = train()
    evaluated = log_evaluation(trained)

    register = RegisterModelVersionOperator(
        task_id="register",
        model_name="{{ params.model_name }}",
        run_id=trained["run_id"],
        model_uri=trained["model_uri"],
        data_fingerprint=trained["data_fingerprint"],
        retries=3,
    )
    validate = ValidateModelVersionOperator(
        task_id="validate",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        policy_overrides=POLICY_OVERRIDES,
    )
    approve = RequestApprovalOperator(
        task_id="approve",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        # hitl is the manual policy with Airflow's own form as the channel.
        approval_mode="{{ 'manual' if params.approval_mode == 'hitl' else params.approval_mode }}",
        policy_overrides=POLICY_OVERRIDES,
    )
    review_in_airflow = ModelVersionHITLApprovalOperator(
        task_id="review_in_airflow",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        approval_mode="{{ params.approval_mode }}",
        approval_timeout_minutes="{{ params.approval_timeout_minutes }}",
        policy_overrides=POLICY_OVERRIDES,
        retries=0,
    )
    wait_for_approval = ModelVersionApprovalSensor(
        task_id="wait_for_approval",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        approval_timeout_minutes="{{ params.approval_timeout_minutes }}",
        policy_overrides=POLICY_OVERRIDES,
        poke_interval=APPROVAL_POKE_SECONDS,
        deferrable=APPROVAL_SENSOR_MODE == "deferrable",
        timeout=24 * 60 * 60,
        retries=0,
    )
    promote = PromoteModelVersionOperator(
        task_id="promote",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        policy_overrides=POLICY_OVERRIDES,
    )

    chain(trained, evaluated, register, validate, approve, review_in_airflow, wait_for_approval, promote)


def _check_policy_overrides(params) -> None:
    """Refuse bad thresholds before training, so nothing is registered for a run that cannot be
    validated (the Param schema lets NaN through and cannot know the policy's keys)."""
    overrides = dict(params.get("policy_overrides") or {})
    overrides.update({key: params.get(key) for key in ("min_accuracy", "min_precision", "min_recall")})
    load_policy(None, overrides)


def _cutoff(data_cutoff: str | None, data_interval_end):
    """The instant training data must precede: the param, else the interval end, else none."""
    if data_cutoff:
        parsed = datetime.fromisoformat(data_cutoff)
        if parsed.tzinfo is None:
            raise ValueError(f"data_cutoff {data_cutoff!r} needs a time zone (e.g. 2025-06-01T00:00:00+00:00)")
        return parsed
    return data_interval_end


movie_recommender_retrain()
