"""Champion monitoring: the window, the degraded-or-not decision as a table, and the MLflow record."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from include.governance.monitoring import (
    ANCHOR_INTERVAL_END,
    ANCHOR_LATEST_RATING,
    MonitoringStatus,
    assess,
    monitoring_window,
    validation_metrics_from_tags,
)
from include.governance.policy import GovernancePolicy, ValidationPolicy

UTC = timezone.utc
POLICY = ValidationPolicy()
VALIDATION = {"accuracy": 0.80, "precision": 0.78, "recall": 0.76, "f1_score": 0.77, "roc_auc": 0.85}


# --- the window ---------------------------------------------------------------------------

def test_window_ends_at_the_interval_end_when_the_data_reaches_it():
    end = datetime(2025, 6, 1, tzinfo=UTC)
    window = monitoring_window(end, datetime(2025, 12, 30, tzinfo=UTC), 30)
    assert (window.start, window.end, window.anchor) == (end - timedelta(days=30), end, ANCHOR_INTERVAL_END)
    assert window.staleness_days == 0


def test_window_follows_the_data_when_the_interval_end_is_past_it():
    latest = datetime(2025, 12, 30, 23, 12, 54, tzinfo=UTC)
    window = monitoring_window(datetime(2026, 11, 26, tzinfo=UTC), latest, 7)
    assert window.end == latest + timedelta(seconds=1)  # the latest rating is inside [start, end)
    assert window.start == window.end - timedelta(days=7)
    assert window.anchor == ANCHOR_LATEST_RATING
    assert window.staleness_days == pytest.approx((datetime(2026, 11, 26, tzinfo=UTC) - window.end).total_seconds() / 86400)


def test_window_of_a_rating_one_second_before_the_end_is_not_moved():
    end = datetime(2025, 6, 1, tzinfo=UTC)
    assert monitoring_window(end, end - timedelta(seconds=1), 30).anchor == ANCHOR_INTERVAL_END


def test_naive_times_are_utc_and_no_data_keeps_the_interval_end():
    window = monitoring_window(datetime(2025, 6, 1), None, 1)
    assert window.end == datetime(2025, 6, 1, tzinfo=UTC)
    assert window.anchor == ANCHOR_INTERVAL_END


def test_a_window_of_no_days_is_refused():
    with pytest.raises(ValueError, match="window_days"):
        monitoring_window(datetime(2025, 6, 1, tzinfo=UTC), None, 0)


# --- the decision -------------------------------------------------------------------------

def decide(window=None, validation=VALIDATION, margin=0.05, n_ratings=1000, n_positive=450, min_ratings=200, policy=POLICY):
    metrics = dict(VALIDATION) if window is None else window
    return assess(
        metrics, n_ratings=n_ratings, n_positive=n_positive, validation_metrics=validation,
        policy=policy, margin=margin, min_ratings=min_ratings,
    )


def with_(**changes):
    return {**VALIDATION, **changes}


@pytest.mark.parametrize(
    ("window", "validation", "margin", "status", "reason"),
    [
        # Same as at validation: holds.
        (with_(), VALIDATION, 0.05, "holds", "within 0.05"),
        # Better than at validation: holds.
        (with_(accuracy=0.9, roc_auc=0.95), VALIDATION, 0.05, "holds", None),
        # Policy minimum (accuracy 0.75) just above / at / just below; drift stays within 0.05.
        (with_(accuracy=0.7501), VALIDATION, 0.05, "holds", None),
        (with_(accuracy=0.75), VALIDATION, 0.05, "holds", None),
        (with_(accuracy=0.7499), VALIDATION, 0.06, "degraded", "accuracy 0.7499 is below the policy minimum 0.75"),
        (with_(precision=0.6999), VALIDATION, 0.1, "degraded", "precision 0.6999 is below the policy minimum 0.7"),
        (with_(recall=0.6499), VALIDATION, 0.2, "degraded", "recall 0.6499 is below the policy minimum 0.65"),
        # Drift from validation (0.90) just within / exactly / just beyond the margin, above the policy.
        (with_(accuracy=0.8501), with_(accuracy=0.90), 0.05, "holds", None),
        (with_(accuracy=0.85), with_(accuracy=0.90), 0.05, "holds", None),
        (with_(accuracy=0.8499), with_(accuracy=0.90), 0.05, "degraded", "accuracy 0.8499 is +0.0501 below its validation value 0.9000"),
        # Metrics without a policy minimum drift too.
        (with_(roc_auc=0.7999), VALIDATION, 0.05, "degraded", "roc_auc 0.7999 is +0.0501 below"),
        (with_(f1_score=0.72), VALIDATION, 0.05, "holds", None),
        # A zero margin: any drop counts.
        (with_(f1_score=0.7699), VALIDATION, 0.0, "degraded", "f1_score"),
        # Both rules at once: both reasons.
        (with_(accuracy=0.70), VALIDATION, 0.05, "degraded", "policy minimum"),
        # Unmeasured metrics count against the champion, never for it.
        (with_(accuracy=math.nan), VALIDATION, 0.05, "degraded", "accuracy could not be measured on the window"),
        ({k: v for k, v in VALIDATION.items() if k != "recall"}, VALIDATION, 0.05, "degraded", "recall could not be measured"),
        (with_(roc_auc=None), VALIDATION, 0.05, "degraded", "roc_auc could not be measured"),
        # No validation tags (an old champion): only the policy applies.
        (with_(accuracy=0.76), {}, 0.05, "holds", "compared: none"),
        (with_(accuracy=0.74), {}, 0.05, "degraded", "below the policy minimum"),
    ],
)
def test_decision_table(window, validation, margin, status, reason):
    decision = decide(window, validation, margin)
    assert decision.status.value == status, decision.reasons
    assert decision.degraded is (status == "degraded")
    if reason:
        assert reason in decision.reason
    if status == "degraded":
        assert all(reason_line for reason_line in decision.reasons)


def test_both_rules_give_both_reasons_once_each():
    decision = decide(with_(accuracy=math.nan))
    assert decision.reasons == ("accuracy could not be measured on the window",)
    decision = decide(with_(accuracy=0.70))
    assert len(decision.reasons) == 2
    assert {c.name for c in decision.checks if not c.passed} == {"accuracy_vs_policy", "accuracy_vs_validation"}


@pytest.mark.parametrize(
    ("n_ratings", "n_positive", "status"),
    [(199, 90, "insufficient_data"), (200, 90, "holds"), (0, 0, "insufficient_data"),
     (500, 0, "insufficient_data"), (500, 500, "insufficient_data"), (500, 1, "holds")],
)
def test_too_little_evidence_leaves_the_champion_alone(n_ratings, n_positive, status):
    decision = decide(n_ratings=n_ratings, n_positive=n_positive)
    assert decision.status.value == status
    assert not decision.degraded


def test_insufficient_data_wins_over_missing_metrics():
    assert decide({}, n_ratings=10).status is MonitoringStatus.INSUFFICIENT_DATA


def test_validation_metrics_are_read_from_the_tags():
    tags = {
        "validation_accuracy": "0.812300",
        "validation_precision": "nan",
        "validation_recall": "garbage",
        "validation_roc_auc": "0.9",
        "validation_status": "passed",
        "validation_inference_p95_ms": "3.2",
    }
    assert validation_metrics_from_tags(tags) == {"accuracy": 0.8123, "roc_auc": 0.9}


# --- the MLflow record ---------------------------------------------------------------------

@pytest.fixture
def small_data():
    from include.recommender.loading import load_movielens

    from tests.include.governance.monitor_support import SMALL_DATA

    return load_movielens(SMALL_DATA)


@pytest.fixture
def score(mlflow_client, mlflow_store):
    """Score the champion into the test's own store (artifacts included, never ./mlruns)."""
    from include.governance.champion_monitor import score_champion

    def run(client, data, end=datetime(2030, 1, 1, tzinfo=UTC), policy=None, model="monitored"):
        return score_champion(
            client, model_name=model, data=data, requested_end=end, policy=policy or GovernancePolicy.load(),
            run_tags={"airflow_run_id": "manual__test"}, artifact_location=mlflow_store["artifact_location"],
        )

    return run


