"""Train the recommender on a data snapshot and log everything to one MLflow run.

MLflow's fluent API (needed by ``mlflow.pyfunc.log_model``) reads a process-global tracking URI.
``tracking_uri_scope`` sets it for the duration of one call and restores both the global and
the ``MLFLOW_TRACKING_URI`` environment variable afterwards, so callers see no change. Scopes
take a process-wide lock: two threads of one process never train against each other's server.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from include.recommender.data_snapshot import log_snapshot
from include.recommender.fitting import FittedModel, fit_model
from include.recommender.models import SKLEARN_MODEL_TYPES, build_estimator, effective_hyperparameters
from include.recommender.pyfunc import DEFAULT_PARAMS, INPUT_COLUMNS
from include.recommender.requirements_check import pins_checked_cheaply
from include.recommender.run_tags import EXPERIMENT_TAGS, default_run_tags, run_name
from include.recommender.schema import RATING_MAX, RATING_MIN, MovieLensData
from include.recommender.snapshot import fingerprint, ratings_before, temporal_split

log = logging.getLogger(__name__)

MODEL_NAME_IN_RUN = "model"
# Pinned from the running interpreter: inferring requirements costs ~10 s per log_model.
PINNED_PACKAGES = ("mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle")
INPUT_EXAMPLE_ROWS = 5
# MLflow accepts at most 1000 metrics per log_batch call.
_METRICS_PER_BATCH = 1000


@dataclass(frozen=True)
class TrainingResult:
    """What a training run produced.

    :param run_id: the MLflow run holding params, metrics and the model.
    :param model_uri: ``models:/m-<id>`` URI of the logged model; register this one.
    :param data_fingerprint: fingerprint of the cutoff snapshot the run trained on.
    :param training_seconds: wall time of feature building plus estimator fitting.
    :param snapshot_path: the run's artifact directory holding the snapshot (None: not kept).
    """

    run_id: str
    model_uri: str
    data_fingerprint: str
    training_seconds: float
    snapshot_path: str | None = None


# The fluent API's URI is one per process: a scope holds it until it has restored the caller's.
# Reentrant, so a scope may nest in another on the same thread.
_FLUENT_URI_LOCK = threading.RLock()


@contextmanager
def tracking_uri_scope(tracking_uri: str | None) -> Iterator[None]:
    """Use tracking_uri as MLflow's tracking URI inside the block, then restore the caller's.

    Another thread's scope waits until this one ends.

    :param tracking_uri: the URI to use; None leaves the current setting alone.
    """
    if tracking_uri is None:
        yield
        return
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _FLUENT_URI_LOCK:
        # No public getter tells "unset" from "defaulted", so read MLflow's own global; the env var
        # is saved too because set_tracking_uri(None) would otherwise unset a caller's variable.
        previous_global = tracking_utils._tracking_uri
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous_global)
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """Return the id of experiment name, creating it (with artifact_location) when missing.

    The design guide's experiment tags (project, version, description) are set on a new experiment
    and added to an existing one that lacks them; a value someone already set is kept.

    :param client: client bound to the tracking server.
    :param name: experiment name.
    :param artifact_location: artifact root for a new experiment; None = server default.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location, tags=dict(EXPERIMENT_TAGS))
    if experiment.lifecycle_stage != "active":
        raise ValueError(f"Experiment {name!r} ({experiment.experiment_id}) is deleted; restore it")
    for key, value in EXPERIMENT_TAGS.items():
        if key not in experiment.tags:
            _add_experiment_tag(client, experiment.experiment_id, key, value)
    return experiment.experiment_id


def _add_experiment_tag(client: MlflowClient, experiment_id: str, key: str, value: str) -> None:
    """Tag the experiment; an account that may log runs but not edit the experiment still trains."""
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except MlflowException as exc:
        if exc.error_code != "PERMISSION_DENIED":
            raise
        log.warning("Experiment %s lacks tag %s, and this account may not set it: %s", experiment_id, key, exc.message)


def pip_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """Return exact pins of the packages the pyfunc model needs, from this interpreter.

    A local version label (torch's "+cpu") is dropped: pip cannot resolve it from PyPI.

    :param extra: packages needed beyond PINNED_PACKAGES (e.g. "torch").
    """
    return [
        f"{package}=={importlib.metadata.version(package).split('+')[0]}"
        for package in (*PINNED_PACKAGES, *extra)
    ]


