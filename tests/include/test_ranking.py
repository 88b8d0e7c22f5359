"""Ranking metrics on hand-computed cases, top-k with ties, the catalog, and exact pruning."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from include.recommender import ranking
from include.recommender.baseline import PopularityTables
from include.recommender.ranking import (
    CatalogIndex,
    rank_by_score,
    ranking_metrics,
    recommend,
    top_k_positions,
)


def _recs(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["userId", "movieId", "rank"])


def _pairs(rows: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["userId", "movieId"])


def test_hand_computed_case_with_a_short_list_and_a_user_without_positives():
    # User 1: relevant {10, 20, 30}; list 10, 99, 20 -> hits at ranks 1 and 3.
    # User 2: relevant {5}; only two candidates (k=3 > candidates): list 7, 5 -> hit at rank 2.
    # User 3: nothing relevant -> left out of precision/recall/ndcg, counted in coverage.
    recs = _recs(
        [(1, 10, 1), (1, 99, 2), (1, 20, 3), (2, 7, 1), (2, 5, 2), (3, 10, 1), (3, 5, 2), (3, 8, 3)]
    )
    relevant = _pairs([(1, 10), (1, 20), (1, 30), (2, 5)])
    metrics = ranking_metrics(recs, relevant, k=3, catalog_size=10)

    dcg_user1 = 1 / math.log2(2) + 1 / math.log2(4)
    ideal_user1 = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    ndcg_user1 = dcg_user1 / ideal_user1
    ndcg_user2 = (1 / math.log2(3)) / 1.0
    assert metrics["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)  # hits / k, not / len
    assert metrics["recall_at_3"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["ndcg_at_3"] == pytest.approx((ndcg_user1 + ndcg_user2) / 2)
    assert metrics["coverage_at_3"] == pytest.approx(6 / 10)  # {10, 99, 20, 7, 5, 8}


def test_a_user_with_positives_but_no_list_scores_zero():
    recs = _recs([(1, 10, 1)])
    relevant = _pairs([(1, 10), (2, 5)])
    metrics = ranking_metrics(recs, relevant, k=2, catalog_size=4)
    assert metrics["ndcg_at_2"] == pytest.approx(0.5)  # user 1 perfect, user 2 zero
    assert metrics["recall_at_2"] == pytest.approx(0.5)
    assert metrics["precision_at_2"] == pytest.approx(0.25)


def test_ideal_dcg_is_capped_at_k():
    # Five relevant items but k=2: two hits at the top is a perfect list.
    recs = _recs([(1, 1, 1), (1, 2, 2)])
    relevant = _pairs([(1, m) for m in range(1, 6)])
    metrics = ranking_metrics(recs, relevant, k=2, catalog_size=5)
    assert metrics["ndcg_at_2"] == pytest.approx(1.0)
    assert metrics["recall_at_2"] == pytest.approx(2 / 5)


def test_rows_beyond_k_are_ignored():
    recs = _recs([(1, 1, 1), (1, 2, 2), (1, 3, 3)])
    metrics = ranking_metrics(recs, _pairs([(1, 3)]), k=2, catalog_size=3)
    assert metrics["ndcg_at_2"] == 0.0 and metrics["coverage_at_2"] == pytest.approx(2 / 3)


def test_ties_are_broken_by_lower_movie_id_and_that_decides_the_gain():
    scored = pd.DataFrame(
        {"userId": [1, 1, 1, 2], "movieId": [30, 10, 20, 5], "score": [0.5, 0.5, 0.9, 0.1]}
    )
    ranked = rank_by_score(scored, k=3)
    assert ranked[ranked["userId"] == 1]["movieId"].tolist() == [20, 10, 30]
    assert ranked["rank"].tolist() == [1, 2, 3, 1]
    # Relevant movie 30 ties with 10 and loses the tie: rank 3 instead of 2.
    metrics = ranking_metrics(ranked, _pairs([(1, 30)]), k=3, catalog_size=4)
    assert metrics["ndcg_at_3"] == pytest.approx(1 / math.log2(4))


@pytest.mark.parametrize(
    ("recs", "relevant", "kwargs", "message"),
    [
        (_recs([(1, 1, 1)]), _pairs([]), {"k": 1, "catalog_size": 1}, "no user has a relevant item"),
        (_recs([(1, 1, 1), (1, 1, 2)]), _pairs([(1, 1)]), {"k": 2, "catalog_size": 2}, "repeat a movie"),
        (_recs([(1, 1, 1), (1, 2, 1)]), _pairs([(1, 1)]), {"k": 2, "catalog_size": 2}, "or a rank"),
        (_recs([(1, 1, 1)]), _pairs([(1, 1)]), {"k": 0, "catalog_size": 1}, "k must be a positive"),
        (_recs([(1, 1, 1)]), _pairs([(1, 1)]), {"k": 1, "catalog_size": 0}, "catalog_size"),
        (_recs([(1, 1, 1)]).drop(columns="rank"), _pairs([(1, 1)]), {"k": 1, "catalog_size": 1}, "'rank'"),
    ],
)
def test_bad_inputs_are_refused(recs, relevant, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ranking_metrics(recs, relevant, **kwargs)


def test_top_k_positions_breaks_ties_by_column_and_marks_missing_candidates():
    scores = np.array([[0.5, 0.9, 0.5, 0.9], [-np.inf, 0.2, -np.inf, -np.inf]])
    positions, valid = top_k_positions(scores, 3)
    assert positions[0].tolist() == [1, 3, 0]
    assert valid[0].all()
    assert positions[1, 0] == 1 and valid[1].tolist() == [True, False, False]
    wide, wide_valid = top_k_positions(scores, 10)  # k larger than the columns
    assert wide.shape == (2, 4) and wide_valid.sum() == 5
    with pytest.raises(ValueError, match="NaN"):
        top_k_positions(np.array([[np.nan, 1.0]]), 1)


@pytest.fixture
def train():
    # Movie 7 rated by 3 of 4 users, movie 3 by 2, movies 5 and 9 by 1; movie 11 by nobody.
    return pd.DataFrame(
        {
            "userId": [1, 2, 3, 1, 4, 2, 3],
            "movieId": [7, 7, 7, 3, 3, 5, 9],
            "rating": [5.0, 4.0, 2.0, 4.5, 1.0, 4.0, 3.0],
        }
    )


@pytest.fixture
def movies():
    return pd.DataFrame({"movieId": [3, 5, 7, 9, 11], "genres": ["Comedy"] * 5})


def test_catalog_propensity_order_and_seen_movies(train, movies):
    catalog = CatalogIndex.fit(train, movies)
    assert catalog.movie_ids.tolist() == [3, 5, 7, 9, 11]
    assert catalog.propensity.tolist() == pytest.approx([2 / 4, 1 / 4, 3 / 4, 1 / 4, 0.5 / 4])
    # By falling propensity; 5 and 9 tie and keep movieId order.
    assert catalog.movie_ids[catalog.order].tolist() == [7, 3, 5, 9, 11]
    mask = catalog.seen_mask(np.array([3, 99, 1]))
    assert mask.tolist() == [
        [False, False, True, True, False],
        [False] * 5,
        [True, False, True, False, False],
    ]


def test_popularity_tables_hand_computed(train):
    # Likes (>= 4): movie 7: 2 of 3, movie 3: 1 of 2, movie 5: 1 of 1, movie 9: 0 of 1.
    tables = PopularityTables.fit(train, prior_count=2.0)
    share = 4 / 7
    expected = {7: (2 + 2 * share) / 5, 3: (1 + 2 * share) / 4, 5: (1 + 2 * share) / 3, 9: (2 * share) / 3}
    got = tables.probability(np.array(list(expected) + [11]))
    assert got.tolist() == pytest.approx(list(expected.values()) + [share])


def _hashed_probability(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    # Deterministic "model": an arbitrary but fixed probability per pair, with exact ties.
    return ((users * 31 + movies * 17) % 11) / 10.0


@pytest.mark.parametrize("k", [1, 3, 10, 500])
def test_pruned_recommend_equals_scoring_every_candidate(monkeypatch, k):
    rng = np.random.default_rng(0)
    # Zipf-like popularity over 200 movies, 30 users; tiny first block so pruning really runs.
    counts = np.maximum(1, (60 / np.arange(1, 201) ** 0.9).astype(int))
    movie_ids = rng.permutation(np.arange(1000, 1200))
    rows = [
        (user, movie)
        for movie, count in zip(movie_ids, counts)
        for user in rng.choice(30, size=min(count, 30), replace=False) + 1
    ]
    train = pd.DataFrame(rows, columns=["userId", "movieId"])
    catalog = CatalogIndex.fit(train, pd.DataFrame({"movieId": movie_ids}))
    monkeypatch.setattr(ranking, "_FIRST_BLOCK", 4)
    scored = []

    def probability(users, movies):
        scored.append(len(users))
        return _hashed_probability(users, movies)

    users = np.array([3, 1, 31, 2])  # 31 is unknown
    got = recommend(catalog, users, k, probability)

    full = catalog.propensity * _hashed_probability(
        np.repeat(users, len(catalog.movie_ids)), np.tile(catalog.movie_ids, len(users))
    ).reshape(len(users), -1)
    full[catalog.seen_mask(users)] = -np.inf
    positions, valid = top_k_positions(full, k)
    for i, user in enumerate(users):
        expected = catalog.movie_ids[positions[i][valid[i]]].tolist()
        assert got.loc[got["userId"] == user, "movieId"].tolist() == expected
    if k <= 10:
        assert sum(scored) < len(users) * len(catalog.movie_ids)


def test_recommend_with_no_users_returns_an_empty_typed_frame(train, movies):
    out = recommend(CatalogIndex.fit(train, movies), np.array([], dtype=np.int64), 5, _hashed_probability)
    assert list(out.columns) == list(ranking.RECOMMENDATION_COLUMNS) and len(out) == 0
    assert out["rank"].dtype == np.int64


def test_recommend_refuses_probabilities_outside_0_1(train, movies):
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        recommend(CatalogIndex.fit(train, movies), np.array([1]), 2, lambda u, m: np.full(len(u), 1.5))
