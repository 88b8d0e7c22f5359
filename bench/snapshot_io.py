"""What keeping a run's data snapshot costs: log_snapshot (Parquet + upload) and load_snapshot
(download + checks + fingerprint) against a local MLflow store, by number of ratings.

    .venv/bin/python bench/snapshot_io.py --sizes 100000 1000000 5000000

Ratings are random (uniform ids, half stars, timestamps over two years): the cost depends on
the row count, not on the generator. Prints one line per size with the 1-min load average;
peak RSS is the process's high-water mark so far (sizes run in increasing order).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from include.recommender.data_snapshot import load_snapshot, log_snapshot  # noqa: E402
from include.recommender.schema import MovieLensData  # noqa: E402
from include.recommender.snapshot import fingerprint  # noqa: E402


def random_data(n_ratings: int, seed: int = 0) -> MovieLensData:
    rng = np.random.default_rng(seed)
    n_movies = max(1000, n_ratings // 365)
    ratings = pd.DataFrame({
        "userId": rng.integers(1, max(100, n_ratings // 160), n_ratings, dtype=np.int64),
        "movieId": rng.integers(1, n_movies, n_ratings, dtype=np.int64),
        "rating": rng.integers(1, 11, n_ratings).astype(np.float64) / 2.0,
        "timestamp": rng.integers(1_704_067_200, 1_767_225_600, n_ratings, dtype=np.int64),
    })
    movies = pd.DataFrame({"movieId": np.arange(1, n_movies, dtype=np.int64)})
    movies["title"] = "Movie " + movies["movieId"].astype(str)
    movies["genres"] = "Drama"
    return MovieLensData(ratings=ratings, movies=movies, source=f"random:{n_ratings}")


def measure(n_ratings: int, root: Path) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    experiment = client.create_experiment(f"snapshot-{n_ratings}", artifact_location=(root / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    data = random_data(n_ratings)
    started = time.perf_counter()
    data_fingerprint = fingerprint(data.ratings)
    fingerprint_s = time.perf_counter() - started
    started = time.perf_counter()
    log_snapshot(client, run_id, data, data_fingerprint)
    log_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in (root / "artifacts").rglob("*.parquet") if run_id in str(p))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        load_snapshot(client, run_id, data_fingerprint, Path(tmp))
    load_s = time.perf_counter() - started
    return {"n_ratings": n_ratings, "fingerprint_s": fingerprint_s, "log_snapshot_s": log_s,
            "load_snapshot_s": load_s, "parquet_mib": size / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as tmp:
        for n in sorted(args.sizes):
            row = measure(n, Path(tmp))
            print("  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
