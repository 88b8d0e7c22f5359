"""Metric functions on hand-computed cases, and evaluate_and_log against a real MLflow."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from include.recommender.evaluation import (
    METRIC_NAMES,
    ORACLE_METRIC_NAMES,
    RANKING_METRIC_NAMES,
    SERVING_METRIC_NAMES,
    classification_metrics,
    evaluate_and_log,
)
from include.recommender.holdout_metrics import DEFAULT_RANKING_USERS, RankingProtocol
from include.recommender.schema import DataValidationError, MovieLensData
from include.recommender.synthetic import generate_movielens
from include.recommender.training import train_and_log


def test_balanced_hand_computed_case():
    # Predictions [0, 1, 0, 1]: one right per class; AUC = 3 of 4 (pos, neg) pairs ordered.
    metrics = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert metrics == pytest.approx(
        {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1_score": 0.5, "roc_auc": 0.75}
    )


def test_imbalanced_case_uses_weighted_averages():
    # Predictions [1, 1, 0, 0]. Class 1 (weight 3/4): P=1, R=2/3, F1=0.8;
    # class 0 (weight 1/4): P=1/2, R=1, F1=2/3.
    metrics = classification_metrics([1, 1, 1, 0], [0.9, 0.8, 0.3, 0.2])
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(0.75 * 1 + 0.25 * 0.5)
    assert metrics["recall"] == pytest.approx(0.75 * (2 / 3) + 0.25 * 1)
    assert metrics["f1_score"] == pytest.approx(0.75 * 0.8 + 0.25 * (2 / 3))
    assert metrics["roc_auc"] == pytest.approx(1.0)


def test_threshold_is_inclusive():
    assert classification_metrics([0, 1], [0.2, 0.5])["accuracy"] == 1.0
    assert classification_metrics([0, 1], [0.2, 0.5], threshold=0.6)["accuracy"] == 0.5


def test_a_class_never_predicted_scores_zero_not_nan():
    metrics = classification_metrics([0, 1, 1, 1], [0.9, 0.8, 0.7, 0.6])
    assert metrics["precision"] == pytest.approx(0.75 * 0.75)
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.fixture(scope="module", autouse=True)
def _single_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait; on a shared CI box that turns seconds
    into minutes. One thread keeps the tests' wall time stable."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.mark.parametrize("only", [0, 1])
def test_single_class_refuses_roc_auc(only):
    with pytest.raises(ValueError, match=f"roc_auc is undefined.*only class {only}"):
        classification_metrics([only] * 3, [0.2, 0.5, 0.9])


@pytest.mark.parametrize(
    ("y_true", "y_prob", "message"),
    [
        ([0, 1], [0.5], "2 rows but y_prob has 1"),
        ([], [], "empty"),
        ([0, 2], [0.1, 0.9], "0/1"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [0.1, float("nan")], "non-finite"),
    ],
)
def test_bad_inputs_are_refused(y_true, y_prob, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_prob)


@pytest.fixture(scope="module")
def data():
    return generate_movielens(n_users=80, n_movies=300, n_ratings=6000, seed=13)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory, _empty_mlflow_db):
    root = tmp_path_factory.mktemp("mlflow-eval")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")  # already migrated: saves seconds
    uri = f"sqlite:///{root}/mlflow.db"
    result = train_and_log(
        data=data,
        model_type="hist_gradient_boosting",
        hyperparameters={"max_iter": 60},
        experiment_name="recommender-eval-test",
        tracking_uri=uri,
        cutoff=None,
        run_tags={},
        artifact_location=str(root / "artifacts"),
    )
    return {"uri": uri, "run_id": result.run_id, "root": root}


def test_evaluate_and_log_logs_metrics_report_and_plot(data, run):
    metrics = evaluate_and_log(
        run_id=run["run_id"], data=data, cutoff=None, tracking_uri=run["uri"]
    )
    client = MlflowClient(run["uri"])
    logged = client.get_run(run["run_id"]).data.metrics

    assert set(metrics) == {
        *METRIC_NAMES, *RANKING_METRIC_NAMES, *ORACLE_METRIC_NAMES, *SERVING_METRIC_NAMES
    }
    assert all(0.0 <= metrics[k] <= 1.0 for k in (*METRIC_NAMES, *RANKING_METRIC_NAMES))
    assert {k: logged[k] for k in metrics} == pytest.approx(metrics)
    assert 0.0 < metrics["oracle_ndcg_at_10"] <= 1.0
    assert metrics["ndcg_share_of_oracle"] == pytest.approx(
        metrics["ndcg_at_10"] / metrics["oracle_ndcg_at_10"]
    )
    assert 0.0 < metrics["inference_p50_ms"] <= metrics["inference_p95_ms"]
    assert metrics["model_size_bytes"] > 10_000
    files = {a.path for a in client.list_artifacts(run["run_id"], "evaluation")}
    assert files == {"evaluation/report.json", "evaluation/roc_curve.png"}
    report_path = client.download_artifacts(
        run["run_id"], "evaluation/report.json", str(run["root"])
    )
    with open(report_path) as handle:
        report = json.load(handle)
    assert report["metrics"] == pytest.approx(metrics)
    assert report["holdout_size"] == sum(report["confusion_matrix"].values())
    assert report["ranking"]["k"] == 10
    assert report["ranking"]["users_with_relevant_items"] <= report["ranking"]["users"]
    # The default protocol ranks every holdout user of data this small, in one chunk.
    assert report["ranking"]["users"] == report["ranking"]["holdout_users"]
    assert report["ranking"]["users_sampled"] is False
    assert report["ranking"]["user_sample_size"] == DEFAULT_RANKING_USERS
    assert report["ranking"]["user_sample_seed"] == 0
    assert report["ranking"]["users_per_chunk"] >= report["ranking"]["users"]
    png = client.download_artifacts(run["run_id"], "evaluation/roc_curve.png", str(run["root"]))
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def _report(run) -> dict:
    client = MlflowClient(run["uri"])
    path = client.download_artifacts(run["run_id"], "evaluation/report.json", str(run["root"]))
    with open(path) as handle:
        return json.load(handle)


def test_a_sampled_ranking_protocol_is_recorded_in_the_report(data, run):
    protocol = RankingProtocol(user_sample_size=12, seed=3, users_per_chunk=5)
    full = evaluate_and_log(run_id=run["run_id"], data=data, cutoff=None, tracking_uri=run["uri"])
    sampled = evaluate_and_log(
        run_id=run["run_id"], data=data, cutoff=None, tracking_uri=run["uri"], ranking_protocol=protocol
    )

    ranking = _report(run)["ranking"]
    assert ranking["users"] == 12 and ranking["holdout_users"] > 12
    assert ranking["users_sampled"] is True
    assert ranking["user_sample_size"] == 12 and ranking["user_sample_seed"] == 3
    assert ranking["users_per_chunk"] == 5
    # Classification metrics stay on the whole holdout; only ranking metrics see the sample.
    assert {k: sampled[k] for k in METRIC_NAMES} == {k: full[k] for k in METRIC_NAMES}


def test_evaluate_refuses_a_fingerprint_mismatch(data, run):
    changed = data.ratings.copy()
    changed.loc[0, "rating"] = 5.5 - changed.loc[0, "rating"]
    other = MovieLensData(ratings=changed, movies=data.movies, source=data.source)
    with pytest.raises(DataValidationError, match="fingerprint mismatch"):
        evaluate_and_log(run_id=run["run_id"], data=other, cutoff=None, tracking_uri=run["uri"])


def test_evaluate_refuses_a_different_holdout_fraction(data, run):
    with pytest.raises(DataValidationError, match="holdout_fraction"):
        evaluate_and_log(
            run_id=run["run_id"],
            data=data,
            cutoff=None,
            holdout_fraction=0.3,
            tracking_uri=run["uri"],
        )


def test_roc_auc_from_probabilities_not_labels():
    # Ranking matters for AUC even when thresholded predictions are identical.
    y = np.array([0, 1, 0, 1])
    assert classification_metrics(y, [0.1, 0.2, 0.3, 0.4])["roc_auc"] == pytest.approx(0.75)


def test_real_data_without_an_oracle_logs_no_oracle_metrics(data, run):
    plain = MovieLensData(ratings=data.ratings, movies=data.movies, source=data.source)
    metrics = evaluate_and_log(run_id=run["run_id"], data=plain, cutoff=None, tracking_uri=run["uri"])
    assert not set(ORACLE_METRIC_NAMES) & set(metrics)
    assert set(RANKING_METRIC_NAMES) <= set(metrics)


def test_the_kept_snapshot_evaluates_exactly_like_the_source_data(data, run):
    """log's path (the snapshot train kept) and the source give the same figures: same rows, oracle included."""
    from include.recommender.evaluation import evaluate_run_snapshot
    from include.recommender.snapshot import fingerprint

    from_source = evaluate_and_log(run_id=run["run_id"], data=data, cutoff=None, tracking_uri=run["uri"])
    from_snapshot = evaluate_run_snapshot(
        run_id=run["run_id"], data_fingerprint=fingerprint(data.ratings), cutoff=None, tracking_uri=run["uri"]
    )
    timing = {"inference_p50_ms", "inference_p95_ms"}
    assert set(from_snapshot) == set(from_source)
    assert {k: v for k, v in from_snapshot.items() if k not in timing} == {
        k: v for k, v in from_source.items() if k not in timing
    }


def test_a_snapshot_past_the_stated_cutoff_is_refused(data, run):
    from datetime import datetime, timezone

    from include.recommender.data_snapshot import SnapshotError
    from include.recommender.evaluation import evaluate_run_snapshot
    from include.recommender.snapshot import fingerprint

    early = datetime.fromtimestamp(int(data.ratings["timestamp"].median()), tz=timezone.utc)
    with pytest.raises(SnapshotError, match=f"run {run['run_id']} holds ratings up to .* the cutoff {re.escape(early.isoformat())}"):
        evaluate_run_snapshot(
            run_id=run["run_id"], data_fingerprint=fingerprint(data.ratings), cutoff=early, tracking_uri=run["uri"]
        )
