"""The HTTP surface (FastAPI): /recommend, /score, /live, /health (ready), /version, /metrics.

Handlers parse, call ``answering.Answerer`` and serialise; a list the loaded tables hold is
answered on the event loop (a dict lookup and a slice), anything that calls a model runs in the
thread pool. Shadow scoring runs as a background task, after the response is sent.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from include.serving.answering import Answer, Answerer, ModelFailed, NotReady
from include.serving.following import RegistryFollower
from include.serving.metrics import ServingMetrics
from include.serving.settings import MAX_K_ENV, MAX_PAIRS_ENV, ServingSettings

StrictId = Annotated[int, Field(strict=True)]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: StrictId
    k: Annotated[int, Field(strict=True, ge=1)] = 10


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: StrictId
    movie_id: StrictId


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: Annotated[list[Pair], Field(min_length=1)]


def _json(body: dict, status_code: int = 200) -> Response:
    return Response(json.dumps(body).encode(), status_code=status_code, media_type="application/json")


def _deliver(answer: Answer, background: BackgroundTasks) -> Response:
    if answer.shadow is not None:
        background.add_task(answer.shadow)
    return _json(answer.body)


def create_app(settings: ServingSettings, follower: RegistryFollower, metrics: ServingMetrics) -> FastAPI:
    """The app serving what follower has loaded (the caller starts and stops the follower)."""
    app = FastAPI(title="movie recommender model server", docs_url=None, redoc_url=None, openapi_url=None)
    _add_model_routes(app, settings, Answerer(settings, follower, metrics))
    _add_status_routes(app, settings, follower, metrics)
    return app


def _add_model_routes(app: FastAPI, settings: ServingSettings, answerer: Answerer) -> None:
    """/recommend and /score."""

    @app.post("/recommend")
    async def recommend(request: RecommendRequest, background: BackgroundTasks) -> Response:
        if request.k > settings.max_k:
            raise HTTPException(422, f"k={request.k} is above the server's maximum of {settings.max_k} ({MAX_K_ENV})")
        if answerer.is_precomputed(request.k):
            answer = _call(answerer.recommend, request.user_id, request.k)
        else:
            answer = await run_in_threadpool(_call, answerer.recommend, request.user_id, request.k)
        return _deliver(answer, background)

    @app.post("/score")
    async def score(request: ScoreRequest, background: BackgroundTasks) -> Response:
        if len(request.pairs) > settings.max_pairs:
            raise HTTPException(
                422, f"{len(request.pairs)} pairs is more than the server's maximum of {settings.max_pairs} ({MAX_PAIRS_ENV})"
            )
        users = [pair.user_id for pair in request.pairs]
        movies = [pair.movie_id for pair in request.pairs]
        answer = await run_in_threadpool(_call, answerer.score, users, movies)
        return _deliver(answer, background)


def _add_status_routes(app: FastAPI, settings: ServingSettings, follower: RegistryFollower, metrics: ServingMetrics) -> None:
    """/health, /version and /metrics."""

    @app.get("/live")
    async def live() -> Response:
        # Liveness, for the container health check: a fresh deployment has no @champion yet, and a
        # server waiting for one is up (the stack's start waits on this), not failed.
        return _json({"status": "live", "model": settings.model_name}, 200)

    @app.get("/health")
    async def health() -> Response:
        champion = follower.slots.champion
        if champion is None:
            return _json({"status": "starting", "detail": f"no @champion of {settings.model_name} loaded yet"}, 503)
        return _json({"status": "ok", "model": settings.model_name, "champion": champion.version})

    @app.get("/version")
    async def version() -> Response:
        slots = follower.slots
        return _json(
            {
                "model": settings.model_name,
                "champion": _described(slots.champion),
                "challenger": _described(slots.challenger),
                "canary_share": settings.canary_share,
                "mode": settings.mode,
                "last_poll_at": follower.last_poll_at,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _call(method, *args) -> Answer:
    """Call an Answerer method, turning its errors into HTTP answers."""
    try:
        return method(*args)
    except NotReady as exc:
        raise HTTPException(503, str(exc)) from exc
    except ModelFailed as exc:
        raise HTTPException(500, str(exc)) from exc


def _described(model) -> dict | None:
    if model is None:
        return None
    return {"version": model.version, "loaded_at": model.loaded_at, "run_id": model.run_id}
