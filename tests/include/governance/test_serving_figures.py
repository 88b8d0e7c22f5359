"""Serving figures from /metrics text: sums over routes, percentiles, increases across restarts."""

from __future__ import annotations

import math

import pytest

from include.governance import lifecycle as lc
from include.governance.serving_figures import (
    Counts,
    ServingMetricsError,
    advance,
    figures_from_tags,
    parse_metrics,
    quantile,
    version_tags,
)
from tests.include.governance.serving_support import ServerMetrics

M = "movie_recommender"


def test_a_version_variant_is_summed_over_routes():
    text = ServerMetrics().serve(M, 3, "champion", 7, errors=1).serve(M, 3, "champion", 5, route="/score").text()
    counts = parse_metrics(text)[(M, "3", "champion")]
    assert (counts.requests, counts.errors) == (12, 1)
    assert counts.buckets["+Inf"] == 12 and counts.created is not None


def test_percentiles_interpolate_within_the_bucket_as_prometheus_does():
    # 90 answers in (0, 5 ms], 10 in (10, 25 ms]: p50 inside the first bucket, p95 inside the third.
    buckets = {"0.005": 90, "0.01": 90, "0.025": 100, "+Inf": 100}
    assert quantile(buckets, 0.5) == pytest.approx(0.005 * 50 / 90)
    assert quantile(buckets, 0.95) == pytest.approx(0.01 + 0.015 * 0.5)
    assert quantile({"0.005": 0, "+Inf": 0}, 0.95) is None
    # Ranked past every finite bound: the largest finite bound, as histogram_quantile answers.
    assert quantile({"0.005": 1, "+Inf": 10}, 0.95) == 0.005


def test_figures_count_only_the_increase_since_the_last_recording():
    server = ServerMetrics().serve(M, 1, "champion", 10)
    first = advance(parse_metrics(server.text()), {})[0]
    server.serve(M, 1, "champion", 4, errors=2)
    second = advance(parse_metrics(server.text()), {(M, "1"): first.states})[0]
    assert second.window["champion"].requests == 4 and second.window["champion"].errors == 2
    assert second.totals["champion"].requests == 14
    assert second.totals["champion"].error_rate == pytest.approx(2 / 14)


def test_a_server_restart_adds_its_new_counts_instead_of_subtracting():
    first = advance(parse_metrics(ServerMetrics().serve(M, 1, "champion", 50).text()), {})[0]
    restarted = ServerMetrics().serve(M, 1, "champion", 30)  # new process: counters from zero
    second = advance(parse_metrics(restarted.text()), {(M, "1"): first.states})[0]
    assert second.window["champion"].requests == 30
    assert second.totals["champion"].requests == 80


def test_without_created_series_a_counter_going_down_is_a_restart():
    text = ServerMetrics().serve(M, 1, "champion", 50).text()
    without_created = "\n".join(line for line in text.splitlines() if "_created" not in line) + "\n"
    first = advance(parse_metrics(without_created), {})[0]
    assert first.states["champion"].last.created is None
    smaller = "\n".join(
        line for line in ServerMetrics().serve(M, 1, "champion", 20).text().splitlines() if "_created" not in line
    ) + "\n"
    second = advance(parse_metrics(smaller), {(M, "1"): first.states})[0]
    assert second.totals["champion"].requests == 70


def test_canary_share_is_the_canary_part_of_champion_and_canary_requests():
    server = ServerMetrics().serve(M, 1, "champion", 80).serve(M, 2, "canary", 20).serve(M, 2, "shadow", 80)
    readings = {r.version: r for r in advance(parse_metrics(server.text()), {})}
    assert readings["2"].canary_share == pytest.approx(0.2)  # shadow copies are not routed requests
    assert readings["1"].canary_share is None
    tags = version_tags(readings["2"], "2026-12-02T08:00:00.000+00:00")
    assert tags[lc.SERVING_CANARY_SHARE] == "0.2" and tags["serving_canary_requests"] == "20"
    assert figures_from_tags(tags)["shadow"]["requests"] == 80
    assert float(tags["serving_canary_p95_ms"]) == pytest.approx(4.75)


def test_metrics_that_are_not_the_servers_are_refused_naming_the_problem():
    with pytest.raises(ServingMetricsError, match="not Prometheus text"):
        parse_metrics("movie_recommender_serving_requests_total{model=\"m\" 1\n")
    with pytest.raises(ServingMetricsError, match="no variant"):
        parse_metrics('movie_recommender_serving_requests_total{model="m",version="1"} 1\n')
    with pytest.raises(ServingMetricsError, match="variant 'blue'"):
        advance(parse_metrics('movie_recommender_serving_requests_total{model="m",version="1",variant="blue"} 1\n'), {})


def test_an_empty_window_has_no_rate_or_latency():
    figures = advance({(M, "1", "champion"): Counts()}, {})[0].window["champion"]
    assert figures.requests == 0 and figures.error_rate is None and figures.p95_ms is None
    assert math.isnan(figures_from_tags({"serving_champion_requests": "lots"})["champion"]["requests"])
