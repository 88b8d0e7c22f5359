"""Generated synthetic ratings written once as Parquet, reused by every later load of the spec.

At MovieLens-32M size drawing the ratings takes minutes; every task of a run (and every later run
with the same spec) reads them back in seconds instead. The file name is a hash of the full spec
(every generate_movielens argument, defaults filled in) and GENERATOR_VERSION, so a changed spec
or generator never reads stale data. Files are written to a temporary name and renamed, so a task
racing another one reads either no file or a whole one. A file that cannot be read, or holds other
than what its spec promises, is drawn again and replaced.

The directory is $MOVIE_RECOMMENDER_DATA_CACHE, else $AIRFLOW_HOME/data-cache, else
.local/data-cache in the project; "off" disables the cache. Movies and the oracle are not cached:
they are drawn again from the seed in well under a second at any size.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from include.recommender.schema import RATINGS_COLUMNS, MovieLensData
from include.recommender.synthetic import GENERATOR_VERSION, generate_movielens

CACHE_ENV = "MOVIE_RECOMMENDER_DATA_CACHE"
CACHE_OFF = "off"
_SPEC_METADATA_KEY = b"movie_recommender.synthetic_spec"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_DTYPES = {"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"}

log = logging.getLogger(__name__)


def cache_directory() -> Path | None:
    """Return the cache directory from the environment, or None when the cache is off."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured.lower() == CACHE_OFF:
        return None
    if configured:
        return Path(configured).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME", "").strip()
    base = Path(airflow_home).expanduser() if airflow_home else _PROJECT_ROOT / ".local"
    return base / "data-cache"


def full_spec(**overrides) -> dict:
    """Return every generate_movielens argument (defaults filled in) plus the generator version.

    :param overrides: generate_movielens keyword arguments.
    """
    parameters = inspect.signature(generate_movielens).parameters
    spec = {name: p.default for name, p in parameters.items() if name != "ratings"}
    unknown = sorted(set(overrides) - set(spec))
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s): {', '.join(unknown)}")
    spec.update(overrides)
    return {**spec, "generator_version": GENERATOR_VERSION}


def cache_path(directory: Path, spec: dict) -> Path:
    """Return the Parquet file holding the ratings of a full spec."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    return directory / f"ratings-{digest}.parquet"


def load_or_generate(**overrides) -> MovieLensData:
    """Return generate_movielens(**overrides), reading the ratings from the cache when present.

    :param overrides: generate_movielens keyword arguments (not ``ratings``).
    """
    spec = full_spec(**overrides)
    directory = cache_directory()
    if directory is None:
        return generate_movielens(**overrides)
    path = cache_path(directory, spec)
    ratings = _read(path, spec)
    if ratings is not None:
        return generate_movielens(**overrides, ratings=ratings)
    data = generate_movielens(**overrides)
    _write(path, spec, data.ratings)
    return data


def _read(path: Path, spec: dict) -> pd.DataFrame | None:
    """Return the cached ratings, or None when the file is missing or not what spec promises."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        stored = json.loads((table.schema.metadata or {}).get(_SPEC_METADATA_KEY, b"null"))
        ratings = table.to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning("synthetic cache %s is unreadable (%s); drawing the ratings again", path, exc)
        return None
    problem = _mismatch(ratings, stored, spec)
    if problem:
        log.warning("synthetic cache %s %s; drawing the ratings again", path, problem)
        return None
    return ratings


def _mismatch(ratings: pd.DataFrame, stored: object, spec: dict) -> str | None:
    if stored != spec:
        return f"was written for spec {stored!r}"
    if tuple(ratings.columns) != RATINGS_COLUMNS:
        return f"has columns {list(ratings.columns)}"
    dtypes = ratings.dtypes.astype(str).to_dict()
    if dtypes != _DTYPES:
        return f"has dtypes {dtypes}"
    if len(ratings) != spec["n_ratings"]:
        return f"has {len(ratings)} rows, not {spec['n_ratings']}"
    return None


def _write(path: Path, spec: dict, ratings: pd.DataFrame) -> None:
    """Write the ratings atomically (temporary file, then rename); a failure only logs."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(ratings, preserve_index=False)
        metadata = {**(table.schema.metadata or {}), _SPEC_METADATA_KEY: json.dumps(spec).encode()}
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
        pq.write_table(table.replace_schema_metadata(metadata), tmp_name)
        os.replace(tmp_name, path)
    except (OSError, pa.ArrowException) as exc:
        # A read-only or full disk must not fail the load: the data is already in memory.
        log.warning("could not write synthetic cache %s: %s", path, exc)
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
