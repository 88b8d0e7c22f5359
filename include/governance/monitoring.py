"""Champion monitoring decisions: which data window to score, and whether the champion degraded.

Pure: no MLflow, no data loading. ``champion_monitor.py`` gathers the inputs and records the
result; the monitor DAG triggers a retrain only when ``assess`` says the champion degraded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Mapping

from include.governance import lifecycle as lc
from include.governance.gates import PERFORMANCE_GATES, Check
from include.governance.policy import ValidationPolicy

# Metrics compared with the champion's validation_<metric> tags (written by validation).
DRIFT_METRICS = lc.EVIDENCE_METRICS
# Where the window ends: the run's data interval end, or just after the latest rating when
# the data stops earlier (static data such as the embedded synthetic default).
ANCHOR_INTERVAL_END = "data_interval_end"
ANCHOR_LATEST_RATING = "latest_rating"
# Derived differences are rounded before comparing (a drop of exactly the margin is allowed).
_DECIMALS = 9


class MonitoringStatus(str, Enum):
    HOLDS = "holds"
    DEGRADED = "degraded"
    INSUFFICIENT_DATA = "insufficient_data"
    NO_CHAMPION = "no_champion"


@dataclass(frozen=True)
class MonitoringWindow:
    """The half-open time range ``[start, end)`` of ratings the champion is scored on.

    :param start: inclusive start (UTC).
    :param end: exclusive end (UTC).
    :param anchor: ANCHOR_INTERVAL_END or ANCHOR_LATEST_RATING.
    :param requested_end: the instant the run asked for (its data interval end).
    """

    start: datetime
    end: datetime
    anchor: str
    requested_end: datetime

    @property
    def staleness_days(self) -> float:
        """How far the window's end lies before the requested end (0 when anchored on it)."""
        return (self.requested_end - self.end).total_seconds() / 86400.0


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def monitoring_window(requested_end: datetime, latest_rating: datetime | None, window_days: int) -> MonitoringWindow:
    """The last ``window_days`` days of data before ``requested_end``.

    When the data ends before ``requested_end`` (a static data set, or an ingest that stopped),
    the window ends one second after the latest rating instead, so it still holds data; the
    anchor and ``staleness_days`` record that this happened.

    :param requested_end: the run's data interval end; a naive value is taken as UTC.
    :param latest_rating: the newest rating's time in the data source, None when it is empty.
    :param window_days: the window's length in days (at least 1).
    """
    if window_days < 1:
        raise ValueError(f"window_days must be at least 1, got {window_days!r}")
    requested_end = _utc(requested_end)
    end, anchor = requested_end, ANCHOR_INTERVAL_END
    if latest_rating is not None:
        after_latest = _utc(latest_rating) + timedelta(seconds=1)
        if after_latest < requested_end:
            end, anchor = after_latest, ANCHOR_LATEST_RATING
    return MonitoringWindow(start=end - timedelta(days=window_days), end=end, anchor=anchor, requested_end=requested_end)


@dataclass(frozen=True)
class MonitoringDecision:
    """The verdict on the champion, why, and every comparison made."""

    status: MonitoringStatus
    reasons: tuple[str, ...]
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def degraded(self) -> bool:
        return self.status is MonitoringStatus.DEGRADED

    @property
    def reason(self) -> str:
        """All reasons on one line (for a tag, a log line or a DAG run note)."""
        return "; ".join(self.reasons)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def validation_metrics_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """The champion's validation metrics from its ``validation_<metric>`` tags (finite ones only).

    :param tags: the model version's tags.
    """
    found = {}
    for metric in DRIFT_METRICS:
        value = _finite(tags.get(f"{lc.VALIDATION_METRIC_PREFIX}{metric}"))
        if value is not None:
            found[metric] = value
    return found


