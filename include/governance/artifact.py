"""Probe a registered version's artifact: download it, load it as pyfunc, score it and time it.

Faults of the infrastructure (registry or artifact store unreachable) propagate, so the task
retries; what is wrong with the artifact itself becomes a verdict (``ArtifactEvidence.problem``).
The model is always loaded from a local copy made with an explicit client, never through a
``models:/`` URI: MLflow resolves those with the process-global tracking URI.
"""

from __future__ import annotations

import logging
import math
import pickle
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from include.governance.gates import ArtifactEvidence
from include.governance.registry import model_artifact_problem, source_problem

log = logging.getLogger(__name__)

# What loading or scoring a broken local copy raises (unpickling garbage, a missing module the
# model needs, a corrupt MLmodel, a predict that rejects its own example). The copy is local, so
# none of these is a network fault; anything else (MemoryError, KeyboardInterrupt) propagates.
ARTIFACT_ERRORS = (
    MlflowException,
    OSError,
    EOFError,
    pickle.UnpicklingError,
    ImportError,
    AttributeError,
    LookupError,
    TypeError,
    ValueError,
    RuntimeError,
    yaml.YAMLError,
)
_READY = "READY"
# Placeholder value and dtype by MLflow column type, for a request built from a signature alone.
_PLACEHOLDERS = {
    "long": (1, "int64"),
    "integer": (1, "int32"),
    "double": (0.0, "float64"),
    "float": (0.0, "float32"),
    "string": ("", "object"),
    "boolean": (False, "bool"),
}


class ArtifactProblem(Exception):
    """The local copy of a model cannot be loaded or scored; the message says why."""


@contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """Limit native thread pools (OpenMP, BLAS) inside the block; 0 leaves them alone."""
    if threads < 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def download_version(client: MlflowClient, mv: ModelVersion, dst_dir: str | Path) -> Path:
    """Download a version's model directory into ``dst_dir`` and return its local path.

    :param client: client bound to the registry and tracking server holding the version.
    :param mv: the model version.
    :param dst_dir: an existing local directory.
    """
    import mlflow.artifacts

    uri = client.get_model_version_download_uri(mv.name, mv.version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(dst_dir), tracking_uri=client.tracking_uri
    )
    return Path(local)


def load_local_model(path: str | Path):
    """Load a downloaded model directory as pyfunc; a broken artifact raises ArtifactProblem.

    :param path: the local model directory (holding MLmodel).
    """
    import mlflow.pyfunc

    from include.recommender.requirements_check import pins_checked_cheaply

    try:
        with pins_checked_cheaply():
            return mlflow.pyfunc.load_model(str(path))
    except ARTIFACT_ERRORS as exc:
        raise ArtifactProblem(f"does not load as a pyfunc model: {type(exc).__name__}: {exc}") from exc


def example_request(model: Any, path: str | Path) -> pd.DataFrame:
    """The model's input example as a DataFrame, or one placeholder row from its signature.

    :param model: the loaded pyfunc model.
    :param path: its local directory (where the input example file lives).
    """
    try:
        example = model.metadata.load_input_example(str(path))
    except ARTIFACT_ERRORS as exc:
        raise ArtifactProblem(f"its input example cannot be read: {type(exc).__name__}: {exc}") from exc
    if example is not None:
        try:
            frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
        except (TypeError, ValueError) as exc:
            raise ArtifactProblem(f"its input example is not tabular ({type(example).__name__}): {exc}") from exc
        if len(frame):
            return frame.reset_index(drop=True)
    signature = model.metadata.signature
    inputs = signature.inputs if signature is not None else None
    if inputs is None or not inputs.has_input_names():
        raise ArtifactProblem("has neither an input example nor a named input signature: no request can be built")
    columns = {}
    for spec in inputs.inputs:
        type_name = getattr(spec.type, "name", str(spec.type))
        if type_name not in _PLACEHOLDERS:
            raise ArtifactProblem(f"input {spec.name!r} has type {type_name!r}: no placeholder value for it")
        value, dtype = _PLACEHOLDERS[type_name]
        columns[spec.name] = pd.Series([value], dtype=dtype)
    return pd.DataFrame(columns)


def scale_request(example: pd.DataFrame, rows: int) -> pd.DataFrame:
    """Repeat the example's rows until the request has exactly ``rows`` rows.

    :param example: a non-empty DataFrame.
    :param rows: the request size.
    """
    repeats = math.ceil(rows / len(example))
    return pd.concat([example] * repeats, ignore_index=True).head(rows).reset_index(drop=True)


def finite_scores(model: Any, request: pd.DataFrame) -> np.ndarray:
    """Score a request; raise ArtifactProblem unless every row gets a finite number.

    :param model: the loaded pyfunc model.
    :param request: the input rows.
    """
    try:
        output = model.predict(request)
    except ARTIFACT_ERRORS as exc:
        raise ArtifactProblem(f"failed to score {len(request)} row(s): {type(exc).__name__}: {exc}") from exc
    try:
        values = np.asarray(output, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArtifactProblem(f"returned a non-numeric prediction ({type(output).__name__}): {exc}") from exc
    if values.ndim == 0 or values.shape[0] != len(request):
        raise ArtifactProblem(f"returned {values.shape} predictions for {len(request)} row(s)")
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ArtifactProblem(f"returned {bad} non-finite prediction(s) for {len(request)} row(s)")
    return values


def probe_version(
    client: MlflowClient, mv: ModelVersion, *, rows: int = 100, runs: int = 20, threads: int = 1
) -> ArtifactEvidence:
    """Check that a version serves: READY, downloads, loads, scores its example; time it.

    The latency is measured on a ``rows``-row request built from the input example: one
    warm-up call, then ``runs`` timed calls (p50 and p95 in milliseconds).

    :param client: client bound to the registry holding the version.
    :param mv: the model version.
    :param rows: rows in the timed request.
    :param runs: timed repetitions.
    :param threads: native threads (OpenMP, BLAS) per request while timing; 0 = no limit.
    """
    what = f"{mv.name} v{mv.version}"
    if mv.status != _READY:
        return ArtifactEvidence(problem=f"{what} status is {mv.status}, not READY")
    # The source first: a model from outside the store is never downloaded, let alone loaded.
    # Then listing: a missing artifact is a verdict; an unreachable store raises here.
    problem = source_problem(client, mv) or model_artifact_problem(client, mv)
    if problem:
        return ArtifactEvidence(problem=problem)
    with tempfile.TemporaryDirectory(prefix="model-probe-") as tmp, _thread_limit(threads):
        local = download_version(client, mv, tmp)
        try:
            model = load_local_model(local)
            example = example_request(model, local)
            finite_scores(model, example)
            request = scale_request(example, rows)
            finite_scores(model, request)  # warm-up (lazy imports, caches)
            timings_ms = []
            for _ in range(runs):
                started = time.perf_counter()
                finite_scores(model, request)
                timings_ms.append((time.perf_counter() - started) * 1000.0)
        except ArtifactProblem as exc:
            return ArtifactEvidence(problem=f"{what} {exc}")
    p50, p95 = np.percentile(timings_ms, [50, 95])
    log.info("%s scores %d rows in p50 %.2f ms, p95 %.2f ms (%d runs)", what, rows, p50, p95, runs)
    return ArtifactEvidence(
        problem=None,
        inference_p50_ms=float(p50),
        inference_p95_ms=float(p95),
        request_rows=rows,
        timed_runs=runs,
        threads=threads,
    )
