"""Ranking metrics on hand-computed cases, top-k with ties, the catalog, exact pruning, and the
evaluation's ranking protocol: chunks of users equal the dense computation, the seeded user
sample, bounded memory."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from include.recommender import holdout_metrics, ranking
from include.recommender.baseline import PopularityTables
from include.recommender.holdout_metrics import RankingProtocol
from include.recommender.ranking import (
    CatalogIndex,
    rank_by_score,
    ranking_metrics,
    recommend,
    sample_users,
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


def _zipf_catalog(n_users: int = 30, n_movies: int = 200, seed: int = 0) -> CatalogIndex:
    """Zipf-like popularity over n_movies movies rated by users 1..n_users."""
    rng = np.random.default_rng(seed)
    counts = np.maximum(1, (2 * n_users / np.arange(1, n_movies + 1) ** 0.9).astype(int))
    movie_ids = rng.permutation(np.arange(1000, 1000 + n_movies))
    rows = [
        (user, movie)
        for movie, count in zip(movie_ids, counts)
        for user in rng.choice(n_users, size=min(count, n_users), replace=False) + 1
    ]
    train = pd.DataFrame(rows, columns=["userId", "movieId"])
    return CatalogIndex.fit(train, pd.DataFrame({"movieId": movie_ids}))


def _dense_top_k(catalog: CatalogIndex, users: np.ndarray, k: int, pair_score) -> pd.DataFrame:
    """The reference: every (user, movie) score in one dense matrix, seen movies excluded."""
    full = pair_score(
        np.repeat(users, len(catalog.movie_ids)), np.tile(catalog.movie_ids, len(users))
    ).reshape(len(users), -1)
    full[catalog.seen_mask(users)] = -np.inf
    positions, valid = top_k_positions(full, k)
    row, slot = np.nonzero(valid)
    return pd.DataFrame(
        {"userId": users[row], "movieId": catalog.movie_ids[positions[row, slot]], "rank": slot + 1}
    )


def _propensity_times_hashed(catalog: CatalogIndex):
    def score(users, movies):
        return catalog.propensity[np.searchsorted(catalog.movie_ids, movies)] * _hashed_probability(
            users, movies
        )

    return score


def _tied_score(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    # Three score levels only: most of a list is decided by the lower-movieId tie rule.
    return np.floor(_hashed_probability(users, movies) * 3)


def _lists(recommendations: pd.DataFrame) -> dict[int, list[int]]:
    ordered = recommendations.sort_values(["userId", "rank"])
    return {int(u): g["movieId"].tolist() for u, g in ordered.groupby("userId")}


@pytest.mark.parametrize("k", [1, 3, 10, 500])
def test_pruned_recommend_equals_scoring_every_candidate(monkeypatch, k):
    catalog = _zipf_catalog()
    # A tiny first block so that pruning really runs.
    monkeypatch.setattr(ranking, "_FIRST_BLOCK", 4)
    scored = []

    def probability(users, movies):
        scored.append(len(users))
        return _hashed_probability(users, movies)

    users = np.array([3, 1, 31, 2])  # 31 is unknown
    got = recommend(catalog, users, k, probability)

    expected = _dense_top_k(catalog, users, k, _propensity_times_hashed(catalog))
    for user in users:
        assert got.loc[got["userId"] == user, "movieId"].tolist() == _lists(expected)[user]
    if k <= 10:
        assert sum(scored) < len(users) * len(catalog.movie_ids)


# 30 known users + one unknown; chunks of 1, 2, every user and more than every user.
CHUNK_SIZES = [1, 2, 31, 40]


@pytest.mark.parametrize("users_per_chunk", CHUNK_SIZES)
@pytest.mark.parametrize("k", [1, 3, 500])  # 500: more than any user's candidates
def test_recommend_in_chunks_equals_the_dense_top_k(monkeypatch, users_per_chunk, k):
    catalog = _zipf_catalog()
    monkeypatch.setattr(ranking, "_FIRST_BLOCK", 4)
    users = np.arange(31, 0, -1)  # descending, with the unknown user 31 first
    calls = []

    def probability(u, m):
        calls.append(len(np.unique(u)))
        return _hashed_probability(u, m)

    got = recommend(catalog, users, k, probability, users_per_chunk=users_per_chunk)

    expected = _dense_top_k(catalog, users, k, _propensity_times_hashed(catalog))
    assert _lists(got) == _lists(expected)
    assert got["userId"].drop_duplicates().tolist() == users.tolist()  # input order kept
    assert max(calls) <= users_per_chunk


@pytest.mark.parametrize("users_per_chunk", [*CHUNK_SIZES, None])
@pytest.mark.parametrize("k", [1, 3, 500])
def test_rank_catalog_in_chunks_equals_the_dense_top_k(users_per_chunk, k):
    catalog = _zipf_catalog()
    users = np.arange(1, 32)
    calls = []

    def recorded(u, m):
        calls.append(len(np.unique(u)))
        return _tied_score(u, m)

    got = ranking.rank_catalog(catalog, users, k, recorded, users_per_chunk)

    assert _lists(got) == _lists(_dense_top_k(catalog, users, k, _tied_score))
    assert list(got.columns) == ["userId", "movieId", "rank"]
    assert max(calls) <= (users_per_chunk or len(users))


def test_recommend_with_no_users_returns_an_empty_typed_frame(train, movies):
    out = recommend(CatalogIndex.fit(train, movies), np.array([], dtype=np.int64), 5, _hashed_probability)
    assert list(out.columns) == list(ranking.RECOMMENDATION_COLUMNS) and len(out) == 0
    assert out["rank"].dtype == np.int64


def test_recommend_refuses_probabilities_outside_0_1(train, movies):
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        recommend(CatalogIndex.fit(train, movies), np.array([1]), 2, lambda u, m: np.full(len(u), 1.5))


# ---- the evaluation's ranking protocol: chunks of users, a seeded user sample -------------------


class _ServedModel:
    """Stands in for a loaded pyfunc model in recommend mode; records each call's users."""

    def __init__(self, catalog: CatalogIndex) -> None:
        self.catalog = catalog
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame, params: dict) -> pd.DataFrame:
        users = frame["userId"].to_numpy(dtype=np.int64)
        self.calls.append(len(users))
        return recommend(self.catalog, users, params["k"], _hashed_probability)