def policy_check(metric: str, raw: Any, minimum: float) -> Check:
    """``raw >= minimum`` (the validation gate, applied to the window)."""
    name = f"{metric}_vs_policy"
    value = _finite(raw)
    if value is None:
        return Check(name, "policy", None, minimum, False, f"{metric} could not be measured on the window")
    passed = value >= minimum
    reason = f"{metric} {value:.4f} {'>=' if passed else 'is below'} the policy minimum {minimum}"
    return Check(name, "policy", value, minimum, passed, reason)


def drift_check(metric: str, raw: Any, baseline: float, margin: float) -> Check:
    """``raw >= baseline - margin``; a missing or non-finite window value fails."""
    name = f"{metric}_vs_validation"
    floor = round(baseline - margin, _DECIMALS)
    value = _finite(raw)
    details = {"validation_value": baseline, "margin": margin}
    if value is None:
        return Check(name, "drift", None, floor, False, f"{metric} could not be measured on the window", details)
    drop = round(baseline - value, _DECIMALS)
    passed = value >= floor
    reason = (
        f"{metric} {value:.4f} is {drop:+.4f} below its validation value {baseline:.4f} "
        f"({'within' if passed else 'beyond'} the margin {margin})"
    )
    return Check(name, "drift", value, floor, passed, reason, details)


def insufficient_evidence(n_ratings: int, n_positive: int, min_ratings: int) -> str | None:
    """Why a window is too little evidence to judge the champion on, or None when it is enough.

    :param n_ratings: ratings in the window.
    :param n_positive: those labelled positive.
    :param min_ratings: fewest ratings worth judging.
    """
    if n_ratings < min_ratings:
        return f"only {n_ratings} rating(s) in the window, fewer than the {min_ratings} needed to judge"
    if n_positive in (0, n_ratings):
        only = "positive" if n_positive else "negative"
        return f"all {n_ratings} ratings in the window are {only}: the metrics are not defined"
    return None


def assess(
    window_metrics: Mapping[str, Any],
    *,
    n_ratings: int,
    n_positive: int,
    validation_metrics: Mapping[str, float],
    policy: ValidationPolicy,
    margin: float,
    min_ratings: int,
) -> MonitoringDecision:
    """Decide whether the champion degraded on the window.

    Degraded when a gated metric falls below the policy's minimum, or any metric falls more
    than ``margin`` below the champion's validation value; a metric that could not be measured
    counts against the champion, as it does in validation. Too few ratings, or a window with
    a single class (no metric is defined), is too little evidence: the champion is left alone.

    :param window_metrics: metrics of the champion on the window (accuracy, precision, ...).
    :param n_ratings: ratings in the window.
    :param n_positive: those labelled positive (rating >= 4).
    :param validation_metrics: the champion's validation metrics (from its tags).
    :param policy: the validation thresholds.
    :param margin: the allowed drop below the validation metrics.
    :param min_ratings: fewest ratings worth judging.
    """
    lacking = insufficient_evidence(n_ratings, n_positive, min_ratings)
    if lacking:
        return MonitoringDecision(MonitoringStatus.INSUFFICIENT_DATA, (lacking,))
    checks = [
        policy_check(metric, window_metrics.get(metric), getattr(policy, attribute))
        for metric, attribute in PERFORMANCE_GATES.items()
    ]
    checks += [
        drift_check(metric, window_metrics.get(metric), validation_metrics[metric], margin)
        for metric in DRIFT_METRICS
        if metric in validation_metrics
    ]
    failures = [c for c in checks if not c.passed]
    if failures:
        reasons = tuple(dict.fromkeys(c.reason for c in failures))  # one line per distinct reason
        return MonitoringDecision(MonitoringStatus.DEGRADED, reasons, tuple(checks))
    compared = ", ".join(metric for metric in DRIFT_METRICS if metric in validation_metrics) or "none"
    return MonitoringDecision(
        MonitoringStatus.HOLDS,
        (
            f"meets the policy minimums and stays within {margin} of its validation metrics "
            f"(compared: {compared})",
        ),
        tuple(checks),
    )
