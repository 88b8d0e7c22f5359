"""Train every model type on the same data, evaluate each as the DAG's `log` step does, compare.

Usage (from the repository root):

    .venv/bin/python bench/model_quality.py                      # default synthetic data
    .venv/bin/python bench/model_quality.py --models torch_ncf popularity
    .venv/bin/python bench/model_quality.py --source "synthetic:seed=7"

Each model goes through the real pipeline: train_and_log (one MLflow run in a throwaway SQLite
store) then evaluate_and_log (loads the logged model, holdout metrics, latency, size). Prints a
table of models x metrics and the issue's quality goals, and writes them as JSON
(bench/results/model_quality.json by default). The goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from include.recommender.evaluation import evaluate_and_log  # noqa: E402
from include.recommender.holdout_metrics import (  # noqa: E402
    RANKING_K,
    RankingProtocol,
    relevant_pairs,
)
from include.recommender.loading import load_movielens  # noqa: E402
from include.recommender.models import MODEL_TYPES  # noqa: E402
from include.recommender.ranking import CatalogIndex, rank_catalog, ranking_metrics  # noqa: E402
from include.recommender.snapshot import temporal_split  # noqa: E402
from include.recommender.training import train_and_log  # noqa: E402

# The seed's performance gates (include/governance/policy.yaml).
GATES = {"accuracy": 0.75, "precision": 0.70, "recall": 0.65}
# The quality goals for the torch model.
GOAL_VS_POPULARITY = 1.5
GOAL_SHARE_OF_ORACLE = 0.85
COLUMNS = (
    ("accuracy", "acc", 3),
    ("precision", "prec", 3),
    ("recall", "rec", 3),
    ("f1_score", "f1", 3),
    ("roc_auc", "auc", 3),
    ("precision_at_10", "P@10", 3),
    ("recall_at_10", "R@10", 3),
    ("ndcg_at_10", "nDCG@10", 3),
    ("ndcg_share_of_oracle", "of oracle", 2),
    ("rated_ndcg_at_10", "rated nDCG", 3),
    ("coverage_at_10", "cov@10", 3),
    ("inference_p50_ms", "p50 ms", 1),
    ("inference_p95_ms", "p95 ms", 1),
    ("model_size_bytes", "size KB", 0),
    ("training_seconds", "train s", 1),
)


def run(source: str, model_types: list[str]) -> dict:
    """Train and evaluate each model type on source; return metrics per model and the goals.

    :param source: a load_movielens source string.
    :param model_types: model types to compare.
    """
    data = load_movielens(source)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-model-quality-") as root:
        uri = f"sqlite:///{root}/mlflow.db"
        # One OpenMP thread: HistGradientBoosting's threads spin-wait on a busy 2-core box.
        with threadpool_limits(limits=1, user_api="openmp"):
            for model_type in model_types:
                started = time.perf_counter()
                trained = train_and_log(
                    data=data,
                    model_type=model_type,
                    hyperparameters={},
                    experiment_name="bench-model-quality",
                    tracking_uri=uri,
                    cutoff=None,
                    run_tags={"bench": "model_quality"},
                    artifact_location=f"{root}/artifacts",
                )
                metrics = evaluate_and_log(
                    run_id=trained.run_id, data=data, cutoff=None, tracking_uri=uri
                )
                metrics["training_seconds"] = trained.training_seconds
                metrics["pipeline_seconds"] = time.perf_counter() - started
                results[model_type] = metrics
                print(f"{model_type}: done in {metrics['pipeline_seconds']:.1f} s", file=sys.stderr)
    return {
        "source": data.source,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "models": results,
        "reference_rankings": reference_rankings(data) if data.oracle is not None else {},
        "goals": goals(results),
    }


def reference_rankings(data) -> dict[str, float]:
    """ndcg@10 of fixed rankings under the same protocol, to read the models' figures against.

    most_popular: training rating count alone; oracle_expected_rating: the true expected
    rating alone (what "ranking by the oracle" would naively mean); oracle_watch_and_like: the
    ceiling the evaluation logs as oracle_ndcg_at_10. The same users as the evaluation's
    (RankingProtocol's default), ranked a chunk of users at a time.

    :param data: synthetic data with its oracle.
    """
    train, holdout = temporal_split(data.ratings, 0.2)
    catalog = CatalogIndex.fit(train, data.movies)
    protocol = RankingProtocol()
    users = protocol.users(holdout)
    relevant = relevant_pairs(holdout[holdout["userId"].isin(users)])

    def most_popular(_users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        return catalog.propensity[np.searchsorted(catalog.movie_ids, movies)]

    rankings = {
        "most_popular": most_popular,
        "oracle_expected_rating": data.oracle.expected_rating,
        "oracle_watch_and_like": data.oracle.watch_and_like_score,
    }
    out = {}
    for name, pair_score in rankings.items():
        recs = rank_catalog(catalog, users, RANKING_K, pair_score, protocol.chunk_size(catalog))
        metrics = ranking_metrics(recs, relevant, k=RANKING_K, catalog_size=len(catalog.movie_ids))
        out[name] = metrics[f"ndcg_at_{RANKING_K}"]
    return out


def goals(results: dict[str, dict[str, float]]) -> dict[str, dict]:
    """The issue's quality goals, each with the measured value and whether it is met.

    :param results: metrics per model type.
    """
    out: dict[str, dict] = {}
    torch_metrics, popularity = results.get("torch_ncf"), results.get("popularity")
    if torch_metrics and popularity and popularity["ndcg_at_10"] > 0:
        ratio = torch_metrics["ndcg_at_10"] / popularity["ndcg_at_10"]
        out["torch_ndcg_vs_popularity"] = {
            "target": f">= {GOAL_VS_POPULARITY}x",
            "value": ratio,
            "met": ratio >= GOAL_VS_POPULARITY,
        }
        if "oracle_ndcg_at_10" in popularity:
            ceiling = popularity["oracle_ndcg_at_10"] / popularity["ndcg_at_10"]
            out["oracle_ndcg_vs_popularity"] = {
                "target": "reference: the most any ranker could reach on this data",
                "value": ceiling,
                "met": None,
            }
    if torch_metrics and "ndcg_share_of_oracle" in torch_metrics:
        share = torch_metrics["ndcg_share_of_oracle"]
        out["torch_ndcg_share_of_oracle"] = {
            "target": f">= {GOAL_SHARE_OF_ORACLE}",
            "value": share,
            "met": share >= GOAL_SHARE_OF_ORACLE,
        }
    passing = [
        name
        for name, metrics in results.items()
        if all(metrics[metric] >= threshold for metric, threshold in GATES.items())
    ]
    best = max(results, key=lambda name: results[name]["accuracy"]) if results else None
    out["best_model_passes_seed_gates"] = {
        "target": ", ".join(f"{k} >= {v}" for k, v in GATES.items()),
        "value": best,
        "met": best in passing,
        "models_passing": passing,
    }
    return out


def table(report: dict) -> str:
    """Render the models x metrics table as Markdown.

    :param report: what run() returns.
    """
    header = ["model", *(label for _, label, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in report["models"].items():
        cells = [name]
        for key, _, digits in COLUMNS:
            value = metrics.get(key)
            if value is None:
                cells.append("-")
            elif key == "model_size_bytes":
                cells.append(f"{value / 1024:.0f}")
            else:
                cells.append(f"{value:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    any_model = next(iter(report["models"].values()), {})
    if "oracle_ndcg_at_10" in any_model:
        oracle = ["oracle (synthetic truth)"] + ["-"] * len(COLUMNS)
        keys = [key for key, _, _ in COLUMNS]
        oracle[1 + keys.index("ndcg_at_10")] = f"{any_model['oracle_ndcg_at_10']:.3f}"
        oracle[1 + keys.index("ndcg_share_of_oracle")] = "1.00"
        oracle[1 + keys.index("rated_ndcg_at_10")] = f"{any_model['oracle_rated_ndcg_at_10']:.3f}"
        lines.append("| " + " | ".join(oracle) + " |")
    return "\n".join(lines)


def goals_text(report: dict) -> str:
    """Render the goals as lines "goal: value (target) -> met".

    :param report: what run() returns.
    """
    lines = []
    for name, goal in report["goals"].items():
        value = goal["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        verdict = {True: "MET", False: "MISSED", None: "(reference)"}[goal["met"]]
        lines.append(f"- {name}: {shown} (target {goal['target']}) -> {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the comparison, print and write the results.

    :param argv: command-line arguments (None = sys.argv).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="synthetic", help="load_movielens source")
    parser.add_argument("--models", nargs="+", default=list(MODEL_TYPES), choices=MODEL_TYPES)
    parser.add_argument(
        "--output", type=Path, default=REPO / "bench" / "results" / "model_quality.json"
    )
    args = parser.parse_args(argv)
    report = run(args.source, args.models)
    print(table(report))
    print()
    if report["reference_rankings"]:
        print("Reference rankings, ndcg@10 (same protocol):")
        for name, value in report["reference_rankings"].items():
            print(f"- {name}: {value:.3f}")
        print()
    print(goals_text(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
