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
from datetime import datetime

from airflow.sdk import Param, chain, dag

from include.governance.lifecycle import MODEL_NAME_PATTERN, MODEL_TYPES
from include.recommender.run_tags import configured_experiment_name
from mlflow_governance.common import DEFAULT_TASK_ARGS
from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
from mlflow_governance.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    RequestApprovalOperator,
    ValidateModelVersionOperator,
)
from mlflow_governance.sensors import ModelVersionApprovalSensor
from mlflow_governance.training import DEFAULT_RANKING_USER_SAMPLE, EvaluateModelOperator, TrainModelOperator

# Read at parse time from the environment only (no DB, no network): deployment-level knobs.
SCHEDULE = os.environ.get("MOVIE_RECOMMENDER_SCHEDULE", "@weekly")
# "none" means no schedule at all (runs only when triggered); a cron string cannot say that.
SCHEDULE = None if SCHEDULE.strip().lower() == "none" else SCHEDULE
APPROVAL_POKE_SECONDS = float(os.environ.get("MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS", "60"))
# "reschedule" (a worker checks every poke interval) or "deferrable" (the triggerer checks);
# unset: Airflow's [operators] default_deferrable decides.
APPROVAL_SENSOR_MODE = os.environ.get("MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE", "").strip().lower()
if APPROVAL_SENSOR_MODE not in ("", "reschedule", "deferrable"):
    raise ValueError(f"MOVIE_RECOMMENDER_APPROVAL_SENSOR_MODE={APPROVAL_SENSOR_MODE!r}: expected reschedule or deferrable")
# Under CeleryExecutor train and log go to a queue of their own, so bigger workers can take
# them (`airflow celery worker --queues training`); LocalExecutor ignores queues.
TRAINING_QUEUE = os.environ.get("MOVIE_RECOMMENDER_TRAINING_QUEUE", "training")

# A version tag holds 5000 characters and the description 5000 with the "Trained by" line.
SUBMISSION_NOTES_MAX_LENGTH = 4000

PARAMS = {
    "model_name": Param("movie_recommender", type="string", pattern=MODEL_NAME_PATTERN,
                        description="Registered model name in the MLflow Model Registry."),
    "model_type": Param(MODEL_TYPES[0], type="string", enum=list(MODEL_TYPES), description="Which model to train."),
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
    "ranking_user_sample_size": Param(DEFAULT_RANKING_USER_SAMPLE, type="integer", minimum=1,
                                      description="Ranking metrics rank a seeded sample of this many holdout "
                                                  "users against the whole catalog (all of them when fewer; "
                                                  "the default keeps every user of the default data). "
                                                  "Recorded in the evaluation report."),
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
    "submission_notes": Param(None, type=["null", "string"], maxLength=SUBMISSION_NOTES_MAX_LENGTH,
                              description="A note for the reviewer (what changed, why): kept on the version "
                                          "(its description and tag submission_notes) and shown in the "
                                          "approval form."),
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
    default_args=DEFAULT_TASK_ARGS,
    tags=["mlflow", "model-registry", "recommender"],
)
def movie_recommender_retrain():
    train, evaluate = _training_steps()
    chain(train, evaluate, *_governance_steps(train.output))


def _training_steps() -> tuple[TrainModelOperator, EvaluateModelOperator]:
    """train, then log: train keeps the rows it trained on in its MLflow run; log evaluates on those."""
    train = TrainModelOperator(
        task_id="train",
        model_type="{{ params.model_type }}",
        hyperparameters="{{ params.hyperparameters }}",
        data_source="{{ params.data_source }}",
        data_cutoff="{{ params.data_cutoff }}",
        holdout_fraction="{{ params.holdout_fraction }}",
        policy_overrides=POLICY_OVERRIDES,
        # MLFLOW_EXPERIMENT_NAME (as the design guide reads it), else movie_recommendation.
        experiment_name=configured_experiment_name(),
        queue=TRAINING_QUEUE,
        retries=1,
    )
    trained = train.output
    evaluate = EvaluateModelOperator(
        task_id="log",
        run_id=trained["run_id"],
        data_fingerprint=trained["data_fingerprint"],
        cutoff=trained["cutoff"],
        holdout_fraction="{{ params.holdout_fraction }}",
        ranking_user_sample_size="{{ params.ranking_user_sample_size }}",
        queue=TRAINING_QUEUE,
    )
    return train, evaluate


def _governance_steps(trained) -> list:
    """register -> validate -> approve -> review_in_airflow -> wait_for_approval -> promote."""
    register = RegisterModelVersionOperator(
        task_id="register",
        model_name="{{ params.model_name }}",
        run_id=trained["run_id"],
        model_uri=trained["model_uri"],
        data_fingerprint=trained["data_fingerprint"],
        submission_notes="{{ params.submission_notes }}",
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
        deferrable=APPROVAL_SENSOR_MODE == "deferrable" if APPROVAL_SENSOR_MODE else None,
        timeout=24 * 60 * 60,
        retries=0,
    )
    promote = PromoteModelVersionOperator(
        task_id="promote",
        model_name="{{ params.model_name }}",
        version=register.output["version"],
        policy_overrides=POLICY_OVERRIDES,
    )
    return [register, validate, approve, review_in_airflow, wait_for_approval, promote]


movie_recommender_retrain()
