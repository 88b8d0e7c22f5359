"""Ranking, oracle and latency measurements of a loaded model on the time-based holdout.

Protocol (the choice and why). For every user with holdout ratings, the model recommends its
top-10 among *all* catalog movies the user did not rate in training (the full candidate set:
no sampling, so the figures are what a user of the served model would see; scoring all
candidates is cheap because ``ranking.recommend`` prunes by propensity). A recommended movie is
relevant when the user rated it >= 4 in the holdout. Sampled-candidate protocols inflate
scores and rank models differently from the full ranking, so they are not used.

Users, not candidates, may be sampled (``RankingProtocol``): past DEFAULT_RANKING_USERS holdout
users (the default synthetic data has 307; MovieLens-32M has 200,948 users in all) every
ranking metric here, the oracle's included, is computed on the same seeded random sample of
them, each user still ranked against the full catalog: the cost of ranking stops growing with
the number of users, and each metric stays an unbiased estimate of its all-users value
(coverage excepted: fewer lists cover fewer movies). Users are scored a chunk at a time
(``users_per_chunk``), so memory is bounded at any size.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.recommender.features import labels
from include.recommender.pyfunc import INPUT_COLUMNS
from include.recommender.ranking import (
    CatalogIndex,
    default_users_per_chunk,
    positive_int,
    rank_by_score,
    rank_catalog,
    ranking_metrics,
    sample_users,
)

RANKING_K = 10
# Enough for a standard error of ~0.003 on ndcg@10, and more than ml-latest-small's holdout users
# (so its figures are those of every user); ranking cost stops growing past it.
DEFAULT_RANKING_USERS = 10_000
DEFAULT_RANKING_SEED = 0
LATENCY_REQUEST_ROWS = 100
LATENCY_WARMUP = 3
# As many timed requests as the validation gate's probe (policy latency_probe_runs): 50 cost
# ~1 s more of the log step at 100k for a p95 the gate measures again anyway.
LATENCY_REPEATS = 20


@dataclass(frozen=True)
class RankingProtocol:
    """Which holdout users the ranking metrics are computed on, and how many are scored at once.

    :param user_sample_size: rank a seeded random sample of this many holdout users; None, or
        at least the number of holdout users, ranks every one of them.
    :param seed: seed of the sample (the same seed and holdout give the same users).
    :param users_per_chunk: users scored against the full catalog at once (memory ~ this x
        catalog size x a few float64 arrays); None: ranking.default_users_per_chunk.
    """

    user_sample_size: int | None = DEFAULT_RANKING_USERS
    seed: int = DEFAULT_RANKING_SEED
    users_per_chunk: int | None = None

    def __post_init__(self) -> None:
        if self.user_sample_size is not None:
            positive_int(self.user_sample_size, "ranking user_sample_size")
        if self.users_per_chunk is not None:
            positive_int(self.users_per_chunk, "ranking users_per_chunk")
        sample_users(np.empty(0, dtype=np.int64), None, self.seed)  # refuses a bad seed now

    def users(self, holdout: pd.DataFrame) -> np.ndarray:
        """The sorted holdout userIds to rank: all of them, or the seeded sample.

        :param holdout: holdout ratings.
        """
        return sample_users(holdout["userId"].to_numpy(), self.user_sample_size, self.seed)

    def chunk_size(self, catalog: CatalogIndex) -> int:
        """Users per chunk actually used for this catalog.

        :param catalog: the catalog ranked.
        """
        if self.users_per_chunk is not None:
            return self.users_per_chunk
        return default_users_per_chunk(len(catalog.movie_ids))

    def describe(
        self, holdout: pd.DataFrame, users: np.ndarray, catalog: CatalogIndex
    ) -> dict[str, Any]:
        """The protocol as the evaluation report records it.

        :param holdout: holdout ratings.
        :param users: the users ranked (from ``users``).
        :param catalog: the catalog ranked.
        """
        holdout_users = int(holdout["userId"].nunique())
        return {
            "holdout_users": holdout_users,
            "users_sampled": bool(len(users) < holdout_users),
            "user_sample_size": self.user_sample_size,
            "user_sample_seed": int(self.seed),
            "users_per_chunk": self.chunk_size(catalog),
        }


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
    protocol: RankingProtocol | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """precision/recall/ndcg/coverage@k of the model's recommendations, plus rated_ndcg@k.

    :param model: a loaded pyfunc model (recommend mode, see pyfunc.py).
    :param catalog: the catalog of the training part (its size is coverage's denominator).
    :param holdout: holdout ratings.
    :param holdout_probability: the model's P(rating >= 4) for each holdout row.
    :param k: list length.
    :param protocol: which users to rank and how many at once; None: RankingProtocol().
    :return: the metrics and the recommendations they were computed from.
    """
    protocol = protocol or RankingProtocol()
    users = protocol.users(holdout)
    per_chunk = protocol.chunk_size(catalog)
    # One served-model call per chunk: the model never holds more than a chunk's score rows.
    frames = [
        model.predict(
            pd.DataFrame({"userId": users[start : start + per_chunk]}),
            params={"mode": "recommend", "k": k},
        )
        for start in range(0, max(len(users), 1), per_chunk)
    ]
    recommendations = pd.concat(frames, ignore_index=True)
    ranked = holdout["userId"].isin(users).to_numpy()
    relevant = relevant_pairs(holdout[ranked])
    metrics = ranking_metrics(recommendations, relevant, k=k, catalog_size=len(catalog.movie_ids))
    scored = holdout.loc[ranked, list(INPUT_COLUMNS)].assign(
        score=np.asarray(holdout_probability)[ranked]
    )
    rated = ranking_metrics(
        rank_by_score(scored, k), relevant, k=k, catalog_size=len(catalog.movie_ids)
    )
    metrics[f"rated_ndcg_at_{k}"] = rated[f"ndcg_at_{k}"]
    return metrics, recommendations


def oracle_ranking_metrics(
    oracle: Any,
    catalog: CatalogIndex,
    holdout: pd.DataFrame,
    k: int = RANKING_K,
    protocol: RankingProtocol | None = None,
) -> dict[str, float]:
    """The oracle's ndcg@k under the same protocol, and its rated_ndcg@k (see module docstring).

    :param oracle: synthetic.SyntheticOracle of the data.
    :param catalog: the catalog of the training part.
    :param holdout: holdout ratings.
    :param k: list length.
    :param protocol: which users to rank and how many at once; None: RankingProtocol().
    """
    protocol = protocol or RankingProtocol()
    users = protocol.users(holdout)
    n_movies = len(catalog.movie_ids)
    recommendations = rank_catalog(
        catalog, users, k, oracle.watch_and_like_score, protocol.chunk_size(catalog),
        # An oracle without the grid form (a stand-in) is scored pair by pair.
        grid_score=getattr(oracle, "watch_and_like_grid", None),
    )
    ranked = holdout[holdout["userId"].isin(users)]
    relevant = relevant_pairs(ranked)
    full = ranking_metrics(recommendations, relevant, k=k, catalog_size=n_movies)
    expected = oracle.expected_rating(ranked["userId"].to_numpy(), ranked["movieId"].to_numpy())
    scored = ranked[list(INPUT_COLUMNS)].assign(score=expected)
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