class _Oracle:
    """Stands in for synthetic.SyntheticOracle: the two scores the evaluation asks it for."""

    watch_and_like_score = staticmethod(_tied_score)

    @staticmethod
    def expected_rating(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        return 0.5 + 4.5 * _hashed_probability(users, movies)


@pytest.fixture(scope="module")
def holdout_case():
    """A catalog and a holdout of unseen movies: users 1..31 (31 unknown), user 7 without a
    relevant (>= 4) rating, users 20..30 without any holdout rating."""
    catalog = _zipf_catalog()
    rng = np.random.default_rng(5)
    rows = []
    for user in [*range(1, 20), 31]:
        unseen = np.setdiff1d(catalog.movie_ids, catalog.movie_ids[catalog.seen_mask([user])[0]])
        for movie in rng.choice(unseen, size=6, replace=False):
            rating = 2.0 if user == 7 else float(rng.choice([1.0, 3.0, 4.0, 4.5, 5.0]))
            rows.append((user, int(movie), rating))
    holdout = pd.DataFrame(rows, columns=["userId", "movieId", "rating"])
    probability = _hashed_probability(holdout["userId"].to_numpy(), holdout["movieId"].to_numpy())
    return catalog, holdout, probability


def _dense_model_metrics(catalog, holdout, probability, k):
    """The ranking metrics computed without chunks or samples, from dense score matrices."""
    users = np.unique(holdout["userId"])
    recs = _dense_top_k(catalog, users, k, _propensity_times_hashed(catalog))
    relevant = holdout_metrics.relevant_pairs(holdout)
    metrics = ranking_metrics(recs, relevant, k=k, catalog_size=len(catalog.movie_ids))
    scored = holdout[["userId", "movieId"]].assign(score=probability)
    rated = ranking_metrics(rank_by_score(scored, k), relevant, k=k, catalog_size=len(catalog.movie_ids))
    return {**metrics, f"rated_ndcg_at_{k}": rated[f"ndcg_at_{k}"]}


@pytest.mark.parametrize("users_per_chunk", [*CHUNK_SIZES, None])
@pytest.mark.parametrize("k", [3, 500])
def test_chunked_model_ranking_metrics_equal_the_dense_computation(holdout_case, users_per_chunk, k):
    catalog, holdout, probability = holdout_case
    model = _ServedModel(catalog)
    protocol = RankingProtocol(user_sample_size=None, users_per_chunk=users_per_chunk)

    metrics, recs = holdout_metrics.model_ranking_metrics(
        model, catalog, holdout, probability, k=k, protocol=protocol
    )

    assert metrics == pytest.approx(_dense_model_metrics(catalog, holdout, probability, k), rel=1e-12)
    assert max(model.calls) <= (users_per_chunk or 20)  # 20 holdout users
    assert sorted(recs["userId"].unique()) == sorted(holdout["userId"].unique())


@pytest.mark.parametrize("users_per_chunk", [1, 2, 40])
def test_chunked_oracle_metrics_equal_one_chunk(holdout_case, users_per_chunk):
    catalog, holdout, _ = holdout_case

    def oracle_metrics(chunk):
        protocol = RankingProtocol(user_sample_size=None, users_per_chunk=chunk)
        return holdout_metrics.oracle_ranking_metrics(
            _Oracle(), catalog, holdout, k=3, protocol=protocol
        )

    assert oracle_metrics(users_per_chunk) == oracle_metrics(None)


@pytest.mark.parametrize("sample_size", [20, 21, 10_000])  # 20 = every holdout user
def test_a_sample_of_every_user_gives_exactly_the_full_figures(holdout_case, sample_size):
    catalog, holdout, probability = holdout_case

    def both(protocol):
        model, oracle = _ServedModel(catalog), _Oracle()
        ranked, _ = holdout_metrics.model_ranking_metrics(
            model, catalog, holdout, probability, k=3, protocol=protocol
        )
        oracle_metrics = holdout_metrics.oracle_ranking_metrics(oracle, catalog, holdout, 3, protocol)
        return {**ranked, **oracle_metrics}

    assert both(RankingProtocol(user_sample_size=sample_size, seed=9)) == both(
        RankingProtocol(user_sample_size=None)
    )


def test_a_smaller_sample_ranks_only_its_users_with_their_own_relevant_items(holdout_case):
    catalog, holdout, probability = holdout_case
    protocol = RankingProtocol(user_sample_size=6, seed=3)
    users = protocol.users(holdout)
    model = _ServedModel(catalog)

    metrics, recs = holdout_metrics.model_ranking_metrics(
        model, catalog, holdout, probability, k=3, protocol=protocol
    )

    assert len(users) == 6 and set(recs["userId"]) == set(users) and sum(model.calls) == 6
    # Unsampled users' relevant items are not counted as misses.
    in_sample = holdout["userId"].isin(users).to_numpy()
    expected = _dense_model_metrics(catalog, holdout[in_sample], probability[in_sample], 3)
    assert metrics == pytest.approx(expected, rel=1e-12)


def test_the_user_sample_is_a_sorted_subset_decided_by_the_seed():
    users = np.random.default_rng(1).permutation(np.repeat(np.arange(100, 400), 2))  # duplicated

    first = sample_users(users, 25, seed=4)

    assert np.array_equal(first, sample_users(users.copy(), 25, seed=4))
    assert not np.array_equal(first, sample_users(users, 25, seed=5))
    assert len(first) == 25 and np.all(np.diff(first) > 0) and set(first) <= set(users)


@pytest.mark.parametrize("sample_size", [None, 300, 301])
def test_a_sample_at_least_as_large_as_the_users_keeps_every_user(sample_size):
    users = np.array([5, 3, 3, 9] * 75 + list(range(10, 307)))
    assert np.array_equal(sample_users(users, sample_size, seed=0), np.unique(users))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sample_users(np.arange(5), 0, seed=0), "user sample size must be a positive integer"),
        (lambda: sample_users(np.arange(5), 2.5, seed=0), "user sample size"),
        (lambda: sample_users(np.arange(5), True, seed=0), "user sample size"),
        (lambda: sample_users(np.arange(5), 2, seed=-1), "user sample seed must be a non-negative"),
        (lambda: RankingProtocol(user_sample_size=0), "ranking user_sample_size must be a positive"),
        (lambda: RankingProtocol(users_per_chunk=-3), "ranking users_per_chunk must be a positive"),
        (lambda: RankingProtocol(seed="7"), "user sample seed"),
        (lambda: recommend(_zipf_catalog(), np.array([1]), 2, _hashed_probability, users_per_chunk=0),
         "users_per_chunk must be a positive integer, got 0"),
        (lambda: ranking.rank_catalog(_zipf_catalog(), np.array([1]), 2, _tied_score, 1.5),
         "users_per_chunk must be a positive integer, got 1.5"),
    ],
)
def test_bad_protocol_values_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_protocol_describes_what_was_ranked(holdout_case):
    catalog, holdout, _ = holdout_case
    sampled = RankingProtocol(user_sample_size=6, seed=3, users_per_chunk=4)
    assert sampled.describe(holdout, sampled.users(holdout), catalog) == {
        "holdout_users": 20,
        "users_sampled": True,
        "user_sample_size": 6,
        "user_sample_seed": 3,
        "users_per_chunk": 4,
    }
    every = RankingProtocol()
    described = every.describe(holdout, every.users(holdout), catalog)
    assert described["users_sampled"] is False
    assert described["users_per_chunk"] == ranking.default_users_per_chunk(len(catalog.movie_ids))


@pytest.mark.parametrize("ranker", ["recommend", "rank_catalog"])
def test_peak_memory_grows_with_the_chunk_not_with_the_users(ranker):
    # 400 users x 8,000 movies: one dense float64 score matrix alone takes 25.6 MB (scoring
    # them in one chunk peaks at ~5 such matrices); a chunk of 8 users is 0.5 MB a matrix.
    catalog = _zipf_catalog(n_users=400, n_movies=8_000, seed=2)
    users = np.arange(1, 401)
    dense_bytes = len(users) * len(catalog.movie_ids) * 8
    calls = []

    def probability(u, m):
        calls.append(len(np.unique(u)))
        return _hashed_probability(u, m)

    tracemalloc.start()
    try:
        if ranker == "recommend":
            lists = recommend(catalog, users, 5, probability, users_per_chunk=8)
        else:
            lists = ranking.rank_catalog(catalog, users, 5, probability, users_per_chunk=8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert lists["userId"].nunique() == len(users)
    assert max(calls) <= 8  # by construction: no call ever sees more than a chunk of users
    assert peak < dense_bytes / 3, f"peak {peak / 2**20:.1f} MiB with chunks of 8 users"
