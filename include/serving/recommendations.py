"""Each known user's top list, computed once when a version loads, so /recommend only slices it.

The lists come from the model itself: one ``predict(users, params={"mode": "recommend"})`` call
for every user the model knows plus one unknown user (the pyfunc gives every unknown user the
list of a user with no history, so one list answers them all). A top-k list is the first k
entries of a longer list (the model ranks by score, ties to the lower movieId), so a request
for k <= depth is a slice; a longer one is computed by the model per request (``live``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.recommender.pyfunc import RecommenderBase

# Stands for every user the model has not seen (user ids are non-negative in every source).
UNKNOWN_USER = -1


class NotARecommender(ValueError):
    """The loaded pyfunc is not one of the project's recommenders (no catalog to rank from)."""


@dataclass(frozen=True)
class RecommendationTable:
    """Top-``depth`` lists: ``lists[row]`` is [(movie_id, score), ...], best first.

    :param depth: the list length computed per user (a user with fewer candidates has fewer).
    :param rows: user id -> row; users absent get ``unknown_row``.
    :param lists: per row, (movie ids, scores) as Python lists (sliced per request, no numpy).
    :param unknown_row: the row of the no-history list.
    """

    depth: int
    rows: dict[int, int]
    lists: list[tuple[list[int], list[float]]]
    unknown_row: int

    def top(self, user_id: int, k: int) -> tuple[list[int], list[float]]:
        """The user's first k movie ids and scores (k <= depth)."""
        movies, scores = self.lists[self.rows.get(user_id, self.unknown_row)]
        return movies[:k], scores[:k]

    @property
    def user_count(self) -> int:
        """Known users (the unknown-user row not counted)."""
        return len(self.rows)


def known_users(pyfunc: Any) -> np.ndarray:
    """The user ids the model was trained on, from the catalog it carries.

    :raises NotARecommender: the pyfunc is not a RecommenderBase.
    """
    model = pyfunc.unwrap_python_model()
    if not isinstance(model, RecommenderBase):
        raise NotARecommender(
            f"the model is a {type(model).__name__}, not a movie recommender pyfunc (include/recommender/pyfunc.py)"
        )
    return np.asarray(model.catalog.user_ids, dtype=np.int64)


def build_table(pyfunc: Any, depth: int) -> RecommendationTable:
    """Ask the model for every known user's top-``depth`` list (and the unknown user's) at once.

    :param pyfunc: the loaded pyfunc model.
    :param depth: list length per user.
    """
    users = np.append(known_users(pyfunc), UNKNOWN_USER)
    frame = live(pyfunc, users, depth)
    by_user = {int(user): group for user, group in frame.groupby("userId", sort=False)}
    lists = []
    for user in users.tolist():
        group = by_user.get(user)
        if group is None:  # a user who rated every movie: nothing left to recommend
            lists.append(([], []))
            continue
        ordered = group.sort_values("rank")
        lists.append((ordered["movieId"].astype(int).tolist(), ordered["score"].astype(float).tolist()))
    rows = {user: row for row, user in enumerate(users[:-1].tolist())}
    return RecommendationTable(depth=depth, rows=rows, lists=lists, unknown_row=len(users) - 1)


def live(pyfunc: Any, user_ids: np.ndarray, k: int) -> pd.DataFrame:
    """The model's recommend mode: userId, movieId, score, probability, rank per list entry."""
    frame = pd.DataFrame({"userId": np.asarray(user_ids, dtype=np.int64)})
    return pyfunc.predict(frame, params={"mode": "recommend", "k": int(k)})
