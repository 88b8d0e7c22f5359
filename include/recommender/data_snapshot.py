"""The data a training run used, kept in the run's MLflow artifacts so later steps read the same rows.

Training writes, under ``data_snapshot/`` of its run: the cutoff snapshot of the ratings
(``ratings.parquet``), the movies (``movies.parquet``), on synthetic data the generator's oracle
(``oracle.npz``), and ``manifest.json`` (the ratings fingerprint, the source, the SHA-256 of each
file). The manifest's own SHA-256 is a run param (params are write-once), so the evaluation can
tell the snapshot from any other data: ``load_snapshot`` refuses a missing, tampered or
mismatching snapshot with a message naming the run and the fingerprints.

Parquet is written with pyarrow and read back column by column as needed (32M ratings are
~1 GiB in memory as int64/float64).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.recommender.schema import MOVIES_COLUMNS, RATINGS_COLUMNS, DataValidationError, MovieLensData
from include.recommender.snapshot import fingerprint

SNAPSHOT_ARTIFACT_DIR = "data_snapshot"
# Run param (write-once) holding the manifest's SHA-256; run tag naming the artifact directory.
SNAPSHOT_DIGEST_PARAM = "dataset_snapshot_sha256"
SNAPSHOT_PATH_TAG = "dataset_snapshot_path"
MANIFEST = "manifest.json"
RATINGS_FILE = "ratings.parquet"
MOVIES_FILE = "movies.parquet"
ORACLE_FILE = "oracle.npz"
_MANIFEST_VERSION = 1


class SnapshotError(DataValidationError):
    """A run's data snapshot is missing, altered, or not the data the caller expects."""


def write_snapshot(directory: Path, data: MovieLensData, data_fingerprint: str) -> dict[str, Any]:
    """Write data (ratings already cut) as snapshot files into directory; return the manifest.

    :param directory: an existing, empty directory.
    :param data: the exact rows to keep: the cutoff snapshot of the ratings, and the movies.
    :param data_fingerprint: ``fingerprint(data.ratings)``, computed by the caller once.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(data.ratings[list(RATINGS_COLUMNS)], preserve_index=False),
                   directory / RATINGS_FILE)
    pq.write_table(pa.Table.from_pandas(data.movies[list(MOVIES_COLUMNS)], preserve_index=False),
                   directory / MOVIES_FILE)
    files = [RATINGS_FILE, MOVIES_FILE]
    if data.oracle is not None:
        _write_oracle(data.oracle, directory / ORACLE_FILE)
        files.append(ORACLE_FILE)
    manifest = {
        "version": _MANIFEST_VERSION,
        "data_fingerprint": data_fingerprint,
        "source": data.source,
        "n_ratings": int(len(data.ratings)),
        "n_movies": int(len(data.movies)),
        "files": {name: _sha256(directory / name) for name in files},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def log_snapshot(client: Any, run_id: str, data: MovieLensData, data_fingerprint: str) -> str:
    """Keep data as run_id's snapshot; return the artifact directory it is under.

    :param client: an MlflowClient of the run's tracking server.
    :param run_id: the training run.
    :param data: the exact rows the run trains and is evaluated on.
    :param data_fingerprint: ``fingerprint(data.ratings)``.
    """
    with tempfile.TemporaryDirectory(prefix="data-snapshot-") as tmp:
        write_snapshot(Path(tmp), data, data_fingerprint)
        client.log_artifacts(run_id, tmp, artifact_path=SNAPSHOT_ARTIFACT_DIR)
        digest = _sha256(Path(tmp) / MANIFEST)
    # The digest last: a run with the param always has the files it vouches for.
    client.log_param(run_id, SNAPSHOT_DIGEST_PARAM, digest)
    client.set_tag(run_id, SNAPSHOT_PATH_TAG, SNAPSHOT_ARTIFACT_DIR)
    return SNAPSHOT_ARTIFACT_DIR


def load_snapshot(client: Any, run_id: str, expected_fingerprint: str, dst: Path) -> MovieLensData:
    """Read run_id's snapshot, checking it is intact and holds the ratings expected_fingerprint names.

    :param client: an MlflowClient of the run's tracking server.
    :param run_id: the training run.
    :param expected_fingerprint: the fingerprint the caller was told the run trained on.
    :param dst: a scratch directory the files are downloaded into (the caller removes it).
    """
    run = client.get_run(run_id)
    digest = run.data.params.get(SNAPSHOT_DIGEST_PARAM)
    if digest is None:
        raise SnapshotError(f"run {run_id} kept no data snapshot (no {SNAPSHOT_DIGEST_PARAM} param)")
    directory = _download(client, run_id, dst)
    manifest = _verified_manifest(directory, run_id, digest)
    if manifest["data_fingerprint"] != expected_fingerprint:
        raise SnapshotError(
            f"data snapshot of run {run_id} holds {manifest['data_fingerprint']}, "
            f"expected {expected_fingerprint}"
        )
    ratings = pd.read_parquet(directory / RATINGS_FILE, columns=list(RATINGS_COLUMNS))
    actual = fingerprint(ratings)
    if actual != expected_fingerprint:
        raise SnapshotError(
            f"data snapshot of run {run_id}: {RATINGS_FILE} has fingerprint {actual}, "
            f"expected {expected_fingerprint}"
        )
    movies = pd.read_parquet(directory / MOVIES_FILE, columns=list(MOVIES_COLUMNS))
    oracle = _read_oracle(directory / ORACLE_FILE) if ORACLE_FILE in manifest["files"] else None
    return MovieLensData(ratings=ratings, movies=movies, source=manifest["source"], oracle=oracle)


def _download(client: Any, run_id: str, dst: Path) -> Path:
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR, str(dst)))
    except (MlflowException, OSError) as exc:
        raise SnapshotError(f"data snapshot of run {run_id} ({SNAPSHOT_ARTIFACT_DIR}/) is missing: {exc}") from exc


def _verified_manifest(directory: Path, run_id: str, digest: str) -> dict[str, Any]:
    """The manifest, once it and every file it lists match their recorded SHA-256."""
    where = f"data snapshot of run {run_id}"
    path = directory / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"{where}: {SNAPSHOT_ARTIFACT_DIR}/{MANIFEST} is missing")
    if _sha256(path) != digest:
        raise SnapshotError(f"{where}: {MANIFEST} was altered (its SHA-256 is not the run's {SNAPSHOT_DIGEST_PARAM})")
    manifest = json.loads(path.read_text())
    for name, expected in manifest["files"].items():
        if not (directory / name).is_file():
            raise SnapshotError(f"{where}: {SNAPSHOT_ARTIFACT_DIR}/{name} is missing")
        if _sha256(directory / name) != expected:
            raise SnapshotError(f"{where}: {SNAPSHOT_ARTIFACT_DIR}/{name} was altered (SHA-256 differs)")
    return manifest


def _write_oracle(oracle: Any, path: Path) -> None:
    """Save a dataclass of numpy arrays and floats (the generator's oracle) without pickling."""
    values = {f.name: getattr(oracle, f.name) for f in dataclasses.fields(oracle)}
    np.savez(path, **{name: np.asarray(value) for name, value in values.items() if value is not None})


def _read_oracle(path: Path) -> Any:
    from include.recommender.synthetic import SyntheticOracle

    with np.load(path, allow_pickle=False) as stored:
        values = {name: stored[name] for name in stored.files}
    # 0-d arrays were scalars (the global mean).
    return SyntheticOracle(**{name: value.item() if value.ndim == 0 else value for name, value in values.items()})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
