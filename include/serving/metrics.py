"""The server's Prometheus series (GET /metrics), in a registry of its own.

Per request, labelled by model, version, variant (champion, canary, shadow) and route
(``/recommend``, ``/score``): requests, errors, latency (seconds, measured inside the handler).
Per alias: the version loaded (gauge; absent while nothing is loaded for it). Per version: load
failures. Registry reads that failed are counted too (the server then keeps what it serves).
Children are cached per label set: a labels() lookup per request costs more than the increment.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "movie_recommender_serving"
REQUEST_LABELS = ("model", "version", "variant", "route")
# Fine below 50 ms (the latency goal), coarse above.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _RequestSeries(NamedTuple):
    requests: object
    errors: object
    latency: object


class ServingMetrics:
    """The series of one server process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(f"{PREFIX}_requests", "Requests answered (or attempted) per version and variant",
                                REQUEST_LABELS, registry=self.registry)
        self.errors = Counter(f"{PREFIX}_errors", "Requests that failed in the model, per version and variant",
                              REQUEST_LABELS, registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_latency_seconds", "Time spent answering, per version and variant",
                                 REQUEST_LABELS, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.loaded_version = Gauge(f"{PREFIX}_loaded_version", "Version loaded for each alias",
                                    ("model", "alias"), registry=self.registry)
        self.load_failures = Counter(f"{PREFIX}_load_failures", "Versions that failed to load or failed their check",
                                     ("model", "version"), registry=self.registry)
        self.registry_errors = Counter(f"{PREFIX}_registry_errors", "Alias reads that failed",
                                       ("model",), registry=self.registry)
        self._children: dict[tuple[str, str, str, str], _RequestSeries] = {}

    def series(self, model: str, version: str, variant: str, route: str) -> _RequestSeries:
        """The request series of one label set (created on first use)."""
        key = (model, version, variant, route)
        found = self._children.get(key)
        if found is None:
            found = _RequestSeries(
                self.requests.labels(*key), self.errors.labels(*key), self.latency.labels(*key)
            )
            self._children[key] = found
        return found

    def observe(self, model: str, version: str, variant: str, route: str, seconds: float, *, failed: bool) -> None:
        """Count one request (and its failure) and its latency."""
        series = self.series(model, version, variant, route)
        series.requests.inc()
        series.latency.observe(seconds)
        if failed:
            series.errors.inc()

    def set_loaded(self, model: str, alias: str, version: str | None) -> None:
        """Record the version now loaded for alias (None: nothing loaded for it)."""
        if version is None:
            try:
                self.loaded_version.remove(model, alias)
            except KeyError:
                pass  # never set: nothing to remove
            return
        self.loaded_version.labels(model, alias).set(int(version))

    def render(self) -> bytes:
        """Prometheus text exposition of every series."""
        return generate_latest(self.registry)
