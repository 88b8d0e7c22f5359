"""Operators for the retrain DAG's first two steps: train a model, then evaluate it.

``TrainModelOperator`` reads the data source once, keeps the exact rows it trained on in the
run's artifacts (``data_snapshot/``, keyed by the data fingerprint) and pushes the run's ids;
``EvaluateModelOperator`` scores the model on that snapshot, never on the source again, so the
evaluation cannot see other rows than training did. Bad data, bad hyperparameters and a
missing or altered snapshot fail the task without retrying: a retry would meet them again.

Kept free of MLflow and of the heavy include/ modules at import time (lifecycle.py is import-light):
DAG files import it at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from include.recommender.run_tags import configured_experiment_name
from mlflow_governance.common import TRAINING_CONN_ID, load_policy
from mlflow_governance.hooks import MlflowHook

__all__ = ["DEFAULT_RANKING_USER_SAMPLE", "EvaluateModelOperator", "TrainModelOperator", "ranking_user_sample", "training_cutoff"]

# holdout_metrics.DEFAULT_RANKING_USERS, repeated here so DAG files need not import numpy to
# parse (a test keeps the two equal): every holdout user of the default data, 10,000 at most.
DEFAULT_RANKING_USER_SAMPLE = 10_000


def training_cutoff(data_cutoff: str | None, data_interval_end: datetime | None) -> datetime | None:
    """The instant training data must precede: the param, else the interval end, else none.

    :param data_cutoff: an ISO 8601 instant with a time zone, or empty.
    :param data_interval_end: the run's data interval end (None for a run without one).
    """
    if not data_cutoff:
        return data_interval_end
    if isinstance(data_cutoff, datetime):
        parsed = data_cutoff
    else:
        try:
            parsed = datetime.fromisoformat(str(data_cutoff))
        except ValueError:
            raise ValueError(f"data_cutoff {data_cutoff!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"data_cutoff {data_cutoff!r} needs a time zone (e.g. 2025-06-01T00:00:00+00:00)")
    return parsed


def ranking_user_sample(value: Any) -> int | None:
    """The ranking's user sample size as a positive int (None: the evaluation's default).

    :param value: the rendered param: an int, or its decimal text; booleans are refused.
    """
    if value is None or value == "":
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"ranking_user_sample_size must be a positive integer, got {value!r}")
    return int(text)


class _TrainingStepOperator(BaseOperator):
    """Shared plumbing: the MLflow connection (the training account), a lazy hook, per-key XComs.

    :param mlflow_conn_id: the MLflow identity the step acts as.
    """

    def __init__(self, *, mlflow_conn_id: str = TRAINING_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)


class TrainModelOperator(_TrainingStepOperator):
    """Fit a model on the data before the cutoff and log it, with its data snapshot, to one MLflow run.

    Returns (one XCom per key) ``run_id``, ``model_uri``, ``data_fingerprint``,
    ``training_seconds``, ``cutoff`` (ISO 8601 or None) and ``snapshot_path``.

    :param model_type: one of the model types (include.governance.lifecycle.MODEL_TYPES).
    :param hyperparameters: estimator hyperparameters.
    :param data_source: "synthetic[:...]", a directory, "s3://..." or "postgres://<conn id>[/<prefix>]".
    :param data_cutoff: train on ratings before this instant (empty: the data interval end).
    :param holdout_fraction: share of the most recent ratings held out for evaluation.
    :param policy_overrides: this run's policy overrides, checked before anything is trained.
    :param experiment_name: the MLflow experiment of the run (None: ``MLFLOW_EXPERIMENT_NAME``, else
        movie_recommendation).
    """

    template_fields: Sequence[str] = (
        "model_type", "hyperparameters", "data_source", "data_cutoff", "holdout_fraction", "policy_overrides",
        "experiment_name",
    )

    def __init__(
        self,
        *,
        model_type: str,
        data_source: str,
        hyperparameters: dict[str, Any] | None = None,
        data_cutoff: str | None = None,
        holdout_fraction: float = 0.2,
        policy_overrides: dict[str, Any] | None = None,
        experiment_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_type = model_type
        self.data_source = data_source
        self.hyperparameters = hyperparameters
        self.data_cutoff = data_cutoff
        self.holdout_fraction = holdout_fraction
        self.policy_overrides = policy_overrides
        self.experiment_name = experiment_name or configured_experiment_name()

    def execute(self, context: Context) -> dict[str, Any]:
        from include.recommender.schema import DataValidationError
        from mlflow_governance.data_sources import load_training_data

        # Bad thresholds fail before training, so nothing is registered for a run that cannot be
        # validated (the Param schema lets NaN through and cannot know the policy's keys).
        load_policy(None, self.policy_overrides)
        try:
            cutoff = training_cutoff(self.data_cutoff, context.get("data_interval_end"))
            data = load_training_data(self.data_source)
        except (DataValidationError, ValueError) as exc:
            raise AirflowFailException(f"Bad training data: {exc}") from exc
        try:
            result = self._train(context, data, cutoff)
        except (DataValidationError, ValueError) as exc:
            # Bad data or bad hyperparameters: a retry cannot fix them.
            raise AirflowFailException(f"Training refused: {exc}") from exc
        self.log.info("Trained %s in run %s on %s", self.model_type, result.run_id, result.data_fingerprint)
        return {
            "run_id": result.run_id,
            "model_uri": result.model_uri,
            "data_fingerprint": result.data_fingerprint,
            "training_seconds": result.training_seconds,
            "cutoff": cutoff.isoformat() if cutoff else None,
            "snapshot_path": result.snapshot_path,
        }

    def _train(self, context: Context, data: Any, cutoff: datetime | None) -> Any:
        from include.recommender.training import train_and_log

        # The fluent API (start_run, log_model, artifact uploads) runs as the connection's account.
        with self.hook.identity():
            return train_and_log(
                data=data,
                model_type=self.model_type,
                hyperparameters=dict(self.hyperparameters or {}),
                experiment_name=self.experiment_name,
                tracking_uri=self.hook.tracking_uri,
                cutoff=cutoff,
                run_tags={
                    "airflow_dag_id": context["dag"].dag_id,
                    "airflow_run_id": context["run_id"],
                    "airflow_try_number": str(context["ti"].try_number),
                },
                holdout_fraction=self.holdout_fraction,
                artifact_location=self.hook.artifact_location,
            )


class EvaluateModelOperator(_TrainingStepOperator):
    """Evaluate a training run's model on the data snapshot it kept; log metrics and reports to the run.

    Returns the logged metrics (one XCom per metric).

    :param run_id: the training run.
    :param data_fingerprint: the fingerprint training reported; the snapshot must hold exactly it.
    :param cutoff: the cutoff training used (ISO 8601, or None).
    :param holdout_fraction: the holdout fraction training used.
    :param ranking_user_sample_size: rank a seeded sample of this many holdout users (all of
        them when fewer); None: DEFAULT_RANKING_USER_SAMPLE. Recorded in the evaluation report.
    """

    template_fields: Sequence[str] = ("run_id", "data_fingerprint", "cutoff", "holdout_fraction", "ranking_user_sample_size")

    def __init__(
        self,
        *,
        run_id: str,
        data_fingerprint: str,
        cutoff: str | None = None,
        holdout_fraction: float = 0.2,
        ranking_user_sample_size: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.data_fingerprint = data_fingerprint
        self.cutoff = cutoff
        self.holdout_fraction = holdout_fraction
        self.ranking_user_sample_size = ranking_user_sample_size

    def execute(self, context: Context) -> dict[str, float]:
        from include.recommender.evaluation import evaluate_run_snapshot
        from include.recommender.holdout_metrics import RankingProtocol
        from include.recommender.schema import DataValidationError

        cutoff = datetime.fromisoformat(self.cutoff) if self.cutoff else None
        try:
            sample = ranking_user_sample(self.ranking_user_sample_size)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        protocol = RankingProtocol(user_sample_size=sample) if sample is not None else None
        try:
            with self.hook.identity():
                metrics = evaluate_run_snapshot(
                    run_id=self.run_id,
                    data_fingerprint=self.data_fingerprint,
                    cutoff=cutoff,
                    holdout_fraction=self.holdout_fraction,
                    tracking_uri=self.hook.tracking_uri,
                    ranking_protocol=protocol,
                )
        except DataValidationError as exc:
            # A missing or altered snapshot stays so: retrying would evaluate nothing better.
            raise AirflowFailException(f"Evaluation refused: {exc}") from exc
        self.log.info("Run %s: accuracy %.4f, roc_auc %.4f", self.run_id, metrics["accuracy"], metrics["roc_auc"])
        return metrics
