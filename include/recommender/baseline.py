"""The popularity baseline: every user gets the movie's smoothed share of ratings >= 4.

Not personalised at all. As a pair scorer it predicts P(rating >= 4) from the movie alone; as a
recommender (propensity x P(like), ranking.py) it lists the most-rated, best-liked movies the
user has not rated yet. Any model worth promoting must beat it on the holdout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from include.recommender.features import LABEL_THRESHOLD


@dataclass
class PopularityTables:
    """Per-movie smoothed P(rating >= 4), with the global share for movies never rated.

    :param movie_ids: sorted movieIds rated in training.
    :param like_probability: (likes + prior_count * global share) / (ratings + prior_count).
    :param global_share: share of training ratings >= 4.
    """

    movie_ids: np.ndarray
    like_probability: np.ndarray
    global_share: float

    @classmethod
    def fit(cls, train: pd.DataFrame, prior_count: float) -> PopularityTables:
        """Count ratings and likes per movie on the training ratings.

        :param train: training ratings (movieId, rating).
        :param prior_count: pseudo-ratings at the global share added to every movie (>= 0).
        """
        if len(train) == 0:
            raise ValueError("train is empty; cannot fit the popularity baseline")
        if prior_count < 0:
            raise ValueError(f"prior_count must be >= 0, got {prior_count}")
        liked = (train["rating"].to_numpy(dtype=np.float64) >= LABEL_THRESHOLD).astype(np.float64)
        movie_ids, position = np.unique(train["movieId"].to_numpy(dtype=np.int64), return_inverse=True)
        ratings = np.bincount(position, minlength=len(movie_ids)).astype(np.float64)
        likes = np.bincount(position, weights=liked, minlength=len(movie_ids))
        share = float(liked.mean())
        return cls(movie_ids, (likes + prior_count * share) / (ratings + prior_count), share)

    def probability(self, movie_ids: np.ndarray) -> np.ndarray:
        """P(rating >= 4) of each movie (the global share for movies without ratings).

        :param movie_ids: movieIds.
        """
        position = pd.Index(self.movie_ids).get_indexer(np.asarray(movie_ids, dtype=np.int64))
        return np.where(position >= 0, self.like_probability[np.maximum(position, 0)], self.global_share)
