"""Holdout evaluation of a training run: metrics, report and ROC plot logged to the same run.

Logged metrics (step 0): the seed's classification metrics (METRIC_NAMES) on the holdout pairs;
ranking metrics of the model's top-10 lists (RANKING_METRIC_NAMES; protocol in
holdout_metrics.py); on synthetic data the oracle's ceilings (ORACLE_METRIC_NAMES); inference
latency of a 100-row request and the logged model's size (SERVING_METRIC_NAMES).

Classification metrics use the whole holdout; ranking metrics the users the RankingProtocol
picks (every holdout user up to DEFAULT_RANKING_USERS, else a seeded sample), which the report's
``ranking`` section records with the chunk size used.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from include.recommender.data_snapshot import SnapshotError, load_snapshot
from include.recommender.features import LABEL_THRESHOLD, labels
from include.recommender.holdout_metrics import (
    LATENCY_REQUEST_ROWS,
    RANKING_K,
    RankingProtocol,
    inference_latency_ms,
    model_ranking_metrics,
    oracle_ranking_metrics,
)
from include.recommender.pyfunc import INPUT_COLUMNS
from include.recommender.ranking import CatalogIndex
from include.recommender.requirements_check import pins_checked_cheaply
from include.recommender.schema import DataValidationError, MovieLensData
from include.recommender.snapshot import fingerprint, ratings_before, temporal_split
from include.recommender.training import MODEL_NAME_IN_RUN, tracking_uri_scope

METRIC_NAMES = ("accuracy", "precision", "recall", "f1_score", "roc_auc")
RANKING_METRIC_NAMES = tuple(
    f"{name}_at_{RANKING_K}" for name in ("precision", "recall", "ndcg", "coverage", "rated_ndcg")
)
ORACLE_METRIC_NAMES = (
    f"oracle_ndcg_at_{RANKING_K}",
    f"oracle_rated_ndcg_at_{RANKING_K}",
    "ndcg_share_of_oracle",
)
SERVING_METRIC_NAMES = ("inference_p50_ms", "inference_p95_ms", "model_size_bytes")
REPORT_DIR = "evaluation"


def classification_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Return accuracy, weighted precision/recall/f1_score (as the seed) and roc_auc.

    :param y_true: binary labels (0/1).
    :param y_prob: predicted probability of label 1, same length.
    :param threshold: probability at or above which a pair is predicted positive.
    """
    y_true = np.asarray(y_true).ravel()
    y_prob = np.asarray(y_prob, dtype=np.float64).ravel()
    if len(y_true) != len(y_prob):
        raise ValueError(f"y_true has {len(y_true)} rows but y_prob has {len(y_prob)}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on an empty holdout")
    classes = set(np.unique(y_true).tolist())
    if not classes <= {0, 1}:
        raise ValueError(f"y_true must hold only 0/1 labels, got {sorted(classes)}")
    if not np.all(np.isfinite(y_prob)) or y_prob.min() < 0.0 or y_prob.max() > 1.0:
        non_finite = int((~np.isfinite(y_prob)).sum())
        raise ValueError(
            f"y_prob must be finite probabilities in [0, 1]; got range "
            f"[{np.nanmin(y_prob)}, {np.nanmax(y_prob)}] with {non_finite} non-finite"
        )
    if len(classes) < 2:
        raise ValueError(
            f"roc_auc is undefined: y_true holds only class {classes.pop()} ({len(y_true)} rows)"
        )
    y_pred = (y_prob >= threshold).astype(np.int64)
    # zero_division=0: a class never predicted scores 0 precision rather than NaN.
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="weighted", zero_division=0
    )
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1_score": float(f1),
        "roc_auc": float(roc_auc_score(y_true, y_prob)),
    }
    bad = [name for name, value in metrics.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"metric(s) {bad} are not finite: {metrics}")
    return metrics


def _roc_png(y_true: np.ndarray, y_prob: np.ndarray, auc: float, path: Path) -> None:
    # The Figure API with its default Agg canvas: no pyplot global state, no display needed.
    from matplotlib.figure import Figure

    fpr, tpr, _ = roc_curve(y_true, y_prob)
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.plot(fpr, tpr, label=f"model (AUC = {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set_xlabel("False positive rate")
    axes.set_ylabel(f"True positive rate (rating >= {LABEL_THRESHOLD})")
    axes.set_title("Holdout ROC curve")
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=100)


def _check_same_data(run: Any, data_fingerprint: str, holdout_fraction: float) -> None:
    """Refuse to evaluate on data other than what the run trained on."""
    params = run.data.params
    expected = params.get("dataset_fingerprint")
    if expected is None:
        raise DataValidationError(f"run {run.info.run_id} has no dataset_fingerprint param")
    if expected != data_fingerprint:
        raise DataValidationError(
            f"data fingerprint mismatch for run {run.info.run_id}: trained on {expected}, "
            f"evaluation snapshot is {data_fingerprint}"
        )
    logged_fraction = params.get("dataset_holdout_fraction")
    if logged_fraction is not None and float(logged_fraction) != float(holdout_fraction):
        raise DataValidationError(
            f"holdout_fraction mismatch for run {run.info.run_id}: trained with "
            f"{logged_fraction}, evaluating with {holdout_fraction}"
        )


