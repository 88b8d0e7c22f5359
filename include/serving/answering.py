"""Answering /recommend and /score with the routed version, counting every answer per variant.

Independent of HTTP: the FastAPI app (``app.py``) only parses, calls these and serialises.
A canary request the challenger fails is answered by the champion (the caller gets an answer;
the failure is counted under variant ``canary``, which is what canary evidence reads). A shadow
scoring runs after the caller has the champion's answer; its result is counted and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from include.governance import lifecycle as lc
from include.serving.following import RegistryFollower
from include.serving.loading import ServedModel
from include.serving.metrics import ServingMetrics
from include.serving.recommendations import live
from include.serving.routing import CHAMPION_VARIANT, CANARY_VARIANT, SHADOW_VARIANT, Route, route
from include.serving.settings import ServingSettings

log = logging.getLogger(__name__)

RECOMMEND_ROUTE = "/recommend"
SCORE_ROUTE = "/score"


class NotReady(Exception):
    """No champion is loaded yet (the server is starting, or the model has no @champion)."""


class ModelFailed(Exception):
    """The answering version raised; the message names the version."""


@dataclass(frozen=True)
class Answer:
    """What the caller gets, and the shadow scoring still to run (None: none)."""

    body: dict[str, Any]
    shadow: Callable[[], None] | None = None


class Answerer:
    """Routes and answers requests on the versions the follower has loaded.

    :param settings: the server's settings.
    :param follower: holds the loaded versions.
    :param metrics: the server's metrics.
    """

    def __init__(self, settings: ServingSettings, follower: RegistryFollower, metrics: ServingMetrics) -> None:
        self.settings = settings
        self.follower = follower
        self.metrics = metrics

    def is_precomputed(self, k: int) -> bool:
        """Whether a list of length k is a slice of the loaded tables (cheap: no model call)."""
        return k <= min(self.settings.precomputed_k, self.settings.max_k)

    def recommend(self, user_id: int, k: int) -> Answer:
        """The top-k list of user_id from the routed version.

        :raises NotReady: no champion loaded.
        :raises ModelFailed: the champion failed.
        """
        return self._answer(user_id, RECOMMEND_ROUTE, lambda model: {"items": _recommend(model, user_id, k)},
                            {"user_id": user_id})

    def score(self, user_ids: list[int], movie_ids: list[int]) -> Answer:
        """P(rating >= 4) per pair from the version routed by the first pair's user.

        :raises NotReady: no champion loaded.
        :raises ModelFailed: the champion failed.
        """
        return self._answer(user_ids[0], SCORE_ROUTE, lambda model: {"scores": model.score(user_ids, movie_ids)}, {})

    def _answer(self, user_id: int, route_name: str, compute: Callable[[ServedModel], dict], head: dict) -> Answer:
        slots = self.follower.slots  # read once: this request keeps these versions
        chosen = route(slots, self.settings.model_name, user_id, self.settings.canary_share, self.settings.mode)
        if chosen is None:
            raise NotReady(f"no version of {self.settings.model_name} is loaded as @{lc.CHAMPION} yet")
        try:
            result = self._timed(chosen.model, chosen.variant, route_name, compute)
            answered = chosen
        except ModelFailed:
            if chosen.variant != CANARY_VARIANT or slots.champion is None:
                raise
            answered = Route(slots.champion, lc.CHAMPION, CHAMPION_VARIANT)
            result = self._timed(answered.model, CHAMPION_VARIANT, route_name, compute)
        body = {**head, **result, "model_version": answered.model.version, "alias": answered.alias}
        shadow = None
        if chosen.shadow is not None:
            shadow_model = chosen.shadow
            shadow = lambda: self._shadow(shadow_model, route_name, compute)  # noqa: E731 - a deferred call
        return Answer(body, shadow)

    def _timed(self, model: ServedModel, variant: str, route_name: str, compute: Callable[[ServedModel], dict]) -> dict:
        started = time.perf_counter()
        try:
            result = compute(model)
        except Exception as exc:  # noqa: BLE001 - counted, then raised as the caller's error
            self.metrics.observe(model.model_name, model.version, variant, route_name,
                                 time.perf_counter() - started, failed=True)
            log.error("serving: v%s (%s) failed on %s: %s", model.version, variant, route_name, exc, exc_info=exc)
            raise ModelFailed(f"v{model.version} failed to answer {route_name}: {type(exc).__name__}: {exc}") from exc
        self.metrics.observe(model.model_name, model.version, variant, route_name,
                             time.perf_counter() - started, failed=False)
        return result

    def _shadow(self, model: ServedModel, route_name: str, compute: Callable[[ServedModel], dict]) -> None:
        """Score in shadow: counted under variant ``shadow``, never returned; a failure is only counted."""
        try:
            self._timed(model, SHADOW_VARIANT, route_name, compute)
        except ModelFailed:
            pass  # counted and logged by _timed; the caller already has the champion's answer


def _recommend(model: ServedModel, user_id: int, k: int) -> list[dict[str, Any]]:
    if k <= model.table.depth:
        movies, scores = model.table.top(user_id, k)
    else:
        frame = live(model.pyfunc, [user_id], k)
        movies, scores = frame["movieId"].astype(int).tolist(), frame["score"].astype(float).tolist()
    return [{"movie_id": movie, "score": score} for movie, score in zip(movies, scores)]
