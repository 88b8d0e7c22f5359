"""The quality gates as a table of cases: each threshold just above and just below."""

from __future__ import annotations

import json
import math

import pytest

from include.governance.gates import ArtifactEvidence, data_quality_score, evaluate_gates
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
SERVES = ArtifactEvidence(problem=None, inference_p50_ms=3.0, inference_p95_ms=5.0, request_rows=100, timed_runs=20)


def gates(metrics=GOOD, params=PARAMS, policy=POLICY, artifact=SERVES, **kwargs):
    return evaluate_gates(metrics, params, policy, artifact=artifact, **kwargs)


def check(report, name):
    return next(c for c in report.checks if c.name == name)


def test_a_good_version_passes_every_gate_and_names_them_all():
    report = gates()
    assert report.passed, report.summary()
    assert [c.name for c in report.checks] == [
        "loadability", "accuracy", "precision", "recall", "inference_p95_ms", "data_quality_score"
    ]


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
    report = gates({**GOOD, metric: value})
    assert report.passed is passes
    assert check(report, metric).passed is passes
    assert check(report, metric).threshold == getattr(POLICY, f"min_{metric}")
    assert check(report, metric).value == value


@pytest.mark.parametrize(
    ("p95", "passes"),
    [(99.99, True), (100.0, True), (100.01, False), (0.0, True)],
)
def test_latency_threshold_edges(p95, passes):
    report = gates(artifact=ArtifactEvidence(problem=None, inference_p50_ms=1.0, inference_p95_ms=p95, request_rows=100, timed_runs=20))
    latency = check(report, "inference_p95_ms")
    assert latency.passed is passes
    assert latency.threshold == POLICY.max_inference_time_ms
    assert latency.details["request_rows"] == 100
    assert report.passed is passes


@pytest.mark.parametrize("p95", [None, float("nan"), float("inf")])
def test_unmeasured_latency_fails_with_a_reason(p95):
    report = gates(artifact=ArtifactEvidence(problem=None, inference_p95_ms=p95))
    latency = check(report, "inference_p95_ms")
    assert not latency.passed
    assert "not measured" in latency.reason or "not a finite number" in latency.reason


@pytest.mark.parametrize(
    ("artifact", "reason"),
    [
        (None, "not probed"),
        (ArtifactEvidence(problem="test_model v3 has no MLmodel file at file:///x (artifact missing or deleted)"), "artifact missing"),
        (ArtifactEvidence(problem="test_model v3 status is PENDING_REGISTRATION, not READY"), "not READY"),
    ],
    ids=["not-probed", "artifact-missing", "not-ready"],
)
def test_a_version_that_does_not_serve_fails_loadability_and_latency(artifact, reason):
    report = gates(artifact=artifact)
    assert not report.passed
    assert {c.name for c in report.failures} == {"loadability", "inference_p95_ms"}
    assert reason in check(report, "loadability").reason
    assert "not measured" in check(report, "inference_p95_ms").reason


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "abc"])
@pytest.mark.parametrize("metric", ["accuracy", "precision", "recall"])
def test_missing_or_non_finite_metric_fails_with_a_reason(metric, bad):
    metrics = dict(GOOD)
    if bad is None:
        del metrics[metric]
    else:
        metrics[metric] = bad
    report = gates(metrics)
    assert not report.passed
    (failure,) = report.failures
    assert failure.name == metric
    assert failure.value is None
    assert "not logged" in failure.reason or "not a finite number" in failure.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "passes"),
    [(0.80, 0.80, True), (0.80, 0.849, True), (0.80, 0.85, True), (0.80, 0.8501, False), (0.85, 0.80, True)],
)
def test_champion_comparison_allows_at_most_the_policy_degradation(challenger, champion, passes):
    report = gates({**GOOD, "accuracy": challenger}, champion_metrics={"accuracy": champion}, champion_version="3")
    comparison = next(c for c in report.checks if c.category == "baseline_comparison")
    assert comparison.passed is passes
    assert comparison.details == {"metric": "accuracy", "challenger": challenger, "champion": champion}
    assert report.improvement == pytest.approx(challenger - champion)
    assert report.baseline_version == "3"


@pytest.mark.parametrize("champion", [{}, {"accuracy": float("nan")}])
def test_champion_without_a_finite_metric_fails_the_comparison(champion):
    report = gates(champion_metrics=champion)
    assert not report.passed
    assert "champion has no finite accuracy" in report.summary()


def test_no_champion_means_no_comparison_and_no_improvement():
    report = gates()
    assert report.passed
    assert report.improvement is None
    assert all(c.category != "baseline_comparison" for c in report.checks)


