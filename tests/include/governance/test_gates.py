"""The quality gates as a table of cases: each threshold just above and just below."""

from __future__ import annotations

import math

import pytest

from include.governance.gates import data_quality_score, evaluate_gates
from include.governance.policy import ValidationPolicy

POLICY = ValidationPolicy()
GOOD = {"accuracy": 0.80, "precision": 0.78, "recall": 0.76}
PARAMS = {
    "dataset_train_size": "80000",
    "dataset_feature_count": "8",
    "dataset_duplicate_count": "0",
    "dataset_missing_values": "0",
    "dataset_out_of_range": "0",
}


@pytest.mark.parametrize(
    ("metric", "value", "passes"),
    [
        ("accuracy", 0.7501, True),
        ("accuracy", 0.75, True),
        ("accuracy", 0.7499, False),
        ("precision", 0.7001, True),
        ("precision", 0.6999, False),
        ("recall", 0.6501, True),
        ("recall", 0.6499, False),
    ],
)
def test_performance_threshold_edges(metric, value, passes):
    report = evaluate_gates({**GOOD, metric: value}, PARAMS, POLICY)
    assert report.passed is passes
    check = next(c for c in report.checks if c.name == metric)
    assert check.passed is passes
    assert check.threshold == getattr(POLICY, f"min_{metric}")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "abc"])
def test_missing_or_non_finite_metric_fails_with_a_reason(bad):
    metrics = dict(GOOD)
    if bad is None:
        del metrics["recall"]
    else:
        metrics["recall"] = bad
    report = evaluate_gates(metrics, PARAMS, POLICY)
    assert not report.passed
    (failure,) = report.failures
    assert failure.name == "recall"
    assert "not logged" in failure.reason or "not a finite number" in failure.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "passes"),
    [(0.80, 0.80, True), (0.80, 0.849, True), (0.80, 0.8501, False), (0.85, 0.80, True)],
)
def test_champion_comparison_allows_at_most_the_policy_degradation(challenger, champion, passes):
    report = evaluate_gates({**GOOD, "accuracy": challenger}, PARAMS, POLICY, champion_metrics={"accuracy": champion}, champion_version="3")
    comparison = next(c for c in report.checks if c.category == "baseline_comparison")
    assert comparison.passed is passes
    assert report.improvement == pytest.approx(challenger - champion)
    assert report.baseline_version == "3"


def test_champion_without_the_metric_fails_the_comparison():
    report = evaluate_gates(GOOD, PARAMS, POLICY, champion_metrics={})
    assert not report.passed
    assert "champion has no finite accuracy" in report.summary()


def test_no_champion_means_no_comparison_and_no_improvement():
    report = evaluate_gates(GOOD, PARAMS, POLICY)
    assert report.passed
    assert report.improvement is None
    assert all(c.category != "baseline_comparison" for c in report.checks)


def test_data_quality_score_drops_with_bad_rows_and_small_data():
    clean, _ = data_quality_score(PARAMS, POLICY)
    assert clean == pytest.approx(1.0)
    dirty, warnings = data_quality_score({**PARAMS, "dataset_train_size": "500", "dataset_duplicate_count": "500"}, POLICY)
    # clean share 0.5, size 0.5, features 1.0
    assert dirty == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert any("small" in w for w in warnings)
    report = evaluate_gates(GOOD, {**PARAMS, "dataset_train_size": "500", "dataset_duplicate_count": "500"}, POLICY)
    assert [c.name for c in report.failures] == ["data_quality_score"]


def test_data_quality_without_dataset_params_fails():
    report = evaluate_gates(GOOD, {}, POLICY)
    assert [c.name for c in report.failures] == ["data_quality_score"]
    assert "not logged" in report.failures[0].reason


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"hidden_size": "1001"}, "Large hidden layer size may cause overfitting"),
        ({"learning_rate": "0.2"}, "High learning rate may cause instability"),
        ({"learning_rate": "0.00001"}, "Very low learning rate may slow convergence"),
    ],
)
def test_complexity_warnings_warn_but_never_fail(params, expected):
    report = evaluate_gates(GOOD, {**PARAMS, **params}, POLICY)
    assert report.passed
    assert expected in report.warnings


def test_report_is_json_ready():
    import json

    report = evaluate_gates({**GOOD, "accuracy": math.nan}, PARAMS, POLICY)
    document = json.loads(json.dumps(report.to_dict()))
    assert document["passed"] is False
    assert {c["name"] for c in document["checks"]} >= {"accuracy", "precision", "recall", "data_quality_score"}
