"""The evaluation's ranking step at scale: wall time and peak memory of ranking the holdout users.

Usage (from the repository root):

    .venv/bin/python bench/ranking_scale.py                                # 1M ratings, popularity
    .venv/bin/python bench/ranking_scale.py --n-ratings 100836 --sample 100 --chunk 20   # smoke
    .venv/bin/python bench/ranking_scale.py --model logistic_regression --measure time

The data is the DAG's synthetic source at that size (training_scale.source_for: users scaled
with the ratings, movies with ratings**0.35), or --source. The model is fitted in this process
(no MLflow), then the ranking step the `log` task runs is measured: the model's ranking metrics
(holdout_metrics.model_ranking_metrics, through the served model's recommend mode) and the
oracle's (oracle_ranking_metrics), under the RankingProtocol given by --sample, --seed and
--chunk. "time" runs it untraced; "memory" runs it again under tracemalloc (numpy's arrays
included; tracing slows it down, so its time is not reported) and gives the peak of what the
step allocated. Prints the figures with the load average; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from threadpoolctl import threadpool_limits  # noqa: E402

from bench.timing import load_average, positive_int, say  # noqa: E402
from bench.training_scale import source_for  # noqa: E402
from include.recommender.fitting import fit_model  # noqa: E402
from include.recommender.holdout_metrics import (  # noqa: E402
    DEFAULT_RANKING_USERS,
    RankingProtocol,
    model_ranking_metrics,
    oracle_ranking_metrics,
)
from include.recommender.loading import load_movielens  # noqa: E402
from include.recommender.models import MODEL_TYPES  # noqa: E402
from include.recommender.ranking import CatalogIndex  # noqa: E402
from include.recommender.snapshot import temporal_split  # noqa: E402


class ServedModel:
    """The fitted pyfunc model called as a loaded one is (predict(frame, params=...))."""

    def __init__(self, python_model) -> None:
        self.python_model = python_model

    def predict(self, frame, params=None):
        return self.python_model.predict(None, frame, params)


def ranking_step(model, catalog, holdout, probability, oracle, protocol) -> dict[str, float]:
    """What the log step computes for ranking: the model's metrics, then the oracle's."""
    metrics, _ = model_ranking_metrics(model, catalog, holdout, probability, protocol=protocol)
    if oracle is not None:
        metrics.update(oracle_ranking_metrics(oracle, catalog, holdout, protocol=protocol))
    return metrics


def measure(source: str, model_type: str, protocol: RankingProtocol, what: str) -> dict:
    """Fit model_type on the source's data; time and/or trace its ranking step."""
    say(f"loading {source}")
    data = load_movielens(source)
    train, holdout = temporal_split(data.ratings, 0.2)
    say(f"fitting {model_type}")
    fitted = fit_model(model_type, {}, train, data.movies, workdir=Path("/tmp"))
    probability = fitted.python_model.predict_proba(holdout[["userId", "movieId"]])
    catalog = CatalogIndex.fit(train, data.movies)
    args = (ServedModel(fitted.python_model), catalog, holdout, probability, data.oracle, protocol)
    users = protocol.users(holdout)
    out = {
        "source": data.source,
        "model_type": model_type,
        "holdout_users": int(holdout["userId"].nunique()),
        "users_ranked": len(users),
        "users_per_chunk": protocol.chunk_size(catalog),
        "catalog_size": len(catalog.movie_ids),
        "load_before": load_average(),
    }
    if what in ("time", "both"):
        say(f"ranking {len(users)} users (timed)")
        started = time.perf_counter()
        out["metrics"] = ranking_step(*args)
        out["seconds"] = time.perf_counter() - started
    if what in ("memory", "both"):
        say(f"ranking {len(users)} users (under tracemalloc)")
        tracemalloc.start()
        try:
            out["metrics"] = ranking_step(*args)
            out["peak_traced_bytes"] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    out["load_after"] = load_average()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-ratings", type=positive_int, default=1_000_000)
    parser.add_argument("--source", help="a load_movielens source instead (e.g. a catalog as large as "
                        "ml-32m's: synthetic:n_users=20000,n_movies=87585,n_ratings=2000000)")
    parser.add_argument("--model", choices=MODEL_TYPES, default="popularity")
    parser.add_argument("--sample", type=positive_int, default=DEFAULT_RANKING_USERS,
                        help="holdout users ranked at most (a seeded sample beyond)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=positive_int, default=None,
                        help="users per chunk (default: as many as fit in ~4M cells)")
    parser.add_argument("--measure", choices=("time", "memory", "both"), default="both")
    args = parser.parse_args(argv)
    protocol = RankingProtocol(user_sample_size=args.sample, seed=args.seed, users_per_chunk=args.chunk)
    # One OpenMP thread: HistGradientBoosting's threads spin-wait on a busy 2-core box.
    with threadpool_limits(limits=1, user_api="openmp"):
        result = measure(args.source or source_for(args.n_ratings), args.model, protocol, args.measure)
    print(f"{result['source']}, {result['model_type']}: ranked {result['users_ranked']} of "
          f"{result['holdout_users']} holdout users x {result['catalog_size']} movies, "
          f"{result['users_per_chunk']} users per chunk")
    if "seconds" in result:
        loads = f"load {result['load_before']:.1f} -> {result['load_after']:.1f}"
        print(f"  time {result['seconds']:.1f} s ({loads})")
    if "peak_traced_bytes" in result:
        print(f"  peak traced memory {result['peak_traced_bytes'] / 2**20:.0f} MiB")
    print("  " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result["metrics"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