def evaluate_and_log(
    *,
    run_id: str,
    data: MovieLensData,
    cutoff: datetime | None,
    holdout_fraction: float = 0.2,
    tracking_uri: str | None,
    ranking_protocol: RankingProtocol | None = None,
) -> dict[str, float]:
    """Score the run's model on its holdout; log metrics, report JSON and ROC PNG to the run.

    :param run_id: the training run (its dataset_fingerprint must match the data given).
    :param data: the same data the run was trained on.
    :param cutoff: the same cutoff the run was trained with.
    :param holdout_fraction: the same holdout fraction the run was trained with.
    :param tracking_uri: MLflow tracking URI; None uses the process's current one.
    :param ranking_protocol: which holdout users the ranking metrics rank, and how many at
        once; None: RankingProtocol() (every user up to DEFAULT_RANKING_USERS).
    """
    snapshot = ratings_before(data.ratings, cutoff)
    return _evaluate(run_id, data, snapshot, fingerprint(snapshot), holdout_fraction, tracking_uri,
                     ranking_protocol or RankingProtocol())


def _evaluate(
    run_id: str,
    data: MovieLensData,
    snapshot: pd.DataFrame,
    data_fingerprint: str,
    holdout_fraction: float,
    tracking_uri: str | None,
    protocol: RankingProtocol,
) -> dict[str, float]:
    """evaluate_and_log once the cutoff snapshot and its fingerprint are known."""
    # The process-wide URI, not only tracking_uri= on the calls: MLflow resolves the logged model
    # behind runs:/<id>/model with a client on the global URI (ModelsArtifactRepository).
    with tracking_uri_scope(tracking_uri), tempfile.TemporaryDirectory(prefix="evaluation-") as tmp:
        client = MlflowClient()
        _check_same_data(client.get_run(run_id), data_fingerprint, holdout_fraction)
        train, holdout = temporal_split(snapshot, holdout_fraction)
        model_dir = mlflow.artifacts.download_artifacts(
            f"runs:/{run_id}/{MODEL_NAME_IN_RUN}", dst_path=str(Path(tmp) / "model")
        )
        with pins_checked_cheaply():
            model = mlflow.pyfunc.load_model(model_dir)
        scored = _score_holdout(model, train, holdout, data, protocol)
        scored.metrics["model_size_bytes"] = float(_directory_bytes(Path(model_dir)))
        bad = [name for name, value in scored.metrics.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"metric(s) {bad} are not finite: {scored.metrics}")
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in scored.metrics.items()])
        _log_reports(client, run_id, Path(tmp), scored, train, holdout, data_fingerprint, protocol)
    return scored.metrics


def evaluate_run_snapshot(
    *,
    run_id: str,
    data_fingerprint: str,
    cutoff: datetime | None,
    holdout_fraction: float = 0.2,
    tracking_uri: str | None,
    ranking_protocol: RankingProtocol | None = None,
) -> dict[str, float]:
    """``evaluate_and_log`` on the data snapshot the run kept, never on the source again.

    Raises SnapshotError (naming the run and the fingerprints) when the snapshot is missing,
    altered, or holds other ratings than data_fingerprint names.

    :param run_id: the training run (trained with ``keep_snapshot``).
    :param data_fingerprint: the fingerprint training reported for the run.
    :param cutoff: the cutoff the run was trained with.
    :param holdout_fraction: the holdout fraction the run was trained with.
    :param tracking_uri: MLflow tracking URI; None uses the process's current one.
    :param ranking_protocol: as for ``evaluate_and_log``.
    """
    with tracking_uri_scope(tracking_uri), tempfile.TemporaryDirectory(prefix="snapshot-") as tmp:
        data = load_snapshot(MlflowClient(), run_id, data_fingerprint, Path(tmp))
    # The snapshot holds only ratings before the cutoff, and load_snapshot has fingerprinted
    # them: no second filter or fingerprint (each a copy or a sort of every rating).
    _check_cutoff(data.ratings, cutoff, run_id)
    return _evaluate(run_id, data, data.ratings, data_fingerprint, holdout_fraction, tracking_uri,
                     ranking_protocol or RankingProtocol())


def _check_cutoff(ratings: pd.DataFrame, cutoff: datetime | None, run_id: str) -> None:
    """Refuse a snapshot holding ratings at or after the cutoff the caller says training used."""
    if cutoff is None or len(ratings) == 0:
        return
    bound = (cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=timezone.utc)).timestamp()
    latest = int(ratings["timestamp"].max())
    if latest >= bound:
        raise SnapshotError(
            f"data snapshot of run {run_id} holds ratings up to {latest} (unix seconds), "
            f"not only before the cutoff {cutoff.isoformat()}"
        )


