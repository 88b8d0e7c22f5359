"""Quality gates: pure checks of a version's metrics and params against the policy.

Nothing here talks to MLflow; ``validation.py`` gathers the inputs and records the result.
A missing or non-finite metric always fails its gate: absence of evidence is not a pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from include.governance.policy import ValidationPolicy

# Metric name logged by the `log` step -> policy attribute of its minimum.
PERFORMANCE_GATES = {
    "accuracy": "min_accuracy",
    "precision": "min_precision",
    "recall": "min_recall",
}
# Derived values (scores, differences) are rounded to this many decimals before comparing.
_DECIMALS = 9
DATA_QUALITY_INPUTS = (
    "dataset_train_size",
    "dataset_feature_count",
    "dataset_duplicate_count",
    "dataset_missing_values",
    "dataset_out_of_range",
)


@dataclass
class Check:
    """One gate: what was measured, against what, and the verdict."""

    name: str
    category: str
    value: float | None
    threshold: float | None
    passed: bool
    reason: str
    # Inputs behind the value (e.g. the parts of the data-quality score), for the report.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactEvidence:
    """What probing the registered artifact found (gathered by ``artifact.probe_version``).

    :param problem: why the version cannot be served (not READY, artifact missing, does not
        load, prediction not finite); None when it loaded and scored its input example.
    :param inference_p50_ms: median latency of one request, None when not measured.
    :param inference_p95_ms: 95th percentile latency of one request, None when not measured.
    :param request_rows: rows in the timed request.
    :param timed_runs: how many requests were timed.
    :param threads: native threads per request while timing (0 = the libraries' default).
    """

    problem: str | None
    inference_p50_ms: float | None = None
    inference_p95_ms: float | None = None
    request_rows: int = 0
    timed_runs: int = 0
    threads: int = 0


@dataclass
class GateReport:
    """Every check of one validation, the warnings, and the comparison with the champion."""

    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Challenger minus champion on the comparison metric; None when there is no champion.
    improvement: float | None = None
    baseline_version: str | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def summary(self) -> str:
        """One line a person can read in a log or a tag."""
        if self.passed:
            return f"passed {len(self.checks)} checks"
        return "; ".join(f"{c.name}: {c.reason}" for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
            "warnings": list(self.warnings),
            "improvement": self.improvement,
            "baseline_version": self.baseline_version,
        }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_minimum(name: str, category: str, raw: Any, minimum: float) -> Check:
    """``raw >= minimum``; missing or non-finite values fail with a reason."""
    value = _finite(raw)
    if raw is None:
        return Check(name, category, None, minimum, False, f"{name} was not logged")
    if value is None:
        return Check(name, category, None, minimum, False, f"{name} is not a finite number ({raw!r})")
    if value >= minimum:
        return Check(name, category, value, minimum, True, f"{value:.4f} >= {minimum}")
    return Check(name, category, value, minimum, False, f"{value:.4f} < {minimum}")


def check_maximum(name: str, category: str, raw: Any, maximum: float) -> Check:
    """``raw <= maximum``; missing or non-finite values fail with a reason."""
    value = _finite(raw)
    if raw is None:
        return Check(name, category, None, maximum, False, f"{name} was not measured")
    if value is None:
        return Check(name, category, None, maximum, False, f"{name} is not a finite number ({raw!r})")
    if value <= maximum:
        return Check(name, category, value, maximum, True, f"{value:.4f} <= {maximum}")
    return Check(name, category, value, maximum, False, f"{value:.4f} > {maximum}")


def loadability_check(artifact: ArtifactEvidence | None) -> Check:
    """The version is READY, its artifact downloads, loads and scores its input example."""
    if artifact is None:
        return Check("loadability", "loadability", None, None, False, "the registered artifact was not probed")
    if artifact.problem:
        return Check("loadability", "loadability", None, None, False, artifact.problem)
    return Check(
        "loadability", "loadability", None, None, True,
        "READY; the artifact downloads, loads and scores its input example with finite values",
    )


def latency_check(artifact: ArtifactEvidence | None, policy: ValidationPolicy) -> Check:
    """p95 latency of one request on the registered artifact against ``max_inference_time_ms``."""
    name = "inference_p95_ms"
    if artifact is None or artifact.problem:
        return Check(
            name, "latency", None, policy.max_inference_time_ms, False,
            "not measured: the registered artifact did not load and predict",
        )
    check = check_maximum(name, "latency", artifact.inference_p95_ms, policy.max_inference_time_ms)
    check.details = {
        "inference_p50_ms": artifact.inference_p50_ms,
        "request_rows": artifact.request_rows,
        "timed_runs": artifact.timed_runs,
        "threads": artifact.threads,
    }
    return check


def performance_checks(metrics: Mapping[str, Any], policy: ValidationPolicy) -> list[Check]:
    """The seed's performance thresholds (accuracy, precision, recall)."""
    return [
        check_minimum(metric, "performance", metrics.get(metric), getattr(policy, attribute))
        for metric, attribute in PERFORMANCE_GATES.items()
    ]


def data_quality_score(params: Mapping[str, Any], policy: ValidationPolicy) -> tuple[float | None, list[str]]:
    """A 0..1 score from the dataset params the training run logged, and the seed's warnings.

    The score averages three parts: the share of clean rows (no duplicates, missing values or
    out-of-range ratings), training size relative to the policy's minimum, and feature count
    relative to its minimum. Returns (None, reasons) when an input was not logged.

    :param params: the training run's params (``dataset_*``).
    """
    score, warnings, _ = _data_quality(params, policy)
    return score, warnings


def _data_quality(
    params: Mapping[str, Any], policy: ValidationPolicy
) -> tuple[float | None, list[str], dict[str, Any]]:
    """The score, the warnings and the parts behind the score (for the report)."""
    values = {key: _finite(params.get(key)) for key in DATA_QUALITY_INPUTS}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        return None, [f"not logged or not a finite number: {', '.join(missing)}"], {}
    train_size = values["dataset_train_size"]
    feature_count = values["dataset_feature_count"]
    bad_rows = values["dataset_duplicate_count"] + values["dataset_missing_values"] + values["dataset_out_of_range"]
    rows = max(train_size + bad_rows, 1.0)
    clean_share = 1.0 - bad_rows / rows
    size_part = min(1.0, train_size / max(policy.warn_min_train_size, 1))
    feature_part = min(1.0, feature_count / max(policy.warn_min_feature_count, 1))
    warnings = []
    if train_size < policy.warn_min_train_size:
        warnings.append(f"Training dataset is small (<{policy.warn_min_train_size} samples)")
    if feature_count < policy.warn_min_feature_count:
        warnings.append("Low number of features")
    if bad_rows:
        warnings.append(f"{int(bad_rows)} duplicate, missing or out-of-range rows in the source data")
    details = {
        **{key: values[key] for key in DATA_QUALITY_INPUTS},
        "clean_row_share": clean_share,
        "train_size_part": size_part,
        "feature_count_part": feature_part,
    }
    # Rounded so a score that is exactly the threshold on paper is not 1e-16 below it.
    return round((clean_share + size_part + feature_part) / 3.0, _DECIMALS), warnings, details


def complexity_warnings(params: Mapping[str, Any], policy: ValidationPolicy) -> list[str]:
    """The seed's complexity warnings on hidden_size and learning_rate (never a failure)."""
    warnings = []
    hidden = _finite(params.get("hidden_size"))
    if hidden is not None and hidden > policy.warn_max_hidden_size:
        warnings.append("Large hidden layer size may cause overfitting")
    lr = _finite(params.get("learning_rate"))
    if lr is not None and lr > policy.warn_max_learning_rate:
        warnings.append("High learning rate may cause instability")
    elif lr is not None and lr < policy.warn_min_learning_rate:
        warnings.append("Very low learning rate may slow convergence")
    return warnings


def champion_comparison(
    metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
    policy: ValidationPolicy,
) -> tuple[Check | None, float | None]:
    """Compare with the current champion on the policy's metric.

    :return: (the check, or None when there is no champion; the improvement, or None).
    """
    if champion_metrics is None:
        return None, None
    metric = policy.comparison_metric
    name = f"{metric}_vs_champion"
    current = _finite(metrics.get(metric))
    baseline = _finite(champion_metrics.get(metric))
    if current is None or baseline is None:
        side = "challenger" if current is None else "champion"
        return Check(name, "baseline_comparison", None, None, False, f"{side} has no finite {metric}"), None
    # Rounded so a drop of exactly the allowed degradation is not 1e-17 beyond it.
    improvement = round(current - baseline, _DECIMALS)
    allowed = -policy.max_degradation_vs_champion
    passed = improvement >= allowed
    reason = (
        f"{current:.4f} vs champion {baseline:.4f} ({improvement:+.4f}); "
        f"{'within' if passed else 'beyond'} the allowed degradation of {policy.max_degradation_vs_champion}"
    )
    details = {"metric": metric, "challenger": current, "champion": baseline}
    return Check(name, "baseline_comparison", improvement, allowed, passed, reason, details), improvement


def evaluate_gates(
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    policy: ValidationPolicy,
    *,
    artifact: ArtifactEvidence | None,
    champion_metrics: Mapping[str, Any] | None = None,
    champion_version: str | None = None,
) -> GateReport:
    """Run every gate on one version: the seed's ModelValidator plus loadability and latency.

    :param metrics: the version's run metrics (holdout metrics from the `log` step).
    :param params: the version's run params (dataset_* and hyperparameters).
    :param policy: the thresholds.
    :param artifact: what probing the registered artifact found; None (not probed) fails
        loadability and latency.
    :param champion_metrics: the current champion's run metrics, None when there is no champion.
    :param champion_version: the champion's version, recorded as the baseline.
    """
    report = GateReport(baseline_version=champion_version)
    report.checks.append(loadability_check(artifact))
    report.checks.extend(performance_checks(metrics, policy))
    report.checks.append(latency_check(artifact, policy))

    score, quality_notes, details = _data_quality(params, policy)
    if score is None:
        report.checks.append(
            Check("data_quality_score", "data_quality", None, policy.min_data_quality_score, False, quality_notes[0])
        )
    else:
        check = check_minimum("data_quality_score", "data_quality", score, policy.min_data_quality_score)
        check.details = details
        report.checks.append(check)
        report.warnings.extend(quality_notes)
    report.warnings.extend(complexity_warnings(params, policy))

    comparison, improvement = champion_comparison(metrics, champion_metrics, policy)
    if comparison is not None:
        report.checks.append(comparison)
    report.improvement = improvement
    return report
