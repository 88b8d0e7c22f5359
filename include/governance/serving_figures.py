"""Serving figures from the model server's /metrics: what each served version did, per variant.

Pure: the Prometheus text in, figures and the next accumulated state out; no MLflow, no HTTP
(``serving_record.py`` reads and writes the registry, the Airflow operator fetches /metrics).

The server's counters are cumulative since the process started and restart from zero with it.
Each recording therefore adds the *increase* since the last one to running totals kept with the
version (``VariantState``). A restart is recognised by a series' ``_created`` timestamp changing
(prometheus_client exposes one per labelled series) or, where that is switched off, by a counter
going down; after a restart the whole new count is the increase, as Prometheus' own ``rate()``
treats a reset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

from include.governance import lifecycle as lc

METRIC_PREFIX = "movie_recommender_serving"
REQUESTS = f"{METRIC_PREFIX}_requests"
ERRORS = f"{METRIC_PREFIX}_errors"
LATENCY = f"{METRIC_PREFIX}_latency_seconds"

# (model, version, variant): one served version in one role, summed over routes.
SeriesKey = tuple[str, str, str]


class ServingMetricsError(ValueError):
    """The /metrics text is not Prometheus text, or a served series lacks a label it must have."""


@dataclass
class Counts:
    """Requests, errors and the latency histogram (``le`` -> cumulative count) of one series."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[str, float] = field(default_factory=dict)
    # The earliest ``_created`` of the routes' request series (seconds since the epoch), if exposed.
    created: float | None = None

    def minus(self, earlier: "Counts") -> "Counts":
        return Counts(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            {le: count - earlier.buckets.get(le, 0.0) for le, count in self.buckets.items()},
            self.created,
        )

    def plus(self, other: "Counts") -> "Counts":
        les = set(self.buckets) | set(other.buckets)
        return Counts(
            self.requests + other.requests,
            self.errors + other.errors,
            {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in les},
            self.created,
        )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping) -> "Counts":
        return cls(float(raw["requests"]), float(raw["errors"]), dict(raw["buckets"]), raw.get("created"))


def parse_metrics(text: str) -> dict[SeriesKey, Counts]:
    """The served series in a /metrics page, summed over routes.

    :raises ServingMetricsError: the text does not parse, or a series has no model/version/variant.
    """
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[SeriesKey, Counts] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ServingMetricsError(f"/metrics is not Prometheus text: {exc}") from None
    for family in families:
        for sample in family.samples:
            if sample.name in _SAMPLES:
                _add_sample(found, sample.name, sample.labels, sample.value)
    return found


# The samples read, whatever family the parser puts them in (a page without TYPE lines has none).
_SAMPLES = frozenset({f"{REQUESTS}_total", f"{ERRORS}_total", f"{LATENCY}_bucket", f"{REQUESTS}_created"})


def _add_sample(found: dict[SeriesKey, Counts], name: str, labels: Mapping[str, str], value: float) -> None:
    missing = [label for label in ("model", "version", "variant") if not labels.get(label)]
    if missing:
        raise ServingMetricsError(f"/metrics series {name}{dict(labels)} has no {', '.join(missing)} label")
    counts = found.setdefault((labels["model"], labels["version"], labels["variant"]), Counts())
    if name == f"{REQUESTS}_total":
        counts.requests += value
    elif name == f"{ERRORS}_total":
        counts.errors += value
    elif name == f"{LATENCY}_bucket":
        counts.buckets[labels["le"]] = counts.buckets.get(labels["le"], 0.0) + value
    elif name == f"{REQUESTS}_created":
        counts.created = value if counts.created is None else min(counts.created, value)


def restarted(last: Counts, now: Counts) -> bool:
    """Whether the series was re-created (a server restart) since ``last`` was read."""
    if last.created is not None and now.created is not None:
        return last.created != now.created  # the same text and JSON round trip: exact
    decreased = now.requests < last.requests or now.errors < last.errors
    return decreased or any(now.buckets.get(le, 0.0) < count for le, count in last.buckets.items())


def increase(last: Counts | None, now: Counts) -> Counts:
    """What the series counted since ``last`` (all of ``now`` when it is new or was reset)."""
    if last is None or restarted(last, now):
        return Counts(now.requests, now.errors, dict(now.buckets), now.created)
    return now.minus(last)


def quantile(buckets: Mapping[str, float], q: float) -> float | None:
    """The ``q`` quantile (seconds) of a cumulative histogram, as Prometheus' histogram_quantile.

    Linear within the bucket the rank falls in; a rank in the +Inf bucket answers the largest
    finite bound. None when the histogram is empty.
    """
    bounds = sorted((float(le), count) for le, count in buckets.items())
    total = bounds[-1][1] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in bounds:
        count = max(count, below)  # a cumulative histogram never decreases
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Figures:
    """How one version served in one variant: requests, error rate and latency percentiles."""

    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None

    @classmethod
    def of(cls, counts: Counts) -> "Figures":
        p50, p95 = quantile(counts.buckets, 0.50), quantile(counts.buckets, 0.95)
        return cls(
            requests=int(round(counts.requests)),
            errors=int(round(counts.errors)),
            error_rate=counts.errors / counts.requests if counts.requests > 0 else None,
            p50_ms=None if p50 is None else p50 * 1000.0,
            p95_ms=None if p95 is None else p95 * 1000.0,
        )