@dataclass
class _HoldoutScores:
    """What scoring the holdout produced, for the metrics and the report."""

    metrics: dict[str, float]
    y_true: np.ndarray
    y_prob: np.ndarray
    predict_seconds: float
    catalog: CatalogIndex
    recommendations: pd.DataFrame


def _score_holdout(
    model: Any, train: pd.DataFrame, holdout: pd.DataFrame, data: MovieLensData, protocol: RankingProtocol
) -> _HoldoutScores:
    """Classification, ranking, oracle and latency metrics of model on the holdout."""
    pairs = holdout[list(INPUT_COLUMNS)].reset_index(drop=True)
    started = time.perf_counter()
    y_prob = np.asarray(model.predict(pairs), dtype=np.float64).ravel()
    predict_seconds = time.perf_counter() - started
    y_true = labels(holdout)
    metrics = classification_metrics(y_true, y_prob)
    catalog = CatalogIndex.fit(train, data.movies)
    ranking, recommendations = model_ranking_metrics(model, catalog, holdout, y_prob, protocol=protocol)
    metrics.update(ranking)
    if data.oracle is not None:
        metrics.update(oracle_ranking_metrics(data.oracle, catalog, holdout, protocol=protocol))
        ceiling = metrics[f"oracle_ndcg_at_{RANKING_K}"]
        if ceiling > 0:
            metrics["ndcg_share_of_oracle"] = metrics[f"ndcg_at_{RANKING_K}"] / ceiling
    metrics.update(inference_latency_ms(model, pairs))
    return _HoldoutScores(metrics, y_true, y_prob, predict_seconds, catalog, recommendations)


def _log_reports(
    client: MlflowClient,
    run_id: str,
    tmp: Path,
    scored: _HoldoutScores,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    data_fingerprint: str,
    protocol: RankingProtocol,
) -> None:
    """Write the report JSON and the ROC PNG and log both under REPORT_DIR."""
    report = _report(scored.metrics, scored.y_true, scored.y_prob, train, holdout, data_fingerprint,
                     scored.predict_seconds)
    report["ranking"] = _ranking_report(scored.recommendations, holdout, scored.catalog, protocol)
    report_path = tmp / "report.json"
    report_path.write_text(json.dumps(report, indent=2, sort_keys=True))
    roc_path = tmp / "roc_curve.png"
    _roc_png(scored.y_true, scored.y_prob, scored.metrics["roc_auc"], roc_path)
    client.log_artifact(run_id, str(report_path), artifact_path=REPORT_DIR)
    client.log_artifact(run_id, str(roc_path), artifact_path=REPORT_DIR)


def _directory_bytes(directory: Path) -> int:
    """Total size of the files under directory (the logged model: weights, code, env files)."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _ranking_report(
    recommendations: pd.DataFrame,
    holdout: pd.DataFrame,
    catalog: CatalogIndex,
    protocol: RankingProtocol,
) -> dict[str, Any]:
    """How the ranking metrics were computed, so a reader can interpret them."""
    users = protocol.users(holdout)
    ranked = holdout[holdout["userId"].isin(users)]
    positives = ranked.loc[labels(ranked) == 1, "userId"]
    return {
        **protocol.describe(holdout, users, catalog),
        "k": RANKING_K,
        "relevance": f"holdout rating >= {LABEL_THRESHOLD}",
        "candidates": "every catalog movie the user did not rate in training (full catalog)",
        "ranking_score": "propensity (share of training users who rated the movie) x P(like)",
        "users": int(len(users)),  # the users ranked: all of holdout_users unless users_sampled
        "users_with_relevant_items": int(positives.nunique()),
        "catalog_size": int(len(catalog.movie_ids)),
        "distinct_movies_recommended": int(recommendations["movieId"].nunique()),
        "latency_request_rows": LATENCY_REQUEST_ROWS,
    }


def _report(
    metrics: dict[str, float],
    y_true: np.ndarray,
    y_prob: np.ndarray,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    data_fingerprint: str,
    predict_seconds: float,
) -> dict[str, Any]:
    """Build the evaluation report: metrics plus what is needed to read them."""
    y_pred = (y_prob >= 0.5).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    known_users = holdout["userId"].isin(train["userId"].unique()).to_numpy()
    return {
        "metrics": metrics,
        "threshold": 0.5,
        "label": f"rating >= {LABEL_THRESHOLD}",
        "averaging": "weighted (precision, recall, f1_score)",
        "data_fingerprint": data_fingerprint,
        "holdout_size": int(len(holdout)),
        "holdout_positive_rate": float(y_true.mean()),
        "holdout_unknown_user_share": float(1.0 - known_users.mean()),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "predict_seconds": predict_seconds,
        "predict_ms_per_1000_rows": 1000.0 * predict_seconds / max(len(holdout), 1) * 1000.0,
    }
