"""The server's parts in-process, on a real MLflow store: settings, routing, the load check, and
the follower's handling of a failing version (faults injected through its loader)."""

from __future__ import annotations

import hashlib

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog, AuditTrail, EventType
from include.recommender.training import tracking_uri_scope
from include.serving.failures import FailureReporter
from include.serving.following import RegistryFollower
from include.serving.loading import LoadFailed, ServedModel, load_version
from include.serving.metrics import ServingMetrics
from include.serving.recommendations import RecommendationTable
from include.serving.routing import Slots, route, user_bucket
from include.serving.settings import ServingSettings, SettingsError

from tests.include.governance.support import MODEL

URI = {"MLFLOW_TRACKING_URI": "sqlite:///x.db"}


@pytest.fixture
def experiment_id(mlflow_client, mlflow_store):
    return mlflow_client.create_experiment("serving-parts", artifact_location=mlflow_store["artifact_location"])


def test_settings_defaults_follow_the_contract():
    settings = ServingSettings.from_environment(URI)
    assert (settings.model_name, settings.poll_seconds, settings.canary_share, settings.mode) == (
        lc.DEFAULT_MODEL_NAME, 5.0, 0.0, "canary")
    assert not settings.follows_challenger


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "MLFLOW_TRACKING_URI"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_CANARY_SHARE": "1.5"}, "MOVIE_RECOMMENDER_SERVING_CANARY_SHARE='1.5'"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_CANARY_SHARE": "a lot"}, "is not a number"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_POLL_SECONDS": "0"}, "MOVIE_RECOMMENDER_SERVING_POLL_SECONDS='0'"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_MODE": "blue-green"}, "MOVIE_RECOMMENDER_SERVING_MODE='blue-green'"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_MODE": "shadow"}, "needs MOVIE_RECOMMENDER_SERVING_CANARY_SHARE > 0"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_MODEL": "bad/name"}, "MOVIE_RECOMMENDER_SERVING_MODEL: model name 'bad/name'"),
        ({**URI, "MOVIE_RECOMMENDER_SERVING_MAX_K": "-3"}, "MOVIE_RECOMMENDER_SERVING_MAX_K='-3'"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(environ, named):
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace("+", r"\+")):
        ServingSettings.from_environment(environ)


def _served(version: str) -> ServedModel:
    table = RecommendationTable(depth=1, rows={}, lists=[([], [])], unknown_row=0)
    return ServedModel("m", version, None, None, table, "now", 0.0)


def test_routing_is_a_stable_hash_of_model_and_user():
    digest = hashlib.blake2b(b"m:42", digest_size=8).digest()
    assert user_bucket("m", 42) == int.from_bytes(digest, "big") / 2**64
    assert user_bucket("m", 42) != user_bucket("other", 42)
    slots = Slots(champion=_served("1"), challenger=_served("2"))
    assert route(Slots(), "m", 42, 0.5, "canary") is None
    assert route(slots, "m", 42, 0.0, "canary").variant == "champion"
    canary = route(slots, "m", 42, 1.0, "canary")
    assert (canary.variant, canary.alias, canary.model.version, canary.shadow) == ("canary", lc.CHALLENGER, "2", None)
    shadow = route(slots, "m", 42, 1.0, "shadow")
    assert (shadow.variant, shadow.model.version, shadow.shadow.version) == ("champion", "1", "2")
    assert route(Slots(champion=_served("1")), "m", 42, 1.0, "canary").variant == "champion"


def _tiny_version(client, experiment_id, *, example: bool, answer: float = 0.5) -> str:
    import mlflow
    import mlflow.pyfunc
    import pandas as pd

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [answer] * len(model_input)

    with tracking_uri_scope(client.tracking_uri), mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Constant(), pip_requirements=["mlflow"],
            input_example=pd.DataFrame({"userId": [1, 2], "movieId": [10, 20]}) if example else None,
        )
    try:
        client.create_registered_model(MODEL)
    except Exception:  # noqa: BLE001 - already there
        pass
    source = client.get_logged_model(info.model_id).artifact_location  # a models:/ source needs the global URI
    return str(client.create_model_version(MODEL, source, run_id=info.run_id).version)


@pytest.mark.parametrize(
    ("example", "answer", "stage", "reason"),
    [
        (False, 0.5, "check", "no readable input example"),
        (True, 7.0, "check", "outside [0, 1]"),
        (True, 0.5, "table", "not a movie recommender pyfunc"),
    ],
)
def test_a_version_that_fails_its_check_is_refused_naming_why(mlflow_client, experiment_id, example, answer, stage, reason):
    version = _tiny_version(mlflow_client, experiment_id, example=example, answer=answer)
    with tracking_uri_scope(mlflow_client.tracking_uri), pytest.raises(LoadFailed) as failed:
        load_version(MODEL, version, None, 5)
    assert (failed.value.version, failed.value.stage) == (version, stage)
    assert reason in str(failed.value)


