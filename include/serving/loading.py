"""Load one registered version for serving, and check it answers before it may serve.

A version is loaded through MLflow's pyfunc loader (``models:/<name>/<version>``: the number the
alias named when it was read, so an alias that moves during the load cannot swap in something
else), then checked on its own logged input example (scores in [0, 1], one per row), then its
recommendation table is built (``recommendations.py``). Any failure is a ``LoadFailed`` naming
the version and the reason; nothing half-loaded is returned.

The catalog (the movies, their propensity, what each user rated) travels inside the logged model
(the pickled ``CatalogIndex`` of include/recommender/pyfunc.py), so serving reads neither the
training data nor the run's ``data_snapshot/`` (the evaluation's evidence, possibly large).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from include.governance import lifecycle as lc
from include.serving.recommendations import RecommendationTable, build_table

log = logging.getLogger(__name__)


class LoadFailed(Exception):
    """A version could not be loaded, or failed its check; the old one keeps serving.

    :param version: the version that failed.
    :param stage: ``load``, ``check`` or ``table``.
    :param reason: what went wrong.
    """

    def __init__(self, version: str, stage: str, reason: str) -> None:
        super().__init__(f"v{version} failed at {stage}: {reason}")
        self.version = version
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class ServedModel:
    """A loaded, checked version, ready to answer (never changed after it is built).

    :param model_name: the registered model.
    :param version: the registry version.
    :param run_id: the version's run.
    :param pyfunc: the loaded MLflow pyfunc model.
    :param table: every known user's precomputed list.
    :param loaded_at: when it became ready (ISO 8601 UTC).
    :param load_seconds: how long loading, checking and building the table took.
    """

    model_name: str
    version: str
    run_id: str | None
    pyfunc: Any
    table: RecommendationTable
    loaded_at: str
    load_seconds: float

    def score(self, user_ids: list[int], movie_ids: list[int]) -> list[float]:
        """P(rating >= 4) per (user, movie) pair, through the pyfunc's score mode."""
        import pandas as pd

        frame = pd.DataFrame({"userId": np.asarray(user_ids, dtype=np.int64), "movieId": np.asarray(movie_ids, dtype=np.int64)})
        return np.asarray(self.pyfunc.predict(frame), dtype=np.float64).tolist()


def load_version(model_name: str, version: str, run_id: str | None, depth: int) -> ServedModel:
    """Load, check and prepare one version (the process's MLflow tracking URI names the registry).

    :param model_name: the registered model.
    :param version: the version number the alias named.
    :param run_id: the version's run (recorded, not read).
    :param depth: list length precomputed per user.
    :raises LoadFailed: naming the stage and the reason.
    """
    started = time.monotonic()
    pyfunc = _load_pyfunc(model_name, version)
    _check_input_example(pyfunc, version)
    try:
        table = build_table(pyfunc, depth)
    except Exception as exc:  # noqa: BLE001 - any failure means this version may not serve
        raise LoadFailed(version, "table", _describe(exc)) from exc
    return ServedModel(
        model_name=model_name,
        version=str(version),
        run_id=run_id,
        pyfunc=pyfunc,
        table=table,
        loaded_at=lc.utc_now_iso(),
        load_seconds=time.monotonic() - started,
    )


def _load_pyfunc(model_name: str, version: str) -> Any:
    import mlflow.pyfunc

    # The files are needed only while loading (the model is unpickled into memory and the input
    # example read eagerly); the model's code path is this repository's include/, already
    # imported, so it is not left on sys.path either (it would grow by one entry per load).
    saved_path = list(sys.path)
    try:
        with tempfile.TemporaryDirectory(prefix=f"serving-{model_name}-v{version}-") as directory:
            return mlflow.pyfunc.load_model(f"models:/{model_name}/{version}", dst_path=directory)
    except Exception as exc:  # noqa: BLE001 - reported as this version's load failure
        raise LoadFailed(version, "load", _describe(exc)) from exc
    finally:
        sys.path[:] = saved_path


def _check_input_example(pyfunc: Any, version: str) -> None:
    """The version must answer its logged input example: one probability in [0, 1] per row."""
    example = pyfunc.input_example
    if example is None:
        raise LoadFailed(version, "check", "the model has no readable input example to check it with")
    try:
        answer = np.asarray(pyfunc.predict(example), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - reported as this version's check failure
        raise LoadFailed(version, "check", f"predicting its input example raised {_describe(exc)}") from exc
    if answer.shape != (len(example),):
        raise LoadFailed(version, "check", f"its input example of {len(example)} rows got an answer of shape {answer.shape}")
    if not np.all((answer >= 0.0) & (answer <= 1.0)):
        raise LoadFailed(version, "check", "its input example got scores outside [0, 1] (or NaN)")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
