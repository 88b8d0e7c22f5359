"""The model server's metrics as prometheus_client writes them, without a server process.

The series and labels are the serving contract's; a new ``ServerMetrics`` is a server (re)start:
its series have new ``_created`` timestamps and counters from zero.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LABELS = ("model", "version", "variant", "route")


class ServerMetrics:
    """The request, error and latency series of one server process."""

    def __init__(self) -> None:
        # Distinct _created timestamps for a "restarted" server created within the same clock tick.
        time.sleep(0.01)
        self.registry = CollectorRegistry()
        self.requests = Counter("movie_recommender_serving_requests_total", "requests", LABELS, registry=self.registry)
        self.errors = Counter("movie_recommender_serving_errors_total", "errors", LABELS, registry=self.registry)
        self.latency = Histogram("movie_recommender_serving_latency_seconds", "latency", LABELS, registry=self.registry)

    def serve(self, model, version, variant, n, *, seconds=0.004, errors=0, route="/recommend"):
        labels = (model, str(version), variant, route)
        self.requests.labels(*labels).inc(n)
        if errors:
            self.errors.labels(*labels).inc(errors)
        for _ in range(n):
            self.latency.labels(*labels).observe(seconds)
        return self

    def text(self) -> str:
        return generate_latest(self.registry).decode()