def model_signature() -> ModelSignature:
    """The signature shared by every model type (see pyfunc's module docstring).

    movieId is optional because recommend mode takes userId alone; the output schema is the
    score mode's (MLflow does not enforce outputs, and recommend mode returns a frame).
    """
    return ModelSignature(
        inputs=Schema([ColSpec("long", "userId"), ColSpec("long", "movieId", required=False)]),
        outputs=Schema([ColSpec("double")]),
        params=ParamSchema(
            [
                ParamSpec("mode", "string", DEFAULT_PARAMS["mode"]),
                ParamSpec("k", "long", DEFAULT_PARAMS["k"]),
            ]
        ),
    )


def data_quality_counts(ratings: pd.DataFrame) -> dict[str, int]:
    """Count the seed's data-quality inputs: duplicate pairs, missing values, out-of-range ratings.

    :param ratings: ratings frame (userId, movieId, rating, timestamp).
    """
    rating = ratings["rating"]
    return {
        "duplicate_count": int(ratings.duplicated(["userId", "movieId"]).sum()),
        "missing_values": int(ratings.isna().sum().sum()),
        "out_of_range": int(((rating < RATING_MIN) | (rating > RATING_MAX)).sum()),
    }


def dataset_params(
    *,
    data: MovieLensData,
    snapshot: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    cutoff: datetime | None,
    holdout_fraction: float,
    data_fingerprint: str,
    feature_count: int,
) -> dict[str, str]:
    """Return the ``dataset_*`` params the seed's validation and lineage code reads.

    :param data: the loaded data (for its source).
    :param snapshot: ratings before the cutoff.
    :param train: training part of the snapshot.
    :param holdout: holdout part of the snapshot.
    :param cutoff: the snapshot cutoff (None = all data).
    :param holdout_fraction: share of the snapshot held out.
    :param data_fingerprint: fingerprint of the snapshot.
    :param feature_count: number of input features of the model.
    """
    quality = data_quality_counts(snapshot)
    return {
        "dataset_source": data.source,
        "dataset_fingerprint": data_fingerprint,
        "dataset_cutoff": cutoff.isoformat() if cutoff is not None else "none",
        "dataset_holdout_fraction": str(holdout_fraction),
        "dataset_train_size": str(len(train)),
        "dataset_test_size": str(len(holdout)),
        "dataset_feature_count": str(feature_count),
        "dataset_n_users": str(snapshot["userId"].nunique()),
        "dataset_n_movies": str(snapshot["movieId"].nunique()),
        "dataset_duplicate_count": str(quality["duplicate_count"]),
        "dataset_missing_values": str(quality["missing_values"]),
        "dataset_out_of_range": str(quality["out_of_range"]),
    }


def _param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _log_curves(client: MlflowClient, run_id: str, curves: dict[str, list[float]]) -> None:
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, step)
        for key, values in curves.items()
        for step, value in enumerate(values)
    ]
    for start in range(0, len(metrics), _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _METRICS_PER_BATCH])


