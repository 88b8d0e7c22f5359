"""Shadow mode against a real store: @challenger scores the shadowed users' requests, counted
under variant "shadow" in /metrics, and its answers never reach the caller."""

from __future__ import annotations

import pytest

from include.governance import lifecycle as lc
from include.serving.routing import user_bucket

from tests.serving.conftest import SHADOWED
from tests.serving.test_following import _series

pytestmark = pytest.mark.services  # a real model-server process

SHARE = 0.5
USERS = range(1, 601)


def test_shadow_answers_never_reach_the_caller_and_are_counted_per_version(shadowed):
    server, versions = shadowed
    champion, challenger = versions["a"], versions["c"]
    server.wait_for_versions(champion=champion, challenger=challenger)
    # The package's server may have answered other tests: count this test's requests only, once
    # their shadow scorings are done.
    before = _settled(server, challenger)
    baseline = {key: _series(before, *key) for key in _counted_keys(champion, challenger)}
    expected_model = server.post("/recommend", {"user_id": 1, "k": 5})[1]["items"]
    for user in USERS:
        status, body = server.post("/recommend", {"user_id": user, "k": 5})
        assert status == 200, body
        assert (body["alias"], body["model_version"]) == (lc.CHAMPION, champion)
        if user == 1:
            assert body["items"] == expected_model  # the same champion list, shadowed or not
    status, body = server.post("/score", {"pairs": [{"user_id": 2, "movie_id": 9}]})
    assert (status, body["model_version"], body["alias"]) == (200, champion, lc.CHAMPION)

    in_shadow = {user for user in USERS if user_bucket(SHADOWED, user) < SHARE}
    # Every request of a shadowed user (user 1 asked twice, user 2 also scored pairs) is scored
    # again by the challenger after its response: wait for the last ones.
    expected = len(in_shadow) + (1 in in_shadow) + (2 in in_shadow)
    assert 0 < expected < len(USERS)
    server.wait_for(
        lambda: _series(server.metrics(), "requests_total", challenger, "shadow") - baseline[_shadow_key(challenger)] >= expected,
        "every shadowed request scored by the challenger",
    )
    metrics = server.metrics()
    added = {key: _series(metrics, *key) - baseline[key] for key in baseline}
    assert added == {
        ("requests_total", challenger, "shadow"): expected,
        ("latency_seconds_count", challenger, "shadow"): expected,
        ("errors_total", challenger, "shadow"): 0,
        ("requests_total", challenger, "canary"): 0,
        ("requests_total", challenger, "champion"): 0,
        ("requests_total", champion, "champion"): len(USERS) + 2,
    }


def _shadow_key(challenger: str) -> tuple[str, str, str]:
    return ("requests_total", challenger, "shadow")


def _counted_keys(champion: str, challenger: str) -> list[tuple[str, str, str]]:
    return [_shadow_key(challenger), ("latency_seconds_count", challenger, "shadow"),
            ("errors_total", challenger, "shadow"), ("requests_total", challenger, "canary"),
            ("requests_total", challenger, "champion"), ("requests_total", champion, "champion")]


def _settled(server, challenger: str) -> str:
    """/metrics once the shadow count stopped moving (earlier requests' shadow scorings finished)."""
    readings = [server.metrics()]

    def unchanged() -> bool:
        readings.append(server.metrics())
        return _series(readings[-1], *_shadow_key(challenger)) == _series(readings[-2], *_shadow_key(challenger))

    server.wait_for(unchanged, "earlier shadow scorings finished")
    return readings[-1]
