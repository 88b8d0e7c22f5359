"""Top-k recommendation and the ranking metrics a recommender is judged by.

Recommending (``CatalogIndex`` + ``recommend``). Every model gives P(rating >= 4) for a
(user, movie) pair: how much the user would like the movie *if* they watched it. A top-k list
should instead hold the movies the user is most likely to watch *and* like, so the ranking
score is ``propensity(movie) x P(like)``, where propensity is the share of training users who
rated the movie (MovieLens users mostly rate what is popular; ranking by P(like) alone fills
the list with obscure titles nobody will watch). Movies the user rated in training are
excluded. Ties are broken by the lower movieId, so lists are deterministic.

Because P(like) <= 1, a movie's score never exceeds its propensity. ``recommend`` scores the
catalog in blocks of decreasing propensity and stops, per user, once the next movie's
propensity is below the user's k-th best score so far: the result is exactly the full-catalog
top-k, at a fraction of the scoring cost (which matters for slow scorers such as boosting).

Metrics (``ranking_metrics``), for a user with a non-empty relevant set R and a top-k list L:
precision@k = |L & R| / k (k, not len(L): a short list is not rewarded), recall@k =
|L & R| / |R|, ndcg@k = DCG / IDCG with binary gains, DCG = sum over hits of
1 / log2(rank + 1) and IDCG the DCG of min(|R|, k) hits at the top. They are averaged over
users with at least one relevant item (for the others recall and ndcg are undefined).
coverage@k = distinct movies in any list / catalog size.

Bounded memory at any size. Users are scored against the full catalog a chunk at a time
(``users_per_chunk``; by default as many as fit in _CELLS_PER_CHUNK cells, ~4M), so a chunk's
dense (users x catalog) arrays take a few hundred MB at most, whatever the number of users; the
scorer itself is called on at most _PAIRS_PER_CALL pairs at a time. ``rank_catalog`` does the same
for rankers that score every pair (the synthetic oracle, fixed reference rankings), and
``sample_users`` draws the seeded user sample an evaluation may rank instead of every user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_K = 10
RECOMMENDATION_COLUMNS = ("userId", "movieId", "score", "probability", "rank")
# Pairs scored per call of the probability function while recommending (bounds memory).
_PAIRS_PER_CALL = 250_000
# Users per chunk are bounded so the chunk's dense (users x catalog) matrices stay ~30 MB each.
_CELLS_PER_CHUNK = 4_000_000
# Candidates per user of one probability call when sizing chunks (see default_users_per_chunk).
_CHUNK_CANDIDATES = 512
# Most popular movies scored first for every user; the blocks then double. Small because the
# k-th best score passes the next propensity early for most users (default data: a median user
# is done after 26 movies, so a first block of 512 scored ~4x the pairs it needed).
_FIRST_BLOCK = 32

PairProbability = Callable[[np.ndarray, np.ndarray], np.ndarray]
# (userIds, movieIds) -> any finite score per pair, higher = recommended first.
PairScore = Callable[[np.ndarray, np.ndarray], np.ndarray]
# (distinct userIds, movieIds) -> (users x movies) scores: every pair of the two lists at once.
GridScore = Callable[[np.ndarray, np.ndarray], np.ndarray]


def positive_int(value: object, name: str) -> int:
    """Return value as an int when it is a positive integer, else raise ValueError naming it.

    :param value: the value to check.
    :param name: what the value is, for the error message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_k(k: object) -> int:
    """Return k as an int when it is a positive integer, else raise ValueError naming it.

    :param k: the requested list length.
    """
    return positive_int(k, "k")


