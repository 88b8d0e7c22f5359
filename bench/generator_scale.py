"""Synthetic data at scale: time and peak memory of generating, caching and reloading ratings.

Usage (from the repository root):

    .venv/bin/python bench/generator_scale.py                     # 100k, 1M, 5M and ml-32m's shape
    .venv/bin/python bench/generator_scale.py --sizes 100836 1000000 --output /tmp/g.json

Sizes follow bench/training_scale.py's source_for (users with the ratings, movies with
ratings**0.35), except 32,000,204, which takes ml-32m's shape (200,948 users, 87,585 movies). Each
size runs in its own subprocess (so its peak RSS, from os.wait4, is its own) against an empty
cache directory, and measures three steps: generate (generate_movielens), the first load through
include.recommender.synthetic_cache (generate + Parquet write) and a second load (cache hit: read +
movies and oracle drawn again). The 1-minute load average before each size is recorded beside
its figures. Writes JSON (bench/results/generator_scale.json); goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ML_32M = {"n_users": 200_948, "n_movies": 87_585, "n_ratings": 32_000_204}
DEFAULT_SIZES = (100_836, 1_000_000, 5_000_000, ML_32M["n_ratings"])
GOAL_SECONDS = 180
GOAL_MEMORY_GIB = 8


def spec_for(n_ratings: int) -> dict[str, int]:
    """generate_movielens arguments for a size: ml-32m's shape at its size, else scaled like training_scale."""
    if n_ratings == ML_32M["n_ratings"]:
        return dict(ML_32M)
    from bench.training_scale import source_for

    from include.recommender.loading import parse_synthetic_source

    return parse_synthetic_source(source_for(n_ratings))


def measure_one(spec: dict[str, int], cache_dir: str) -> dict[str, float]:
    """Run in the child: time each step of one size and return the figures."""
    os.environ["MOVIE_RECOMMENDER_DATA_CACHE"] = cache_dir
    from include.recommender.synthetic import generate_movielens
    from include.recommender.synthetic_cache import load_or_generate

    figures = {}
    started = time.perf_counter()
    data = generate_movielens(**spec)
    figures["generate_seconds"] = time.perf_counter() - started
    per_user = data.ratings.groupby("userId").size()
    figures.update(
        users_rated=int(per_user.size), min_ratings_per_user=int(per_user.min()),
        mean_rating=float(data.ratings["rating"].mean()),
    )
    del data
    for step in ("first_load", "cached_load"):
        started = time.perf_counter()
        load_or_generate(**spec)
        figures[f"{step}_seconds"] = time.perf_counter() - started
    figures["parquet_mib"] = sum(p.stat().st_size for p in Path(cache_dir).glob("*.parquet")) / 2**20
    return figures


def run_size(n_ratings: int) -> dict:
    spec = spec_for(n_ratings)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="generator-scale-") as cache_dir:
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec), cache_dir],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"size {n_ratings}: child failed with status {status}")
    return {
        **spec, **json.loads(out.strip().splitlines()[-1]),
        "peak_rss_gib": usage.ru_maxrss / 2**20, "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "generator_scale.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(json.loads(args.child[0]), args.child[1])))
        return 0
    rows = []
    print(f"{'ratings':>11} {'users':>8} {'movies':>7} {'generate':>9} {'1st load':>9} {'cached':>7} {'peak RSS':>9} {'load':>5}")
    for n_ratings in args.sizes:
        row = run_size(n_ratings)
        rows.append(row)
        print(f"{row['n_ratings']:>11,} {row['n_users']:>8,} {row['n_movies']:>7,} {row['generate_seconds']:>8.1f}s "
              f"{row['first_load_seconds']:>8.1f}s {row['cached_load_seconds']:>6.1f}s {row['peak_rss_gib']:>7.2f}GiB "
              f"{row['load_1min_before']:>5.1f}", flush=True)
    biggest = max(rows, key=lambda r: r["n_ratings"])
    goals = {
        "generate_under_seconds": GOAL_SECONDS, "peak_under_gib": GOAL_MEMORY_GIB,
        "met": biggest["generate_seconds"] < GOAL_SECONDS and biggest["peak_rss_gib"] < GOAL_MEMORY_GIB,
        "at_n_ratings": biggest["n_ratings"],
    }
    print(f"goals at {biggest['n_ratings']:,} ratings (< {GOAL_SECONDS} s, < {GOAL_MEMORY_GIB} GiB): "
          f"{'met' if goals['met'] else 'NOT met'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "goals": goals, "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
