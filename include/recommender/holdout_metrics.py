"""Ranking, oracle and latency measurements of a loaded model on the time-based holdout.

Protocol (the choice and why). For every user with holdout ratings, the model recommends its
top-10 among *all* catalog movies the user did not rate in training (the full candidate set:
no sampling, so the figures are what a user of the served model would see; scoring all
candidates is cheap because ``ranking.recommend`` prunes by propensity). A recommended movie is
relevant when the user rated it >= 4 in the holdout. Sampled-candidate protocols inflate
scores and rank models differently from the full ranking, so they are not used.

On synthetic data the generator's oracle gives two ceilings:
- ``oracle_ndcg_at_10``: the same protocol, ranking by the oracle's P(the user rates the movie
  and likes it) (``SyntheticOracle.watch_and_like_score``). Ranking by the expected rating
  alone would be no ceiling here: it recommends obscure movies the user will never rate in
  the holdout (ndcg@10 ~0.02 on the default data, against ~0.24 for plain popularity).
- ``oracle_rated_ndcg_at_10``: ranking only the movies the user did rate in the holdout, by
  the oracle's expected rating (``rated_ndcg_at_10`` is the model's, by its P(rating >= 4)).
  This isolates how well the model orders preferences, with selection taken out.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from include.recommender.features import labels
from include.recommender.pyfunc import INPUT_COLUMNS
from include.recommender.ranking import (
    CatalogIndex,
    rank_by_score,
    ranking_metrics,
    top_k_positions,
)

RANKING_K = 10
LATENCY_REQUEST_ROWS = 100
LATENCY_WARMUP = 3
LATENCY_REPEATS = 50
# Oracle scores computed per block of users: bounds memory to ~this many cells.
_ORACLE_CELLS = 2_000_000


def relevant_pairs(holdout: pd.DataFrame) -> pd.DataFrame:
    """The holdout (userId, movieId) pairs rated >= 4: what counts as a hit.

    :param holdout: holdout ratings.
    """
    return holdout.loc[labels(holdout) == 1, ["userId", "movieId"]].reset_index(drop=True)


def model_ranking_metrics(
    model: Any,
    catalog: CatalogIndex,
    holdout: pd.DataFrame,
    holdout_probability: np.ndarray,
    k: int = RANKING_K,
) -> tuple[dict[str, float], pd.DataFrame]:
    """precision/recall/ndcg/coverage@k of the model's recommendations, plus rated_ndcg@k.

    :param model: a loaded pyfunc model (recommend mode, see pyfunc.py).
    :param catalog: the catalog of the training part (its size is coverage's denominator).
    :param holdout: holdout ratings.
    :param holdout_probability: the model's P(rating >= 4) for each holdout row.
    :param k: list length.
    :return: the metrics and the recommendations they were computed from.
    """
    users = np.sort(holdout["userId"].unique())
    recommendations = model.predict(
        pd.DataFrame({"userId": users}), params={"mode": "recommend", "k": k}
    )
    relevant = relevant_pairs(holdout)
    metrics = ranking_metrics(recommendations, relevant, k=k, catalog_size=len(catalog.movie_ids))
    scored = holdout[list(INPUT_COLUMNS)].assign(score=np.asarray(holdout_probability))
    rated = ranking_metrics(
        rank_by_score(scored, k), relevant, k=k, catalog_size=len(catalog.movie_ids)
    )
    metrics[f"rated_ndcg_at_{k}"] = rated[f"ndcg_at_{k}"]
    return metrics, recommendations


def oracle_ranking_metrics(
    oracle: Any, catalog: CatalogIndex, holdout: pd.DataFrame, k: int = RANKING_K
) -> dict[str, float]:
    """The oracle's ndcg@k under the same protocol, and its rated_ndcg@k (see module docstring).

    :param oracle: synthetic.SyntheticOracle of the data.
    :param catalog: the catalog of the training part.
    :param holdout: holdout ratings.
    :param k: list length.
    """
    users = np.sort(holdout["userId"].unique())
    n_movies = len(catalog.movie_ids)
    per_block = max(1, _ORACLE_CELLS // n_movies)
    frames = []
    for start in range(0, len(users), per_block):
        block = users[start : start + per_block]
        scores = oracle.watch_and_like_score(
            np.repeat(block, n_movies), np.tile(catalog.movie_ids, len(block))
        ).reshape(len(block), n_movies)
        scores[catalog.seen_mask(block)] = -np.inf
        positions, valid = top_k_positions(scores, k)
        row, slot = np.nonzero(valid)
        frames.append(
            pd.DataFrame(
                {"userId": block[row], "movieId": catalog.movie_ids[positions[row, slot]], "rank": slot + 1}
            )
        )
    relevant = relevant_pairs(holdout)
    full = ranking_metrics(pd.concat(frames), relevant, k=k, catalog_size=n_movies)
    expected = oracle.expected_rating(
        holdout["userId"].to_numpy(), holdout["movieId"].to_numpy()
    )
    scored = holdout[list(INPUT_COLUMNS)].assign(score=expected)
    rated = ranking_metrics(rank_by_score(scored, k), relevant, k=k, catalog_size=n_movies)
    return {f"oracle_ndcg_at_{k}": full[f"ndcg_at_{k}"], f"oracle_rated_ndcg_at_{k}": rated[f"ndcg_at_{k}"]}


def inference_latency_ms(model: Any, pairs: pd.DataFrame) -> dict[str, float]:
    """p50 and p95 wall time (ms) of scoring a LATENCY_REQUEST_ROWS-row request with the model.

    :param model: a loaded pyfunc model.
    :param pairs: (userId, movieId) rows to build the request from (repeated when fewer).
    """
    if len(pairs) == 0:
        raise ValueError("cannot measure latency without any (userId, movieId) rows")
    rows = np.resize(np.arange(len(pairs)), LATENCY_REQUEST_ROWS)
    request = pairs[list(INPUT_COLUMNS)].iloc[rows].reset_index(drop=True)
    for _ in range(LATENCY_WARMUP):
        model.predict(request)
    timings = []
    for _ in range(LATENCY_REPEATS):
        started = time.perf_counter()
        model.predict(request)
        timings.append((time.perf_counter() - started) * 1000.0)
    return {
        "inference_p50_ms": float(np.percentile(timings, 50)),
        "inference_p95_ms": float(np.percentile(timings, 95)),
    }