def default_users_per_chunk(n_movies: int) -> int:
    """Users scored at once by default: their catalog rows fit in _CELLS_PER_CHUNK cells and
    _CHUNK_CANDIDATES candidates of each in one call of the probability function.

    :param n_movies: catalog size (>= 1).
    """
    n_movies = positive_int(n_movies, "n_movies")
    return max(1, min(_PAIRS_PER_CALL // min(n_movies, _CHUNK_CANDIDATES), _CELLS_PER_CHUNK // n_movies))


def _chunk_size(users_per_chunk: int | None, n_movies: int) -> int:
    if users_per_chunk is None:
        return default_users_per_chunk(n_movies)
    return positive_int(users_per_chunk, "users_per_chunk")


def sample_users(user_ids: np.ndarray, sample_size: int | None, seed: int) -> np.ndarray:
    """The distinct user_ids, sorted; or a seeded random sample of sample_size of them, sorted.

    None, or a size at least the number of distinct users, keeps every user (no draw at all),
    so a large enough size leaves an evaluation exactly as without sampling.

    :param user_ids: userIds (duplicates count once).
    :param sample_size: how many users to keep; None keeps all.
    :param seed: seed of the draw (a non-negative integer): the same seed, the same users.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"user sample seed must be a non-negative integer, got {seed!r}")
    users = np.unique(np.asarray(user_ids, dtype=np.int64))
    if sample_size is None:
        return users
    size = positive_int(sample_size, "user sample size")
    if size >= len(users):
        return users
    chosen = np.random.default_rng(int(seed)).choice(len(users), size=size, replace=False)
    return users[np.sort(chosen)]


@dataclass
class CatalogIndex:
    """The movies a model can recommend, their propensity, and what each user already rated.

    :param movie_ids: sorted catalog movieIds.
    :param propensity: per catalog movie, share of training users who rated it (a floor of
        half a rating for movies nobody rated, so they still rank among themselves).
    :param order: catalog positions by decreasing propensity (ties: lower movieId first).
    :param user_ids: sorted userIds seen in training.
    :param seen_start: CSR offsets: user i rated seen_positions[seen_start[i]:seen_start[i+1]].
    :param seen_positions: catalog positions of the movies each training user rated.
    """

    movie_ids: np.ndarray
    propensity: np.ndarray
    order: np.ndarray
    user_ids: np.ndarray
    seen_start: np.ndarray
    seen_positions: np.ndarray

    @classmethod
    def fit(cls, train: pd.DataFrame, movies: pd.DataFrame) -> CatalogIndex:
        """Build the catalog (every movie in movies or train) from the training ratings.

        :param train: training ratings (userId, movieId).
        :param movies: movies table (movieId).
        """
        if len(train) == 0:
            raise ValueError("train is empty; cannot build the recommendation catalog")
        rated = train["movieId"].to_numpy(dtype=np.int64)
        movie_ids = np.unique(np.concatenate([movies["movieId"].to_numpy(dtype=np.int64), rated]))
        users = train["userId"].to_numpy(dtype=np.int64)
        user_ids, user_pos = np.unique(users, return_inverse=True)
        movie_pos = np.searchsorted(movie_ids, rated)
        counts = np.bincount(movie_pos, minlength=len(movie_ids)).astype(np.float64)
        propensity = np.maximum(counts, 0.5) / len(user_ids)
        order = np.lexsort((np.arange(len(movie_ids)), -propensity))
        by_user = np.lexsort((movie_pos, user_pos))
        seen_start = np.concatenate([[0], np.cumsum(np.bincount(user_pos, minlength=len(user_ids)))])
        return cls(
            movie_ids=movie_ids,
            propensity=propensity,
            order=order.astype(np.int64),
            user_ids=user_ids,
            seen_start=seen_start.astype(np.int64),
            seen_positions=movie_pos[by_user].astype(np.int64),
        )

    def seen_mask(self, user_ids: np.ndarray) -> np.ndarray:
        """Boolean (len(user_ids), catalog) matrix: True where the user rated the movie in training.

        :param user_ids: userIds (unknown users rated nothing).
        """
        mask = np.zeros((len(user_ids), len(self.movie_ids)), dtype=bool)
        rows = pd.Index(self.user_ids).get_indexer(np.asarray(user_ids, dtype=np.int64))
        known = np.flatnonzero(rows >= 0)
        starts, stops = self.seen_start[rows[known]], self.seen_start[rows[known] + 1]
        lengths = stops - starts
        flat_rows = np.repeat(known, lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        mask[flat_rows, self.seen_positions[np.repeat(starts, lengths) + offsets]] = True
        return mask


def top_k_positions(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions of each row's k best scores, best first; ties -> lower column first.

    -inf marks a non-candidate. Returns (positions, valid): positions is (rows, min(k, cols)),
    valid says which entries are real candidates (a row with fewer than k has trailing False).

    :param scores: (rows, cols) float matrix; NaN is refused.
    :param k: list length.
    """
    k = check_k(k)
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"scores hold {int(np.isnan(scores).sum())} NaN value(s)")
    width = min(k, scores.shape[1])
    if width == scores.shape[1] or scores.shape[0] == 0:
        # A stable sort of the negated scores keeps equal scores in column (= movieId) order.
        positions = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    else:
        positions = _top_k_by_partition(scores, width)
    valid = np.isfinite(np.take_along_axis(scores, positions, axis=1))
    return positions, valid


def _top_k_by_partition(scores: np.ndarray, width: int) -> np.ndarray:
    """The stable sort's first ``width`` columns, sorting only the entries that can be in them.

    Every entry at least the row's width-th largest score is a contender (ties included, so the
    lower column still wins a tie); sorting those few by (row, score down, column) and keeping
    each row's first ``width`` gives exactly what a stable argsort of the whole row gives.
    """
    threshold = -np.partition(-scores, width - 1, axis=1)[:, width - 1]
    rows, cols = np.nonzero(scores >= threshold[:, None])
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = rank < width
    positions = np.empty((scores.shape[0], width), dtype=np.int64)
    positions[rows[keep], rank[keep]] = cols[keep]
    return positions


def recommend(
    catalog: CatalogIndex,
    user_ids: np.ndarray,
    k: int,
    probability: PairProbability,
    users_per_chunk: int | None = None,
) -> pd.DataFrame:
    """Top-k unseen movies per user by propensity x P(like); see the module docstring.

    :param catalog: the model's catalog.
    :param user_ids: distinct userIds, in the order the output lists them.
    :param k: list length (fewer rows when a user has fewer candidates).
    :param probability: (userIds, movieIds) -> P(rating >= 4) in [0, 1], same length.
    :param users_per_chunk: users scored at once (memory ~ this x catalog size); None: the
        default_users_per_chunk. The lists do not depend on it.
    """
    k = check_k(k)
    user_ids = np.asarray(user_ids, dtype=np.int64)
    rows_per_chunk = _chunk_size(users_per_chunk, len(catalog.movie_ids))
    frames = [_empty_recommendations()]
    for start in range(0, len(user_ids), rows_per_chunk):
        chunk = user_ids[start : start + rows_per_chunk]
        scores, probs = _score_chunk(catalog, chunk, k, probability)
        positions, valid = top_k_positions(scores, k)
        row, slot = np.nonzero(valid)
        col = positions[row, slot]
        frames.append(
            pd.DataFrame(
                {
                    "userId": chunk[row],
                    "movieId": catalog.movie_ids[col],
                    "score": scores[row, col],
                    "probability": probs[row, col],
                    # valid is True on a prefix of each row, so the slot is the rank - 1.
                    "rank": slot.astype(np.int64) + 1,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _empty_recommendations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "userId": np.empty(0, dtype=np.int64),
            "movieId": np.empty(0, dtype=np.int64),
            "score": np.empty(0, dtype=np.float64),
            "probability": np.empty(0, dtype=np.float64),
            "rank": np.empty(0, dtype=np.int64),
        }
    )


def rank_catalog(
    catalog: CatalogIndex,
    user_ids: np.ndarray,
    k: int,
    pair_score: PairScore,
    users_per_chunk: int | None = None,
    grid_score: GridScore | None = None,
) -> pd.DataFrame:
    """Top-k unseen movies per user by pair_score over the whole catalog, chunk by chunk of users.

    For rankers that score every pair (no propensity pruning). Ties go to the lower movieId.

    :param catalog: the catalog (movies to rank, and what each user already rated).
    :param user_ids: distinct userIds, in the order the output lists them.
    :param k: list length (fewer rows when a user has fewer candidates).
    :param pair_score: (userIds, movieIds) -> finite score per pair.
    :param users_per_chunk: users scored at once (memory ~ this x catalog size); None: the
        default_users_per_chunk. The lists do not depend on it.
    :param grid_score: the same scores as pair_score, a chunk's users x the catalog in one call
        (e.g. by matrix products); used instead of pair_score when given.
    :return: userId, movieId, rank (1 = best).
    """
    k = check_k(k)
    user_ids = np.asarray(user_ids, dtype=np.int64)
    movie_ids = catalog.movie_ids
    rows_per_chunk = _chunk_size(users_per_chunk, len(movie_ids))
    empty = np.empty(0, dtype=np.int64)
    frames = [pd.DataFrame({"userId": empty, "movieId": empty, "rank": empty})]
    for start in range(0, len(user_ids), rows_per_chunk):
        chunk = user_ids[start : start + rows_per_chunk]
        if grid_score is not None:
            scores = np.array(grid_score(chunk, movie_ids), dtype=np.float64).reshape(len(chunk), len(movie_ids))
        else:
            scores = _pair_scores(
                pair_score, np.repeat(chunk, len(movie_ids)), np.tile(movie_ids, len(chunk))
            ).reshape(len(chunk), len(movie_ids))
        scores[catalog.seen_mask(chunk)] = -np.inf
        positions, valid = top_k_positions(scores, k)
        row, slot = np.nonzero(valid)
        frames.append(
            pd.DataFrame(
                {"userId": chunk[row], "movieId": movie_ids[positions[row, slot]], "rank": slot + 1}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _pair_scores(score: PairScore, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """Call score in batches of at most _PAIRS_PER_CALL pairs (bounds the scorer's temporaries)."""
    out = np.empty(len(users), dtype=np.float64)
    for start in range(0, len(users), _PAIRS_PER_CALL):
        stop = start + _PAIRS_PER_CALL
        out[start:stop] = np.asarray(score(users[start:stop], movies[start:stop]), dtype=np.float64)
    return out


def _probabilities(probability: PairProbability, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """Call probability in batches of at most _PAIRS_PER_CALL pairs; check the range."""
    out = _pair_scores(probability, users, movies)
    if not np.all((out >= 0.0) & (out <= 1.0)):
        raise ValueError("the model returned probabilities outside [0, 1] (or NaN)")
    return out


def _score_chunk(
    catalog: CatalogIndex, users: np.ndarray, k: int, probability: PairProbability
) -> tuple[np.ndarray, np.ndarray]:
    """Score users x catalog in blocks of falling propensity until no unscored movie can enter."""
    n_users, n_movies = len(users), len(catalog.movie_ids)
    scores = np.full((n_users, n_movies), -np.inf)
    probs = np.full((n_users, n_movies), np.nan)
    seen = catalog.seen_mask(users)
    active = np.ones(n_users, dtype=bool)
    done, block = 0, _FIRST_BLOCK
    while done < n_movies and active.any():
        rows = np.flatnonzero(active)
        cols = catalog.order[done : done + block]
        # Only the unseen pairs go to the model (a seen movie is never recommended): among the
        # most popular movies, where most scoring happens, users have rated many.
        block_seen = seen[np.ix_(rows, cols)]
        pair_row, pair_col = np.nonzero(~block_seen)
        p = np.full(block_seen.shape, np.nan)
        p[pair_row, pair_col] = _probabilities(
            probability, users[rows][pair_row], catalog.movie_ids[cols][pair_col]
        )
        block_scores = np.where(block_seen, -np.inf, catalog.propensity[cols] * p)
        scores[np.ix_(rows, cols)] = block_scores
        probs[np.ix_(rows, cols)] = p
        done += len(cols)
        block *= 2
        if done >= n_movies:
            break
        kth = _kth_largest(scores[rows], k)
        # Keep going while an unscored movie (propensity <= the next one's) could beat or tie.
        active[rows] = kth <= catalog.propensity[catalog.order[done]]
    return scores, probs


def _kth_largest(scores: np.ndarray, k: int) -> np.ndarray:
    if k > scores.shape[1]:
        return np.full(scores.shape[0], -np.inf)
    return -np.partition(-scores, k - 1, axis=1)[:, k - 1]


def rank_by_score(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each user's k highest-scored rows with a 1-based rank (ties: lower movieId first).

    :param frame: rows with userId, movieId and score.
    :param k: list length.
    """
    k = check_k(k)
    ordered = frame.sort_values(["userId", "score", "movieId"], ascending=[True, False, True])
    ordered = ordered.assign(rank=ordered.groupby("userId").cumcount() + 1)
    return ordered[ordered["rank"] <= k].reset_index(drop=True)


def ranking_metrics(
    recommendations: pd.DataFrame, relevant: pd.DataFrame, *, k: int, catalog_size: int
) -> dict[str, float]:
    """precision@k, recall@k, ndcg@k (means over users with a relevant item) and coverage@k.

    :param recommendations: userId, movieId, rank (1-based); rows with rank > k are ignored.
    :param relevant: the (userId, movieId) pairs that count as hits.
    :param k: the cut-off.
    :param catalog_size: number of recommendable movies (coverage's denominator).
    """
    k = check_k(k)
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size}")
    for name, frame, columns in (
        ("recommendations", recommendations, ("userId", "movieId", "rank")),
        ("relevant", relevant, ("userId", "movieId")),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} is missing column(s) {missing}; got {list(frame.columns)}")
    top = recommendations[recommendations["rank"] <= k]
    if top.duplicated(["userId", "movieId"]).any() or top.duplicated(["userId", "rank"]).any():
        raise ValueError("recommendations repeat a movie or a rank within a user's list")
    relevant = relevant[["userId", "movieId"]].drop_duplicates()
    if len(relevant) == 0:
        raise ValueError("no user has a relevant item: ranking metrics are undefined")
    n_relevant = relevant.groupby("userId").size()
    hits = top.merge(relevant, on=["userId", "movieId"], how="inner")
    gains = 1.0 / np.log2(hits["rank"].to_numpy(dtype=np.float64) + 1.0)
    per_user = pd.DataFrame({"userId": hits["userId"].to_numpy(), "hit": 1.0, "gain": gains})
    per_user = per_user.groupby("userId")[["hit", "gain"]].sum().reindex(n_relevant.index, fill_value=0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    ideal = discounts[np.minimum(n_relevant.to_numpy(), k) - 1]
    return {
        f"precision_at_{k}": float((per_user["hit"] / k).mean()),
        f"recall_at_{k}": float((per_user["hit"] / n_relevant).mean()),
        f"ndcg_at_{k}": float((per_user["gain"].to_numpy() / ideal).mean()),
        f"coverage_at_{k}": float(top["movieId"].nunique() / catalog_size),
    }