def test_a_failing_version_keeps_the_old_one_is_retried_after_a_back_off_and_audited_once(
    mlflow_client, experiment_id, tmp_path
):
    old, new = (_tiny_version(mlflow_client, experiment_id, example=True) for _ in range(2))
    attempts = []

    def loader(model_name, version, run_id, depth):
        attempts.append(version)
        if version == new:
            raise LoadFailed(version, "load", "injected: artifact store unreachable")
        return _served(version)

    settings = ServingSettings(model_name=MODEL, tracking_uri=mlflow_client.tracking_uri)
    metrics = ServingMetrics()
    trail = AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)
    follower = RegistryFollower(mlflow_client, settings, metrics, FailureReporter(mlflow_client, trail, metrics, MODEL), loader)
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, old)  # a test fixture, no step involved
    follower.poll_once()
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, new)
    for _ in range(3):
        follower.poll_once()
    assert follower.slots.champion.version == old
    assert attempts == [old, new]  # not retried on every poll
    follower._failures[new].retry_at = 0.0  # the back-off has passed
    follower.poll_once()
    assert attempts == [old, new, new] and follower.slots.champion.version == old
    failures = metrics.registry.get_sample_value(
        "movie_recommender_serving_load_failures_total", {"model": MODEL, "version": new})
    assert failures == 2
    events = trail.log.events(model_name=MODEL, kinds=[EventType.SERVING_LOAD_FAILED])
    assert [(e.version, e.details["still_serving"]) for e in events] == [(new, old)]


class _Pyfunc:
    """A pyfunc whose score mode answers a constant, or raises (the injected fault)."""

    def __init__(self, answer: float | None) -> None:
        self.answer = answer

    def predict(self, frame, params=None):
        if self.answer is None:
            raise RuntimeError("injected: model crashed")
        return [self.answer] * len(frame)


def _answerer(share: float, mode: str, champion: float | None, challenger: float | None):
    from types import SimpleNamespace

    from include.serving.answering import Answerer

    def served(version, answer):
        table = RecommendationTable(depth=1, rows={}, lists=[([], [])], unknown_row=0)
        return ServedModel("m", version, None, _Pyfunc(answer), table, "now", 0.0)

    settings = ServingSettings(model_name="m", tracking_uri="sqlite:///x.db", canary_share=share, mode=mode)
    metrics = ServingMetrics()
    follower = SimpleNamespace(slots=Slots(champion=served("1", champion), challenger=served("2", challenger)))
    return Answerer(settings, follower, metrics), metrics


def _count(metrics, name, version, variant):
    labels = {"model": "m", "version": version, "variant": variant, "route": "/score"}
    return metrics.registry.get_sample_value(f"movie_recommender_serving_{name}_total", labels) or 0.0


def test_a_failing_canary_is_answered_by_the_champion_and_counted_as_a_canary_error():
    answerer, metrics = _answerer(1.0, "canary", champion=0.25, challenger=None)
    answer = answerer.score([7], [3])
    assert (answer.body["scores"], answer.body["model_version"], answer.body["alias"]) == ([0.25], "1", lc.CHAMPION)
    assert (_count(metrics, "requests", "2", "canary"), _count(metrics, "errors", "2", "canary")) == (1, 1)
    assert (_count(metrics, "requests", "1", "champion"), _count(metrics, "errors", "1", "champion")) == (1, 0)


def test_a_failing_champion_is_an_error_naming_the_version():
    from include.serving.answering import ModelFailed

    answerer, metrics = _answerer(0.0, "canary", champion=None, challenger=0.5)
    with pytest.raises(ModelFailed, match="v1 failed to answer /score: RuntimeError: injected"):
        answerer.score([7], [3])
    assert _count(metrics, "errors", "1", "champion") == 1


def test_shadow_scores_after_the_answer_and_its_failure_reaches_nobody():
    answerer, metrics = _answerer(1.0, "shadow", champion=0.25, challenger=None)
    answer = answerer.score([7], [3])
    assert (answer.body["scores"], answer.body["model_version"]) == ([0.25], "1")
    assert _count(metrics, "requests", "2", "shadow") == 0  # not before the caller has the answer
    answer.shadow()
    assert (_count(metrics, "requests", "2", "shadow"), _count(metrics, "errors", "2", "shadow")) == (1, 1)


def test_no_champion_loaded_is_not_ready():
    from types import SimpleNamespace

    from include.serving.answering import Answerer, NotReady

    settings = ServingSettings(model_name="m", tracking_uri="sqlite:///x.db")
    with pytest.raises(NotReady, match="no version of m is loaded as @champion"):
        Answerer(settings, SimpleNamespace(slots=Slots()), ServingMetrics()).recommend(1, 5)


def test_the_entry_point_refuses_a_missing_sqlite_store_and_a_bad_setting(tmp_path):
    import os
    import subprocess
    import sys

    from tests.serving.conftest import REPO

    missing = tmp_path / "nowhere" / "mlflow.db"
    env = {**os.environ, "MOVIE_RECOMMENDER_SERVING_CANARY_SHARE": "0"}
    done = subprocess.run([sys.executable, "-m", "include.serving", "--tracking-uri", f"sqlite:///{missing}"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 2 and f"no MLflow database at {missing}" in done.stderr
    assert not missing.parent.exists()  # nothing created
    env["MOVIE_RECOMMENDER_SERVING_CANARY_SHARE"] = "2"
    done = subprocess.run([sys.executable, "-m", "include.serving", "--tracking-uri", f"sqlite:///{missing}"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 2 and "MOVIE_RECOMMENDER_SERVING_CANARY_SHARE='2'" in done.stderr


def test_with_no_champion_the_server_is_live_but_not_ready():
    # The container health check probes /live: a fresh stack has no @champion, and its start
    # waits on that check; /health (readiness) stays 503 until one is loaded.
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from include.serving.app import create_app

    settings = ServingSettings(model_name="m", tracking_uri="sqlite:///x.db")
    client = TestClient(create_app(settings, SimpleNamespace(slots=Slots()), ServingMetrics()))
    assert client.get("/live").status_code == 200
    health = client.get("/health")
    assert health.status_code == 503 and "no @champion of m" in health.json()["detail"]
