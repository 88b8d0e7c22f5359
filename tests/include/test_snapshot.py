"""Snapshots: cutoff semantics, content fingerprints and the time-based split."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from include.recommender.schema import DataValidationError
from include.recommender.snapshot import fingerprint, ratings_before, temporal_split
from include.recommender.synthetic import generate_movielens

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return generate_movielens(n_users=50, n_movies=400, n_ratings=3000, seed=11).ratings


def _frame(timestamps, ratings=None) -> pd.DataFrame:
    n = len(timestamps)
    return pd.DataFrame(
        {
            "userId": np.arange(1, n + 1, dtype=np.int64),
            "movieId": np.arange(1, n + 1, dtype=np.int64) * 10,
            "rating": np.asarray(ratings if ratings is not None else [4.0] * n, dtype=np.float64),
            "timestamp": np.asarray(timestamps, dtype=np.int64),
        }
    )


# --- ratings_before -----------------------------------------------------------------------------


def test_cutoff_is_exclusive():
    frame = _frame([T0 - 1, T0, T0 + 1])
    cutoff = datetime.fromtimestamp(T0, tz=timezone.utc)
    assert ratings_before(frame, cutoff)["timestamp"].tolist() == [T0 - 1]


def test_no_cutoff_keeps_everything(ratings):
    pd.testing.assert_frame_equal(ratings_before(ratings, None), ratings)


def test_naive_cutoff_is_utc_and_offsets_are_respected():
    frame = _frame([T0 - 3600, T0 - 1, T0])
    naive = datetime.fromtimestamp(T0, tz=timezone.utc).replace(tzinfo=None)
    assert ratings_before(frame, naive)["timestamp"].tolist() == [T0 - 3600, T0 - 1]
    plus_one = datetime.fromtimestamp(T0, tz=timezone(timedelta(hours=1)))
    assert ratings_before(frame, plus_one)["timestamp"].tolist() == [T0 - 3600, T0 - 1]
    assert ratings_before(frame, pd.Timestamp(T0 - 1, unit="s", tz="UTC"))["timestamp"].tolist() == [T0 - 3600]


def test_cutoff_result_has_fresh_index(ratings):
    cutoff = datetime.fromtimestamp(int(ratings["timestamp"].median()), tz=timezone.utc)
    before = ratings_before(ratings.iloc[::-1], cutoff)
    assert before.index.tolist() == list(range(len(before)))
    assert 0 < len(before) < len(ratings)
    assert (before["timestamp"] < cutoff.timestamp()).all()


def test_cutoff_must_be_a_datetime(ratings):
    with pytest.raises(TypeError, match="cutoff must be a datetime"):
        ratings_before(ratings, "2024-06-01")  # type: ignore[arg-type]


# --- fingerprint --------------------------------------------------------------------------------


def test_fingerprint_format_and_determinism(ratings):
    value = fingerprint(ratings)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", value)
    assert fingerprint(ratings.copy()) == value


def test_fingerprint_ignores_row_order_index_and_extra_columns(ratings):
    shuffled = ratings.sample(frac=1.0, random_state=3).set_index(np.arange(len(ratings)) * 7)
    assert fingerprint(shuffled) == fingerprint(ratings)
    reordered = ratings[["timestamp", "rating", "movieId", "userId"]].assign(note="x")
    assert fingerprint(reordered) == fingerprint(ratings)
    narrower = ratings.astype({"userId": "int32", "movieId": "int32"})
    assert fingerprint(narrower) == fingerprint(ratings)


@pytest.mark.parametrize(
    ("column", "delta"), [("userId", 100_000), ("movieId", 100_000), ("rating", -0.5), ("timestamp", 1)]
)
def test_fingerprint_changes_when_any_value_changes(ratings, column, delta):
    changed = ratings.copy()
    changed.loc[changed.index[len(changed) // 2], column] += delta
    assert fingerprint(changed) != fingerprint(ratings)


def test_fingerprint_changes_when_rows_are_added_or_removed(ratings):
    assert fingerprint(ratings.iloc[1:]) != fingerprint(ratings)
    assert fingerprint(pd.concat([ratings, ratings.iloc[:1]])) != fingerprint(ratings)


def test_fingerprint_needs_the_rating_columns(ratings):
    with pytest.raises(DataValidationError, match="lack column"):
        fingerprint(ratings.drop(columns="timestamp"))


# --- temporal_split -----------------------------------------------------------------------------


def test_split_puts_the_past_in_train(ratings):
    train, holdout = temporal_split(ratings, 0.2)
    assert train["timestamp"].max() < holdout["timestamp"].min()
    assert len(train) + len(holdout) == len(ratings)
    assert abs(len(holdout) / len(ratings) - 0.2) < 0.01
    assert fingerprint(pd.concat([train, holdout])) == fingerprint(ratings)


def test_split_is_deterministic_and_order_independent(ratings):
    train, holdout = temporal_split(ratings, 0.25)
    train2, holdout2 = temporal_split(ratings.sample(frac=1.0, random_state=5), 0.25)
    pd.testing.assert_frame_equal(train, train2)
    pd.testing.assert_frame_equal(holdout, holdout2)
    assert train.index.tolist() == list(range(len(train)))
    assert train["timestamp"].is_monotonic_increasing


def test_split_keeps_tied_timestamps_together():
    frame = _frame([1, 2, 3, 3, 3, 4, 5, 6, 7, 8])
    # The 30% quantile falls inside the run of 3s; all of them go to the holdout.
    train, holdout = temporal_split(frame, 0.7)
    assert train["timestamp"].tolist() == [1, 2]
    assert holdout["timestamp"].min() == 3


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.2"])
def test_split_rejects_bad_fractions(ratings, fraction):
    with pytest.raises(ValueError, match="holdout_fraction"):
        temporal_split(ratings, fraction)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timestamps", "fraction", "message"),
    [
        ([5, 5, 5, 5], 0.5, "train would be empty"),
        ([1], 0.2, "leaves the holdout empty"),
        ([1, 2, 3], 0.01, "leaves the holdout empty"),
        ([1, 2, 3], 0.99, "leaves train empty"),
    ],
)
def test_split_raises_when_a_side_would_be_empty(timestamps, fraction, message):
    with pytest.raises(DataValidationError, match=message):
        temporal_split(_frame(timestamps), fraction)
