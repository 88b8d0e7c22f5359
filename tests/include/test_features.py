"""Features: hand-computed statistics, priors for unknown ids, no leakage, no NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.recommender.features import (
    FEATURE_NAMES,
    LABEL_THRESHOLD,
    MOVIE_PRIOR_COUNT,
    USER_PRIOR_COUNT,
    FeatureTables,
    labels,
    out_of_fold_features,
)
from include.recommender.snapshot import temporal_split
from include.recommender.synthetic import generate_movielens

MOVIES = pd.DataFrame(
    {
        "movieId": [10, 20, 30, 40],
        "title": ["A (2000)", "B (2001)", "C (2002)", "D (2003)"],
        "genres": ["Comedy", "Drama", "Comedy|Drama", "(no genres listed)"],
    }
)


def _ratings(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating"])
    return frame.assign(timestamp=np.arange(len(frame), dtype=np.int64))


@pytest.fixture(scope="module")
def small_data():
    return generate_movielens(n_users=80, n_movies=300, n_ratings=6000, seed=3)


@pytest.mark.parametrize(
    ("rating", "label"), [(0.5, 0), (3.5, 0), (3.9, 0), (LABEL_THRESHOLD, 1), (4.5, 1), (5.0, 1)]
)
def test_labels_threshold(rating, label):
    assert labels(_ratings([(1, 10, rating)])).tolist() == [label]


def test_smoothed_means_match_hand_computation():
    ratings = _ratings([(1, 10, 5.0), (1, 20, 3.0), (2, 10, 4.0), (2, 30, 2.0)])
    tables = FeatureTables.fit(ratings, MOVIES)
    features = tables.transform(pd.DataFrame({"userId": [1], "movieId": [10]}))

    mu, k_user, k_movie = 3.5, USER_PRIOR_COUNT, MOVIE_PRIOR_COUNT
    row = features.iloc[0]
    assert tables.global_mean == pytest.approx(mu)
    assert tables.global_high_share == pytest.approx(0.5)
    # User 1: ratings 5 and 3 (one >= 4); movie 10: ratings 5 and 4 (both >= 4).
    assert row["user_mean"] == pytest.approx((8.0 + k_user * mu) / (2 + k_user))
    assert row["user_log_count"] == pytest.approx(np.log1p(2))
    assert row["user_high_share"] == pytest.approx((1 + k_user * 0.5) / (2 + k_user))
    assert row["movie_mean"] == pytest.approx((9.0 + k_movie * mu) / (2 + k_movie))
    assert row["movie_high_share"] == pytest.approx((2 + k_movie * 0.5) / (2 + k_movie))
    # Movie 10 was rated by both of the two training users.
    assert features.loc[0, "movie_popularity"] == pytest.approx(1.0)
    assert features.loc[0, "baseline_rating"] == pytest.approx(
        mu + features.loc[0, "user_bias"] + features.loc[0, "movie_bias"]
    )


def test_unknown_user_and_movie_get_priors():
    ratings = _ratings([(1, 10, 5.0), (1, 20, 3.0), (2, 10, 4.0), (2, 30, 2.0)])
    tables = FeatureTables.fit(ratings, MOVIES)
    features = tables.transform(pd.DataFrame({"userId": [999, 1], "movieId": [10, 999]}))

    unknown_user, unknown_movie = features.iloc[0], features.iloc[1]
    user_columns = ["user_mean", "user_log_count", "user_high_share", "user_bias"]
    movie_columns = ["movie_mean", "movie_log_count", "movie_high_share", "movie_bias"]
    mu, share = tables.global_mean, tables.global_high_share
    assert unknown_user[user_columns].tolist() == pytest.approx([mu, 0.0, share, 0.0])
    assert unknown_user["genre_affinity"] == 0.0
    assert unknown_movie[movie_columns].tolist() == pytest.approx([mu, 0.0, share, 0.0])
    assert unknown_movie["movie_popularity"] == 0.0
    assert not features.isna().any().any()


def test_genre_affinity_follows_the_users_taste():
    # User 1 loves comedies and dislikes dramas; others rate both genres the same.
    rows = [(1, 10, 5.0), (1, 20, 1.0)]
    rows += [(u, m, 3.0) for u in range(2, 8) for m in (10, 20)]
    tables = FeatureTables.fit(_ratings(rows), MOVIES)
    # Movie 30 is Comedy|Drama, unrated by user 1: the affinity averages the two genres.
    features = tables.transform(pd.DataFrame({"userId": [1, 1, 1, 1], "movieId": [10, 20, 30, 40]}))

    comedy, drama, both, none = features["genre_affinity"].tolist()
    assert comedy > 0 > drama
    assert both == pytest.approx((comedy + drama) / 2)
    assert none == 0.0
    assert features.loc[0, "genre_high_share"] > features.loc[1, "genre_high_share"]


def test_transform_on_real_sized_sample_has_no_nan(small_data):
    train, holdout = temporal_split(small_data.ratings, 0.2)
    tables = FeatureTables.fit(train, small_data.movies)
    features = tables.transform(holdout)

    assert list(features.columns) == list(FEATURE_NAMES)
    assert len(features) == len(holdout)
    assert (features.dtypes == np.float64).all()
    assert np.isfinite(features.to_numpy()).all()


def test_holdout_only_user_gets_priors(small_data):
    """Nothing about a user seen only after the split can reach the fitted tables."""
    train, holdout = temporal_split(small_data.ratings, 0.2)
    new_user = int(small_data.ratings["userId"].max()) + 1
    movie_ids = holdout["movieId"].iloc[:3].to_numpy()
    extra = pd.DataFrame({"userId": [new_user] * 3, "movieId": movie_ids, "rating": [5.0] * 3})
    holdout_with_new = pd.concat([holdout, extra.assign(timestamp=holdout["timestamp"].max())])
    tables = FeatureTables.fit(train, small_data.movies)
    features = tables.transform(holdout_with_new.tail(3))

    assert features["user_mean"].tolist() == pytest.approx([tables.global_mean] * 3)
    assert features["user_log_count"].tolist() == [0.0] * 3
    assert new_user not in tables.user_ids


def test_fit_ignores_rows_not_given():
    """Statistics of a user depend only on the ratings passed to fit."""
    base = _ratings([(1, 10, 5.0), (1, 20, 3.0), (2, 10, 4.0)])
    more = pd.concat([base, _ratings([(2, 20, 1.0), (3, 30, 5.0)])])
    pair = pd.DataFrame({"userId": [2], "movieId": [30]})
    before = FeatureTables.fit(base, MOVIES).transform(pair)
    after = FeatureTables.fit(more, MOVIES).transform(pair)
    assert before.loc[0, "user_mean"] != after.loc[0, "user_mean"]


def test_out_of_fold_features_exclude_the_rows_own_rating(small_data):
    train, _ = temporal_split(small_data.ratings, 0.2)
    train = train.reset_index(drop=True)
    original = out_of_fold_features(train, small_data.movies, n_folds=5, seed=1)
    flipped = train.copy()
    flipped.loc[0, "rating"] = 5.5 - flipped.loc[0, "rating"]
    changed = out_of_fold_features(flipped, small_data.movies, n_folds=5, seed=1)

    assert original.shape == (len(train), len(FEATURE_NAMES))
    assert np.isfinite(original.to_numpy()).all()
    # Row 0's own features never saw its rating; other rows of the same user did.
    pd.testing.assert_series_equal(original.iloc[0], changed.iloc[0])
    assert not original.equals(changed)


@pytest.mark.parametrize("n_folds", [0, 1])
def test_out_of_fold_rejects_too_few_folds(small_data, n_folds):
    with pytest.raises(ValueError, match="n_folds"):
        out_of_fold_features(small_data.ratings, small_data.movies, n_folds=n_folds)


@pytest.mark.parametrize("column", ["userId", "movieId"])
def test_transform_names_a_missing_column(column):
    tables = FeatureTables.fit(_ratings([(1, 10, 5.0)]), MOVIES)
    pairs = pd.DataFrame({"userId": [1], "movieId": [10]}).drop(columns=column)
    with pytest.raises(ValueError, match=column):
        tables.transform(pairs)


def test_fit_rejects_empty_ratings():
    with pytest.raises(ValueError, match="empty"):
        FeatureTables.fit(_ratings([]), MOVIES)


def test_transform_rejects_missing_ids():
    tables = FeatureTables.fit(_ratings([(1, 10, 5.0)]), MOVIES)
    with pytest.raises(ValueError, match="userId"):
        tables.transform(pd.DataFrame({"userId": [np.nan], "movieId": [10]}))


@pytest.mark.parametrize(
    "values",
    [
        np.array([5, 3, 5, 9, 3, 3], dtype=np.int64),
        np.array([-4, 7, -4, 0], dtype=np.int64),
        np.array([7], dtype=np.int32),
        np.array([], dtype=np.int64),
        np.array([0, 10**12, 3, 10**12], dtype=np.int64),  # range too wide: np.unique itself
    ],
)
def test_unique_inverse_equals_numpy_unique(values):
    from include.recommender.features import unique_inverse

    expected_uniques, expected_inverse = np.unique(values, return_inverse=True)
    uniques, inverse = unique_inverse(values)
    assert uniques.dtype == expected_uniques.dtype and np.array_equal(uniques, expected_uniques)
    assert np.array_equal(inverse, expected_inverse)
