"""The follower server against a real store: it serves @champion, answers a canary share from
@challenger, follows a promotion and a rollback without a failed request, and never swaps in a
broken version. The tests share one server and run in file order (each states what it expects
to find)."""

from __future__ import annotations

import math
import threading
import urllib.parse
from pathlib import Path

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog, EventType
from include.serving.routing import user_bucket

from tests.serving.conftest import FOLLOWED

pytestmark = pytest.mark.services  # a real model-server process

SHARE = 0.3
CANARY_USERS = range(1, 3001)


def test_serves_the_champion_with_its_precomputed_lists(followed):
    server, versions = followed
    server.wait_for_versions(champion=versions["a"], challenger=None)
    status, body = server.post("/recommend", {"user_id": 1, "k": 5})
    assert status == 200, body
    assert (body["user_id"], body["model_version"], body["alias"]) == (1, versions["a"], lc.CHAMPION)
    assert len(body["items"]) == 5 and [item["score"] for item in body["items"]] == sorted(
        (item["score"] for item in body["items"]), reverse=True
    )
    # A longer list than the precomputed depth (20) is the model's own answer; it starts the same.
    status, longer = server.post("/recommend", {"user_id": 1, "k": 30})
    assert status == 200 and len(longer["items"]) == 30
    assert longer["items"][:5] == body["items"]
    status, scored = server.post("/score", {"pairs": [{"user_id": 1, "movie_id": 3}, {"user_id": 2, "movie_id": 7}]})
    assert status == 200 and len(scored["scores"]) == 2 and all(0.0 <= s <= 1.0 for s in scored["scores"])


def test_bad_requests_are_refused_naming_the_field(followed):
    server, _ = followed
    status, body = server.post("/recommend", {"user_id": 1, "k": 101})
    assert status == 422 and "k=101" in body["detail"] and "MOVIE_RECOMMENDER_SERVING_MAX_K" in body["detail"]
    status, body = server.post("/recommend", {"user_id": "7"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "user_id"]
    status, body = server.post("/score", {"pairs": []})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "pairs"]


def test_canary_share_is_sticky_per_user_and_within_binomial_tolerance(followed, store):
    server, versions = followed
    store.validate_and_approve(FOLLOWED, versions["b"])  # @challenger = b
    server.wait_for_versions(champion=versions["a"], challenger=versions["b"])
    answered = {}
    for user in CANARY_USERS:
        status, body = server.post("/recommend", {"user_id": user, "k": 3})
        assert status == 200, body
        answered[user] = (body["alias"], body["model_version"])
    canary = {user for user, (alias, _) in answered.items() if alias == lc.CHALLENGER}
    assert all(answered[user][1] == versions["b"] for user in canary)
    assert all(version == versions["a"] for user, (alias, version) in answered.items() if user not in canary)
    # Sticky: the stable hash decides, so the same users go to the canary on every request.
    assert canary == {user for user in CANARY_USERS if user_bucket(FOLLOWED, user) < SHARE}
    for user in list(CANARY_USERS)[:200]:
        assert server.post("/recommend", {"user_id": user, "k": 3})[1]["alias"] == answered[user][0]
    n = len(CANARY_USERS)
    assert abs(len(canary) - SHARE * n) <= 4 * math.sqrt(n * SHARE * (1 - SHARE))

    metrics = server.metrics()
    canary_line = _series(metrics, "requests_total", versions["b"], "canary")
    champion_line = _series(metrics, "requests_total", versions["a"], "champion")
    assert canary_line >= len(canary) and champion_line >= n - len(canary)
    assert _loaded(metrics, lc.CHALLENGER) == float(versions["b"])


def test_follows_promotion_and_rollback_without_a_failed_request(followed, store):
    server, versions = followed
    server.wait_for_versions(champion=versions["a"], challenger=versions["b"])
    failures, seen = [], set()
    stop = threading.Event()

    def hammer() -> None:
        user = 0
        while not stop.is_set():
            user = user % 500 + 1
            status, body = server.post("/recommend", {"user_id": user, "k": 10})
            if status != 200:
                failures.append((status, body))
            else:
                seen.add(body["model_version"])

    clients = [threading.Thread(target=hammer) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        store.promote(FOLLOWED, versions["b"])  # @champion = b, @challenger removed
        server.wait_for_versions(champion=versions["b"], challenger=None)
        restored = store.rollback(FOLLOWED)
        assert restored == versions["a"]
        server.wait_for_versions(champion=versions["a"], challenger=None)
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert failures == []
    assert {versions["a"], versions["b"]} <= seen
    assert _loaded(server.metrics(), lc.CHAMPION) == float(versions["a"])


def test_a_broken_version_is_never_swapped_in_and_is_reported(followed, store):
    server, versions = followed
    server.wait_for_versions(champion=versions["a"], challenger=None)
    broken = versions["b"]  # served before, now @previous_champion and no longer loaded
    client = store.client()
    # The artifact store lost its pickled model: a rollback to it must not take the server down.
    (_local_path(client.get_model_version(FOLLOWED, broken).source) / "python_model.pkl").unlink()
    assert store.rollback(FOLLOWED) == broken  # @champion = the broken version

    server.wait_for(lambda: _series(server.metrics(), "load_failures_total", broken) >= 1, "the load failure counted")
    assert server.version()["champion"]["version"] == versions["a"]
    status, answer = server.post("/recommend", {"user_id": 5, "k": 4})
    assert (status, answer["model_version"]) == (200, versions["a"])
    assert _loaded(server.metrics(), lc.CHAMPION) == float(versions["a"])
    events = AuditLog(f"sqlite:///{store.audit_path}").events(
        model_name=FOLLOWED, version=broken, kinds=[EventType.SERVING_LOAD_FAILED]
    )
    assert len(events) == 1
    event = events[0]
    assert (event.actor, event.source, event.to_alias) == ("model-server", "serving", None)
    assert event.details["alias"] == lc.CHAMPION and event.details["still_serving"] == versions["a"]
    assert event.details["stage"] == "load" and "python_model.pkl" in event.reason
    assert f"v{broken} failed at load" in server.process.log_text()


def _local_path(uri: str) -> Path:
    return Path(urllib.parse.urlparse(uri).path) if uri.startswith("file:") else Path(uri)


def _series(metrics: str, name: str, version: str, variant: str | None = None) -> float:
    """The value of a movie_recommender_serving_<name> series for version (and variant), summed."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(f"movie_recommender_serving_{name}{{"):
            continue
        labels, value = line.rsplit(" ", 1)
        if f'version="{version}"' in labels and (variant is None or f'variant="{variant}"' in labels):
            total += float(value)
    return total


def _loaded(metrics: str, alias: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("movie_recommender_serving_loaded_version{") and f'alias="{alias}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None