@dataclass
class VariantState:
    """What is kept per version and variant between recordings: the last reading and the totals.

    ``routed`` is the model's champion + canary requests while this version was the canary
    (the denominator of its canary share).
    """

    last: Counts
    total: Counts
    routed: float = 0.0

    def as_dict(self) -> dict:
        return {"last": self.last.as_dict(), "total": self.total.as_dict(), "routed": self.routed}

    @classmethod
    def from_dict(cls, raw: Mapping) -> "VariantState":
        return cls(Counts.from_dict(raw["last"]), Counts.from_dict(raw["total"]), float(raw.get("routed", 0.0)))


@dataclass(frozen=True)
class VersionReading:
    """One version's figures after a recording: per variant, totals and this window's."""

    model_name: str
    version: str
    states: dict[str, VariantState]
    window: dict[str, Figures]

    @property
    def totals(self) -> dict[str, Figures]:
        return {variant: Figures.of(state.total) for variant, state in self.states.items()}

    @property
    def canary_share(self) -> float | None:
        state = self.states.get("canary")
        if state is None or state.routed <= 0:
            return None
        return state.total.requests / state.routed


def advance(
    series: Mapping[SeriesKey, Counts], kept: Mapping[tuple[str, str], Mapping[str, VariantState]]
) -> list[VersionReading]:
    """Fold a /metrics reading into each served version's kept state.

    :param series: ``parse_metrics``' result.
    :param kept: the state recorded last time, by (model, version) then variant (may be empty).
    :return: one reading per (model, version) in ``series``, with the updated states.
    """
    increases = {key: increase(_last(kept, key), counts) for key, counts in series.items()}
    routed = _routed_by_model(increases)
    readings: dict[tuple[str, str], VersionReading] = {}
    for (model, version, variant), counts in series.items():
        if variant not in lc.SERVING_VARIANTS:
            raise ServingMetricsError(
                f"/metrics: variant {variant!r} of {model} v{version} is not one of {lc.SERVING_VARIANTS}"
            )
        states = {v: VariantState(s.last, s.total, s.routed) for v, s in kept.get((model, version), {}).items()}
        reading = readings.setdefault((model, version), VersionReading(model, version, states, {}))
        delta = increases[(model, version, variant)]
        previous = reading.states.get(variant)
        total = previous.total.plus(delta) if previous else Counts(delta.requests, delta.errors, dict(delta.buckets))
        share_base = (previous.routed if previous else 0.0) + (routed[model] if variant == "canary" else 0.0)
        reading.states[variant] = VariantState(counts, total, share_base)
        reading.window[variant] = Figures.of(delta)
    return list(readings.values())


def _last(kept: Mapping[tuple[str, str], Mapping[str, VariantState]], key: SeriesKey) -> Counts | None:
    state = kept.get((key[0], key[1]), {}).get(key[2])
    return state.last if state else None


def _routed_by_model(increases: Mapping[SeriesKey, Counts]) -> dict[str, float]:
    """Each model's champion + canary requests in this window (shadow requests are duplicates)."""
    routed: dict[str, float] = {}
    for (model, _version, variant), delta in increases.items():
        if variant in ("champion", "canary"):
            routed[model] = routed.get(model, 0.0) + delta.requests
    return routed


def version_tags(reading: VersionReading, recorded_at: str) -> dict[str, str]:
    """The ``serving_*`` tags of a version: every variant's totals, the canary share, when."""
    tags = {lc.SERVING_RECORDED_AT: recorded_at}
    for variant, figures in reading.totals.items():
        for figure, value in asdict(figures).items():
            if value is not None:
                tags[lc.serving_tag(variant, figure)] = _tag_text(value)
    if reading.canary_share is not None:
        tags[lc.SERVING_CANARY_SHARE] = _tag_text(reading.canary_share)
    return tags


def _tag_text(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def figures_from_tags(tags: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The serving figures a version's tags hold, by variant (variants never served are absent)."""
    found: dict[str, dict[str, float]] = {}
    for variant in lc.SERVING_VARIANTS:
        for figure in lc.SERVING_FIGURES:
            raw = tags.get(lc.serving_tag(variant, figure))
            if raw is not None:
                found.setdefault(variant, {})[figure] = _number(raw)
    return found


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan  # a hand-edited tag: shown as nan, never counted as evidence