def test_no_champion_logs_nothing(mlflow_client, small_data, score):
    assert score(mlflow_client, small_data) is None
    assert mlflow_client.get_experiment_by_name("movie_recommendation_monitoring") is None


@pytest.mark.parametrize(
    ("model", "validation", "status"),
    [("coin", "HIGH_VALIDATION", "degraded"), ("lookup", "MODEST_VALIDATION", "holds")],
)
def test_scoring_the_champion_logs_a_monitoring_run(mlflow_client, experiment_id, small_data, score, tmp_path, model, validation, status):
    from include.governance import champion_monitor as cm
    from tests.include.governance import monitor_support as ms

    python_model = ms.CoinModel() if model == "coin" else ms.LookupModel(small_data.ratings)
    version = ms.make_champion(mlflow_client, experiment_id, "monitored", python_model, getattr(ms, validation))
    policy = GovernancePolicy.load().with_overrides({"monitor_window_days": 45})
    scored = score(mlflow_client, small_data, policy=policy)

    assert scored.champion_version == version
    assert scored.window.anchor == ANCHOR_LATEST_RATING
    ratings = small_data.ratings
    in_window = ratings[(ratings.timestamp >= scored.window.start.timestamp()) & (ratings.timestamp < scored.window.end.timestamp())]
    assert scored.n_ratings == len(in_window) > 200
    assert int(ratings.timestamp.max()) in set(in_window.timestamp)
    assert scored.validation_metrics == getattr(ms, validation)
    if model == "lookup":
        assert scored.metrics["accuracy"] == 1.0
    else:
        assert scored.metrics["accuracy"] == pytest.approx(scored.n_positive / scored.n_ratings)

    run = mlflow_client.get_run(scored.run_id)
    assert run.info.status == "FINISHED"
    assert mlflow_client.get_experiment(run.info.experiment_id).name == "movie_recommendation_monitoring"
    assert run.data.tags[cm.CHAMPION_VERSION_TAG] == version
    assert run.data.tags["policy_overrides"] == '{"monitor_window_days": 45}'
    assert run.data.params["window_days"] == "45"
    assert run.data.metrics["n_ratings"] == scored.n_ratings
    assert run.data.metrics["accuracy"] == scored.metrics["accuracy"]

    decision = cm.judge(mlflow_client, cm.ChampionScore.from_xcom(json.loads(json.dumps(scored.as_xcom()))), policy)
    assert decision.status.value == status
    tags = mlflow_client.get_run(scored.run_id).data.tags
    assert tags[cm.STATUS_TAG] == status
    assert tags[cm.DEGRADED_TAG] == str(status == "degraded").lower()
    if status == "degraded":
        assert "accuracy" in tags[cm.TRIGGER_REASON_TAG] and "policy minimum" in tags[cm.TRIGGER_REASON_TAG]
    else:
        assert cm.TRIGGER_REASON_TAG not in tags
    report = json.loads(Path(mlflow_client.download_artifacts(scored.run_id, cm.REPORT_PATH, str(tmp_path))).read_text())
    assert report["status"] == status and report["champion_version"] == version
    assert report["policy_overrides"] == {"monitor_window_days": 45}
    assert {c["name"] for c in report["checks"]} >= {"accuracy_vs_policy", "roc_auc_vs_validation"}