@contextmanager
def _staged_code() -> Iterator[str]:
    """Copy the ``include`` package (with only its recommender subpackage) to a temp dir.

    The pickled model refers to ``include.recommender.*`` classes; shipping that package as the
    model's code_paths lets a fresh interpreter unpickle it without this repository.
    """
    package_dir = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="recommender-code-") as tmp:
        staged = Path(tmp) / package_dir.name
        staged.mkdir()
        shutil.copy2(package_dir / "__init__.py", staged / "__init__.py")
        shutil.copytree(
            Path(__file__).resolve().parent,
            staged / Path(__file__).resolve().parent.name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        yield str(staged)


def train_and_log(
    *,
    data: MovieLensData,
    model_type: str,
    hyperparameters: dict[str, Any],
    experiment_name: str,
    tracking_uri: str | None,
    cutoff: datetime | None,
    run_tags: dict[str, str],
    holdout_fraction: float = 0.2,
    artifact_location: str | None = None,
    keep_snapshot: bool = True,
) -> TrainingResult:
    """Fit model_type on the training part of the cutoff snapshot; log everything to one run.

    Configuration errors (unknown model_type, bad hyperparameters) raise before any run is
    created; any later failure ends the run FAILED and propagates.

    :param data: ratings and movies.
    :param model_type: one of models.MODEL_TYPES.
    :param hyperparameters: estimator hyperparameters (merged over the type's defaults).
    :param experiment_name: MLflow experiment, created when missing.
    :param tracking_uri: MLflow tracking URI; None uses the process's current one.
    :param cutoff: only ratings strictly before this instant are used (None = all).
    :param run_tags: tags set on the run (e.g. airflow_dag_id, airflow_run_id, submitted_by), over
        the design guide's run tags (timestamp, project, stage, model_type, training_stage).
    :param holdout_fraction: latest share of the snapshot kept out of training for evaluation.
    :param artifact_location: artifact root used when the experiment has to be created.
    :param keep_snapshot: keep the cutoff snapshot in the run's artifacts (``data_snapshot``),
        so the evaluation reads exactly these rows (``evaluate_run_snapshot``).
    """
    effective = effective_hyperparameters(model_type, hyperparameters)
    if model_type in SKLEARN_MODEL_TYPES:
        build_estimator(model_type, hyperparameters)  # sklearn checks its values here
    params = {"model_type": model_type, **{k: _param_value(v) for k, v in effective.items()}}
    with tracking_uri_scope(tracking_uri):
        client = MlflowClient()
        experiment_id = ensure_experiment(client, experiment_name, artifact_location)
        # The context manager ends the run FAILED (and re-raises) on any exception inside.
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name(model_type, cutoff), tags=dict(run_tags)
        ) as run:
            # The guide's timestamp is the run's own start; a caller's tag of the same name wins.
            guide_tags = default_run_tags(model_type, run.info.start_time)
            mlflow.set_tags({k: v for k, v in guide_tags.items() if k not in run_tags})
            snapshot = ratings_before(data.ratings, cutoff)
            data_fingerprint = fingerprint(snapshot)
            snapshot_path = None
            if keep_snapshot:
                kept = MovieLensData(ratings=snapshot, movies=data.movies, source=data.source, oracle=data.oracle)
                snapshot_path = log_snapshot(client, run.info.run_id, kept, data_fingerprint)
            mlflow.log_params(params)
            model_uri, training_seconds = _fit_and_log(
                client, run.info.run_id, model_type, effective, data, snapshot, cutoff,
                holdout_fraction, data_fingerprint,
            )
    return TrainingResult(
        run_id=run.info.run_id,
        model_uri=model_uri,
        data_fingerprint=data_fingerprint,
        training_seconds=training_seconds,
        snapshot_path=snapshot_path,
    )


def _fit_and_log(
    client: MlflowClient,
    run_id: str,
    model_type: str,
    effective: dict[str, Any],
    data: MovieLensData,
    snapshot: pd.DataFrame,
    cutoff: datetime | None,
    holdout_fraction: float,
    data_fingerprint: str,
) -> tuple[str, float]:
    """Fit on the snapshot's training part in the active run; log params, metrics, curves, model.

    Returns the logged model's URI and the fitting's wall time.
    """
    train, holdout = temporal_split(snapshot, holdout_fraction)
    with tempfile.TemporaryDirectory(prefix="model-files-") as workdir:
        started = time.perf_counter()
        fitted = fit_model(model_type, effective, train, data.movies, Path(workdir))
        training_seconds = time.perf_counter() - started
        mlflow.log_params(
            dataset_params(
                data=data, snapshot=snapshot, train=train, holdout=holdout, cutoff=cutoff,
                holdout_fraction=holdout_fraction, data_fingerprint=data_fingerprint,
                feature_count=fitted.feature_count,
            )
        )
        mlflow.log_metrics(
            {
                **fitted.metrics,
                "training_time_seconds": training_seconds,
                # The seed also keeps these sizes as metrics (besides the params).
                "dataset_train_size": float(len(train)),
                "dataset_test_size": float(len(holdout)),
                "dataset_feature_count": float(fitted.feature_count),
            }
        )
        _log_curves(client, run_id, fitted.curves)
        return _log_model(fitted, train).model_uri, training_seconds


def _log_model(fitted: FittedModel, train: pd.DataFrame) -> Any:
    """Log the fitted pyfunc model (signature, example, pinned requirements) in the active run."""
    example = train[list(INPUT_COLUMNS)].head(INPUT_EXAMPLE_ROWS).reset_index(drop=True)
    with _staged_code() as code_dir, pins_checked_cheaply():
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=fitted.python_model,
            artifacts=fitted.artifacts or None,
            code_paths=[code_dir],
            signature=model_signature(),
            input_example=example,
            pip_requirements=pip_requirements(fitted.packages),
        )
