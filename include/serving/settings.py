"""The model server's settings, read from the environment (and the entry point's flags).

Every value is checked when the server starts, so a typo stops it with a message naming the
variable, instead of a server that serves something else than asked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from include.governance import lifecycle as lc
from include.governance.names import InvalidName, check_model_name

MODEL_ENV = "MOVIE_RECOMMENDER_SERVING_MODEL"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
POLL_SECONDS_ENV = "MOVIE_RECOMMENDER_SERVING_POLL_SECONDS"
CANARY_SHARE_ENV = "MOVIE_RECOMMENDER_SERVING_CANARY_SHARE"
MODE_ENV = "MOVIE_RECOMMENDER_SERVING_MODE"
MAX_K_ENV = "MOVIE_RECOMMENDER_SERVING_MAX_K"
PRECOMPUTED_K_ENV = "MOVIE_RECOMMENDER_SERVING_PRECOMPUTED_K"
MAX_PAIRS_ENV = "MOVIE_RECOMMENDER_SERVING_MAX_PAIRS"

CANARY = "canary"
SHADOW = "shadow"
MODES = (CANARY, SHADOW)

DEFAULT_POLL_SECONDS = 5.0
# Lists up to this length are computed once per loaded version; longer ones (up to MAX_K) per request.
DEFAULT_PRECOMPUTED_K = 20
DEFAULT_MAX_K = 100
DEFAULT_MAX_PAIRS = 1000


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable and the value."""


@dataclass(frozen=True)
class ServingSettings:
    """What the server serves and how.

    :param model_name: the registered model whose ``@champion`` is served.
    :param tracking_uri: the MLflow tracking (and registry) URI.
    :param poll_seconds: how often the aliases are read.
    :param canary_share: share of users (0..1) whose requests ``@challenger`` answers (canary) or
        also scores (shadow).
    :param mode: ``canary`` or ``shadow``.
    :param precomputed_k: list length computed for every known user when a version loads.
    :param max_k: the longest list a request may ask for.
    :param max_pairs: the most pairs one /score request may hold.
    """

    model_name: str
    tracking_uri: str
    poll_seconds: float = DEFAULT_POLL_SECONDS
    canary_share: float = 0.0
    mode: str = CANARY
    precomputed_k: int = DEFAULT_PRECOMPUTED_K
    max_k: int = DEFAULT_MAX_K
    max_pairs: int = DEFAULT_MAX_PAIRS

    @property
    def follows_challenger(self) -> bool:
        """Whether ``@challenger`` is loaded at all: only when some requests go to it."""
        return self.canary_share > 0.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *, tracking_uri: str | None = None) -> ServingSettings:
        """Read and check every setting.

        :param environ: the environment (``os.environ`` when None).
        :param tracking_uri: overrides ``MLFLOW_TRACKING_URI`` (the ``--tracking-uri`` flag).
        :raises SettingsError: naming the variable and the bad value.
        """
        environ = os.environ if environ is None else environ
        uri = tracking_uri or environ.get(TRACKING_URI_ENV, "").strip()
        if not uri:
            raise SettingsError(
                f"{TRACKING_URI_ENV} is not set: the server needs the MLflow registry whose @champion it serves "
                "(make serve sets the embedded default's store)"
            )
        settings = cls(
            model_name=_model_name(environ.get(MODEL_ENV, lc.DEFAULT_MODEL_NAME)),
            tracking_uri=uri,
            poll_seconds=_number(environ, POLL_SECONDS_ENV, DEFAULT_POLL_SECONDS, low=0.0, low_inclusive=False, high=3600.0),
            canary_share=_number(environ, CANARY_SHARE_ENV, 0.0, low=0.0, low_inclusive=True, high=1.0),
            mode=_mode(environ.get(MODE_ENV, CANARY)),
            precomputed_k=_count(environ, PRECOMPUTED_K_ENV, DEFAULT_PRECOMPUTED_K),
            max_k=_count(environ, MAX_K_ENV, DEFAULT_MAX_K),
            max_pairs=_count(environ, MAX_PAIRS_ENV, DEFAULT_MAX_PAIRS),
        )
        if settings.mode == SHADOW and settings.canary_share == 0.0:
            raise SettingsError(
                f"{MODE_ENV}=shadow needs {CANARY_SHARE_ENV} > 0: the share of users whose requests "
                "@challenger also scores in shadow (0 would shadow nothing)"
            )
        return settings


def _model_name(value: str) -> str:
    try:
        return check_model_name(value)
    except InvalidName as exc:
        raise SettingsError(f"{MODEL_ENV}: {exc}") from None


def _mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise SettingsError(f"{MODE_ENV}={value!r} is not a serving mode; expected one of {list(MODES)}")
    return mode


def _number(environ: Mapping[str, str], name: str, default: float, *, low: float, low_inclusive: bool, high: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    too_low = value < low if low_inclusive else value <= low
    if not math.isfinite(value) or too_low or value > high:
        bound = ">=" if low_inclusive else ">"
        raise SettingsError(f"{name}={raw!r} must be {bound} {low:g} and <= {high:g}")
    return value


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}={raw!r} must be a positive integer")
    return int(raw)
