"""Point-in-time views of ratings: cutoff snapshots, content fingerprints and time-based splits."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from include.recommender.schema import RATINGS_COLUMNS, DataValidationError

# Bumped whenever the canonical byte layout below changes, so old and new fingerprints never match.
_FINGERPRINT_VERSION = b"movielens-ratings-v1"
_CANONICAL_DTYPES = {"userId": "<i8", "movieId": "<i8", "rating": "<f8", "timestamp": "<i8"}


def ratings_before(ratings: pd.DataFrame, cutoff: datetime | None) -> pd.DataFrame:
    """Return the ratings made strictly before cutoff (all of them when cutoff is None).

    :param ratings: ratings with a unix-seconds "timestamp" column.
    :param cutoff: exclusive upper bound; a naive datetime is taken as UTC.
    """
    _require_columns(ratings, ("timestamp",), "ratings_before")
    if cutoff is None:
        return ratings.reset_index(drop=True)
    if not isinstance(cutoff, datetime):
        raise TypeError(f"cutoff must be a datetime or None, got {type(cutoff).__name__}: {cutoff!r}")
    if cutoff.tzinfo is None:
        # datetime.timestamp() would read a naive value as local time; ratings are UTC.
        cutoff = cutoff.replace(tzinfo=timezone.utc)
    keep = ratings["timestamp"].to_numpy() < cutoff.timestamp()
    return ratings.loc[keep].reset_index(drop=True)


def fingerprint(ratings: pd.DataFrame) -> str:
    """Return "sha256:<hex>" of the ratings content, independent of row order and index.

    :param ratings: ratings with RATINGS_COLUMNS (other columns are ignored).
    """
    _require_columns(ratings, RATINGS_COLUMNS, "fingerprint")
    columns = {}
    for name, dtype in _CANONICAL_DTYPES.items():
        try:
            columns[name] = ratings[name].to_numpy().astype(dtype)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(f"fingerprint: column {name!r} is not {dtype}: {exc}") from exc
    # +0.0 turns -0.0 into 0.0, so equal ratings always hash equal.
    columns["rating"] = columns["rating"] + 0.0
    order = np.lexsort(
        (columns["rating"], columns["timestamp"], columns["movieId"], columns["userId"])
    )
    digest = hashlib.sha256(_FINGERPRINT_VERSION)
    digest.update(f"|rows={len(order)}".encode())
    for name in RATINGS_COLUMNS:
        digest.update(f"|{name}|".encode())
        digest.update(np.ascontiguousarray(columns[name][order]).tobytes())
    return "sha256:" + digest.hexdigest()


def temporal_split(
    ratings: pd.DataFrame, holdout_fraction: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ratings at a timestamp quantile into (train = past, holdout = future).

    Ratings sharing the cut timestamp all go to the holdout, so max(train) < min(holdout).
    Both parts are sorted by (timestamp, userId, movieId) with a fresh index.

    :param ratings: ratings with RATINGS_COLUMNS.
    :param holdout_fraction: target share of ratings in the holdout, strictly between 0 and 1.
    """
    if (
        isinstance(holdout_fraction, bool)
        or not isinstance(holdout_fraction, (int, float))
        or not math.isfinite(holdout_fraction)
        or not 0.0 < holdout_fraction < 1.0
    ):
        raise ValueError(f"holdout_fraction must be between 0 and 1 (exclusive), got {holdout_fraction!r}")
    _require_columns(ratings, ("userId", "movieId", "timestamp"), "temporal_split")
    order = np.lexsort(
        (ratings["movieId"].to_numpy(), ratings["userId"].to_numpy(), ratings["timestamp"].to_numpy())
    )
    ordered = ratings.iloc[order].reset_index(drop=True)
    n = len(ordered)
    n_holdout = int(round(n * holdout_fraction))
    timestamps = ordered["timestamp"].to_numpy()
    if n_holdout == 0 or n_holdout == n:
        raise DataValidationError(
            f"temporal_split: holdout_fraction={holdout_fraction} of {n} rating(s) leaves "
            f"{'the holdout' if n_holdout == 0 else 'train'} empty"
        )
    cut = timestamps[n - n_holdout]
    is_train = timestamps < cut
    if not is_train.any():
        raise DataValidationError(
            f"temporal_split: train would be empty: the cut at the {1 - holdout_fraction:.0%} "
            f"quantile of {n} rating(s) is the earliest timestamp, {cut}"
        )
    return ordered.loc[is_train].reset_index(drop=True), ordered.loc[~is_train].reset_index(drop=True)


def _require_columns(ratings: pd.DataFrame, columns: tuple[str, ...], caller: str) -> None:
    if not isinstance(ratings, pd.DataFrame):
        raise DataValidationError(f"{caller}: expected a DataFrame, got {type(ratings).__name__}")
    missing = [column for column in columns if column not in ratings.columns]
    if missing:
        raise DataValidationError(f"{caller}: ratings lack column(s) {', '.join(map(repr, missing))}")