def quality(**changes):
    return {**PARAMS, **{key: str(value) for key, value in changes.items()}}


@pytest.mark.parametrize(
    ("params", "expected_score", "passes"),
    [
        (quality(), 1.0, True),
        # 400 duplicates next to 600 clean rows: clean share 0.6; small-data part 0.6
        (quality(dataset_train_size=600, dataset_duplicate_count=400), (0.6 + 0.6 + 1) / 3, False),
        # 100 duplicates + 100 missing + 100 out of range next to 700 rows: exactly the minimum
        (quality(dataset_train_size=700, dataset_duplicate_count=100, dataset_missing_values=100, dataset_out_of_range=100),
         0.8, True),
        # small data: size part 0.5; one feature of the 3 wanted: feature part 1/3
        (quality(dataset_train_size=500, dataset_feature_count=1), (1 + 0.5 + 1 / 3) / 3, False),
    ],
    ids=["clean", "duplicates", "every-kind-of-bad-row", "small-and-narrow"],
)
def test_data_quality_score_from_each_input(params, expected_score, passes):
    score, _ = data_quality_score(params, POLICY)
    assert score == pytest.approx(expected_score)
    quality_check = check(gates(params=params), "data_quality_score")
    assert quality_check.passed is passes
    assert quality_check.value == score


@pytest.mark.parametrize(
    ("bad_rows", "passes"),
    # 10000 train rows; score = (clean + 1 + 1) / 3 >= 0.8 <=> clean >= 0.4 <=> bad <= 15000
    [(14990, True), (15000, True), (15010, False)],
)
def test_data_quality_threshold_edges(bad_rows, passes):
    report = gates(params=quality(dataset_train_size=10000, dataset_duplicate_count=bad_rows))
    quality_check = check(report, "data_quality_score")
    assert quality_check.passed is passes
    assert quality_check.threshold == POLICY.min_data_quality_score
    assert quality_check.details["dataset_duplicate_count"] == bad_rows
    assert any("duplicate, missing or out-of-range" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("params", "warning"),
    [
        (quality(dataset_train_size=999), "Training dataset is small (<1000 samples)"),
        (quality(dataset_feature_count=2), "Low number of features"),
    ],
)
def test_the_seeds_data_quality_warnings(params, warning):
    assert warning in gates(params=params).warnings
    assert warning not in gates().warnings


@pytest.mark.parametrize("missing", ["dataset_train_size", "dataset_duplicate_count", "dataset_out_of_range"])
def test_data_quality_without_a_dataset_param_fails_naming_it(missing):
    params = {k: v for k, v in PARAMS.items() if k != missing}
    report = gates(params=params)
    assert [c.name for c in report.failures] == ["data_quality_score"]
    assert missing in report.failures[0].reason


def test_data_quality_with_a_nan_param_fails():
    report = gates(params=quality(dataset_missing_values="nan"))
    assert [c.name for c in report.failures] == ["data_quality_score"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"hidden_size": "1001"}, "Large hidden layer size may cause overfitting"),
        ({"learning_rate": "0.2"}, "High learning rate may cause instability"),
        ({"learning_rate": "0.00001"}, "Very low learning rate may slow convergence"),
    ],
)
def test_complexity_warnings_warn_but_never_fail(params, expected):
    report = gates(params={**PARAMS, **params})
    assert report.passed
    assert expected in report.warnings


@pytest.mark.parametrize("params", [{"hidden_size": "1000"}, {"learning_rate": "0.1"}, {"learning_rate": "0.0001"}])
def test_complexity_at_the_bounds_does_not_warn(params):
    assert gates(params={**PARAMS, **params}).warnings == []


def test_overridden_thresholds_apply():
    strict = ValidationPolicy(min_accuracy=0.81, max_inference_time_ms=4.0)
    report = gates(policy=strict)
    assert {c.name for c in report.failures} == {"accuracy", "inference_p95_ms"}


def test_report_is_json_ready():
    report = gates({**GOOD, "accuracy": math.nan}, champion_metrics={"accuracy": 0.8}, champion_version="1")
    document = json.loads(json.dumps(report.to_dict()))
    assert document["passed"] is False
    assert {c["name"] for c in document["checks"]} == {
        "loadability", "accuracy", "precision", "recall", "inference_p95_ms", "data_quality_score", "accuracy_vs_champion"
    }
    for entry in document["checks"]:
        assert set(entry) == {"name", "category", "value", "threshold", "passed", "reason", "details"}
