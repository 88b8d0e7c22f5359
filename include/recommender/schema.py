"""MovieLens table layout and the container every data producer returns.

ratings: userId int64, movieId int64, rating float64 (half stars 0.5..5.0), timestamp int64
(unix seconds, UTC). movies: movieId int64, title str, genres str (pipe-separated, e.g.
"Action|Comedy", or "(no genres listed)").
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

RATINGS_COLUMNS = ("userId", "movieId", "rating", "timestamp")
MOVIES_COLUMNS = ("movieId", "title", "genres")

RATING_MIN = 0.5
RATING_MAX = 5.0


class DataValidationError(ValueError):
    """Input data is missing, malformed or violates the MovieLens schema."""


@dataclass(frozen=True)
class MovieLensData:
    """Validated ratings and movies plus where they came from.

    :param ratings: one row per (userId, movieId) with RATINGS_COLUMNS.
    :param movies: one row per movieId with MOVIES_COLUMNS.
    :param source: the source string the data was loaded or generated from.
    :param oracle: for synthetic data, the generator's truth (``expected_rating``); else None.
    """

    ratings: pd.DataFrame
    movies: pd.DataFrame
    source: str
    oracle: object | None = None
