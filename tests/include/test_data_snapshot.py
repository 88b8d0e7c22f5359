"""A run's data snapshot against a real MLflow store: the rows come back exactly, and anything
missing, altered or other than the expected fingerprint is refused naming the run and the fingerprints."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from include.recommender.data_snapshot import (
    MANIFEST,
    MOVIES_FILE,
    ORACLE_FILE,
    RATINGS_FILE,
    SNAPSHOT_ARTIFACT_DIR,
    SNAPSHOT_DIGEST_PARAM,
    SNAPSHOT_PATH_TAG,
    SnapshotError,
    load_snapshot,
    log_snapshot,
)
from include.recommender.schema import MovieLensData
from include.recommender.snapshot import fingerprint
from include.recommender.synthetic import generate_movielens


@pytest.fixture(scope="module")
def data() -> MovieLensData:
    return generate_movielens(n_users=40, n_movies=120, n_ratings=1500, seed=21)


@pytest.fixture
def run_id(mlflow_client, mlflow_store) -> str:
    experiment_id = mlflow_client.create_experiment("snapshots", artifact_location=mlflow_store["artifact_location"])
    return mlflow_client.create_run(experiment_id).info.run_id


@pytest.fixture
def kept(mlflow_client, run_id, data) -> str:
    """run_id with data kept as its snapshot; returns the data's fingerprint."""
    data_fingerprint = fingerprint(data.ratings)
    assert log_snapshot(mlflow_client, run_id, data, data_fingerprint) == SNAPSHOT_ARTIFACT_DIR
    return data_fingerprint


def stored_file(client, run_id: str, name: str) -> Path:
    """Where the local artifact store keeps one snapshot file (to alter it as a bad actor would)."""
    root = Path(urlparse(client.get_run(run_id).info.artifact_uri).path)
    return root / SNAPSHOT_ARTIFACT_DIR / name


def test_the_snapshot_returns_the_same_rows_movies_and_oracle(mlflow_client, run_id, kept, data, tmp_path):
    loaded = load_snapshot(mlflow_client, run_id, kept, tmp_path)

    pd.testing.assert_frame_equal(loaded.ratings, data.ratings)
    pd.testing.assert_frame_equal(loaded.movies, data.movies)
    assert loaded.source == data.source
    users, movies = data.ratings["userId"].to_numpy()[:50], data.ratings["movieId"].to_numpy()[:50]
    np.testing.assert_array_equal(
        loaded.oracle.watch_and_like_score(users, movies), data.oracle.watch_and_like_score(users, movies)
    )
    run = mlflow_client.get_run(run_id)
    assert run.data.tags[SNAPSHOT_PATH_TAG] == SNAPSHOT_ARTIFACT_DIR
    assert len(run.data.params[SNAPSHOT_DIGEST_PARAM]) == 64
    files = {a.path.rsplit("/", 1)[-1] for a in mlflow_client.list_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR)}
    assert files == {MANIFEST, RATINGS_FILE, MOVIES_FILE, ORACLE_FILE}


def test_data_without_an_oracle_keeps_no_oracle_file(mlflow_client, run_id, data, tmp_path):
    plain = MovieLensData(ratings=data.ratings, movies=data.movies, source="/data/ml-latest-small")
    log_snapshot(mlflow_client, run_id, plain, fingerprint(plain.ratings))
    loaded = load_snapshot(mlflow_client, run_id, fingerprint(plain.ratings), tmp_path)
    assert loaded.oracle is None and loaded.source == "/data/ml-latest-small"
    files = {a.path.rsplit("/", 1)[-1] for a in mlflow_client.list_artifacts(run_id, SNAPSHOT_ARTIFACT_DIR)}
    assert ORACLE_FILE not in files


def test_a_run_without_a_snapshot_is_refused_by_name(mlflow_client, run_id, tmp_path):
    with pytest.raises(SnapshotError, match=f"run {run_id} kept no data snapshot"):
        load_snapshot(mlflow_client, run_id, "sha256:whatever", tmp_path)


def test_another_fingerprint_than_the_snapshots_is_refused_naming_both(mlflow_client, run_id, kept, tmp_path):
    expected = "sha256:" + "0" * 64
    with pytest.raises(SnapshotError) as failure:
        load_snapshot(mlflow_client, run_id, expected, tmp_path)
    assert run_id in str(failure.value) and kept in str(failure.value) and expected in str(failure.value)


@pytest.mark.parametrize("name", [RATINGS_FILE, MOVIES_FILE, ORACLE_FILE, MANIFEST])
def test_an_altered_file_is_refused(mlflow_client, run_id, kept, data, tmp_path, name):
    path = stored_file(mlflow_client, run_id, name)
    if name == RATINGS_FILE:
        changed = data.ratings.copy()
        changed.loc[0, "rating"] = 5.5 - changed.loc[0, "rating"]
        changed.to_parquet(path, index=False)
    elif name == MANIFEST:
        manifest = json.loads(path.read_text())
        manifest["source"] = "somewhere else"
        path.write_text(json.dumps(manifest))
    else:
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the middle of the file
        path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match=f"run {run_id}: {name} was altered|run {run_id}: .*{name} was altered"):
        load_snapshot(mlflow_client, run_id, kept, tmp_path / "download")


def test_ratings_rewritten_with_a_matching_manifest_still_fail_on_the_fingerprint(mlflow_client, run_id, kept, data, tmp_path):
    """Even a bad actor who fixes up the manifest cannot pass off other rows: the param is write-once
    and the ratings are fingerprinted on read."""
    from include.recommender import data_snapshot as ds

    changed = data.ratings.copy()
    changed.loc[0, "rating"] = 5.5 - changed.loc[0, "rating"]
    path = stored_file(mlflow_client, run_id, RATINGS_FILE)
    changed.to_parquet(path, index=False)
    manifest_path = stored_file(mlflow_client, run_id, MANIFEST)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][RATINGS_FILE] = ds._sha256(path)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match=f"run {run_id}: {MANIFEST} was altered"):
        load_snapshot(mlflow_client, run_id, kept, tmp_path)


def test_a_deleted_file_is_refused_as_missing(mlflow_client, run_id, kept, tmp_path):
    stored_file(mlflow_client, run_id, MOVIES_FILE).unlink()
    with pytest.raises(SnapshotError, match=f"run {run_id}: {SNAPSHOT_ARTIFACT_DIR}/{MOVIES_FILE} is missing"):
        load_snapshot(mlflow_client, run_id, kept, tmp_path)