def test_a_champion_that_cannot_load_fails_the_run_and_raises(mlflow_client, experiment_id, small_data, score):
    from urllib.parse import unquote, urlparse

    from include.governance.artifact import ArtifactProblem
    from tests.include.governance import monitor_support as ms

    version = ms.make_champion(mlflow_client, experiment_id, "monitored", ms.CoinModel(), ms.MODEST_VALIDATION)
    directory = Path(unquote(urlparse(mlflow_client.get_model_version_download_uri("monitored", version)).path))
    (directory / "python_model.pkl").write_bytes(b"garbage")
    with pytest.raises(ArtifactProblem, match="does not load"):
        score(mlflow_client, small_data, policy=GovernancePolicy.load().with_overrides({"monitor_window_days": 60}))
    experiment = mlflow_client.get_experiment_by_name("movie_recommendation_monitoring")
    (run,) = mlflow_client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"


def test_a_window_with_too_few_ratings_is_not_scored(mlflow_client, experiment_id, small_data, score):
    from include.governance import champion_monitor as cm
    from tests.include.governance import monitor_support as ms

    ms.make_champion(mlflow_client, experiment_id, "monitored", ms.CoinModel(), ms.HIGH_VALIDATION)
    policy = GovernancePolicy.load().with_overrides({"monitor_window_days": 1, "monitor_min_ratings": 10_000})
    scored = score(mlflow_client, small_data, policy=policy)
    assert scored.metrics == {}
    decision = cm.judge(mlflow_client, scored, policy)
    assert decision.status is MonitoringStatus.INSUFFICIENT_DATA
    assert mlflow_client.get_run(scored.run_id).data.tags[cm.STATUS_TAG] == "insufficient_data"
