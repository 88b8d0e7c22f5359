"""Deterministic synthetic MovieLens data calibrated to ml-latest-small.

Generative model. Each user has a bias, 8 latent factors and a taste per genre; each movie has
a quality bias (partly tied to its popularity), factors and its genres. Their sum is the
noise-free expected rating (the oracle); an observed rating is that plus per-user Gaussian noise,
clipped to 0.5..5.0 and rounded to half stars (or to whole stars, for the share of ratings given
by whole-star habits). Which movies a user rates follows popularity (ml-small's rating-count
curve; light raters stick closer to the head) and, mildly, the user's own expected rating, so
popularity and selection carry signal as in real data. Every movie gets at least one rating
(when n_ratings >= 4 * n_movies).
Timestamps fall in per-user activity windows inside start..end (end exclusive).

Calibration targets (ml-latest-small) -> what the defaults give (seed 42; seeds 5, 7, 123 agree
within the ranges noted):

- ratings, users, movies: 100,836, 610, 9,742 -> the same, exactly.
- mean rating, std: 3.50, 1.04 -> 3.51, 1.05 (other seeds 3.52-3.54, 1.03-1.04; the user bias is
  standardised over ratings, so a few heavy raters cannot move these much).
- share of ratings >= 4.0 (the downstream label): 48.2% -> 48.8% (48.7-49.1%).
- rating distribution in %, 0.5 .. 5.0: 1.4 2.8 1.8 7.5 5.5 19.9 13.0 26.6 8.5 13.1
  -> 1.2 2.5 2.0 7.8 6.1 20.4 11.2 26.4 8.1 14.3; most common values 4.0, 3.0, 5.0, 3.5 in both.
- ratings per user, min / 25% / median / 75% / max: 20 / 35 / 70.5 / 168 / 2,698
  -> 20 / 38 / 69.5 / 156 / 2,701.
- movies with exactly 1 rating: ~3,450 -> 3,483 (3,480-3,560); with <= 2 ratings: ~49% -> 47%;
  median ratings per movie 3 -> 3; most-rated movie 329 -> 359 (295-478).
- movies without any rating: 18 -> 0 (every movie gets one rating first).
- popularity informs quality: corr(log count, movie mean) ~0.29.

Learnability (the noise calibration). On a time-based 80/20 split (train = past), a
gradient-boosting model on out-of-fold user and movie smoothed means, counts and user-genre
affinity (include/recommender/features.py when this was tuned) reaches holdout accuracy
0.78-0.79 (AUC ~0.87; seeds 7 and 123: 0.776); the Bayes-optimal classifier
(``SyntheticOracle.label_probability``) reaches ~0.85. Real ml-small should be harder for the
same features, mainly because most of its users rate in one burst, so a time-based holdout is
dominated by users without history; here activity windows last ~6 months (median) and 80-90% of
holdout ratings come from users seen in training.

Cost: the default size generates in ~0.5 s (a dense Gumbel top-k per chunk of users, never per
rating). Large grids draw the same law sparsely (synthetic_sampling): the ml-32m shape (32,000,204
ratings, 200,948 users, 87,585 movies) in ~150 s at peak RSS 4.5 GiB on 2 busy cores
(docs/benchmarks.md); synthetic_cache keeps the result for later loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from include.recommender.schema import MOVIES_COLUMNS, RATINGS_COLUMNS, MovieLensData
from include.recommender.synthetic_sampling import choose_pairs_sparse

# The 19 MovieLens genres with the share of ml-latest-small movies carrying each (count / 9742).
GENRE_SHARES = {
    "Action": 1828 / 9742,
    "Adventure": 1263 / 9742,
    "Animation": 611 / 9742,
    "Children": 664 / 9742,
    "Comedy": 3756 / 9742,
    "Crime": 1199 / 9742,
    "Documentary": 440 / 9742,
    "Drama": 4361 / 9742,
    "Fantasy": 779 / 9742,
    "Film-Noir": 87 / 9742,
    "Horror": 978 / 9742,
    "IMAX": 158 / 9742,
    "Musical": 334 / 9742,
    "Mystery": 573 / 9742,
    "Romance": 1596 / 9742,
    "Sci-Fi": 980 / 9742,
    "Thriller": 1894 / 9742,
    "War": 382 / 9742,
    "Western": 167 / 9742,
}
GENRES = tuple(GENRE_SHARES)
NO_GENRES = "(no genres listed)"

MIN_RATINGS_PER_USER = 20
# Bump whenever the same arguments would give other data: it keys synthetic_cache's files.
# 2: sizes beyond _DENSE_MAX_CELLS draw their picks sparsely (same law, other random stream).
GENERATOR_VERSION = "2"

# Generative parameters, tuned against the figures in the module docstring.
_GLOBAL_MEAN = 3.35  # latent rating of an average user on an average movie
_USER_BIAS_SD = 0.6  # spread of user biases, measured over ratings
_MOVIE_BIAS_SD = 0.5
_POPULARITY_QUALITY = 0.2  # movie bias per standard deviation of log popularity
_DUD_SHARE, _DUD_SCALE = 0.3, 1.1  # share of movies with an extra exponential penalty, its mean
_HARSH_SHARE, _HARSH_SCALE = 0.2, 1.5  # the same for users, before standardising
_N_FACTORS = 8
_FACTOR_SD = 0.05  # interaction sd sqrt(8) * 0.05 ~ 0.14, small next to the biases
_TASTE_SD = 0.4  # per-genre user taste; a movie averages it over its genres
_NOISE_SD = 0.45  # median per-user noise sd; sets how learnable the >= 4.0 label is
_WHOLE_STAR_USERS = 0.1  # share of users who never give half stars
# ml-small's movies by rank (as a share of all movies) and their rating counts, approximately:
# the head (Forrest Gump 329, rank 10 ~220), >= 100 ratings for ~140 movies, >= 10 for ~2,270,
# and one third rated exactly once.
_POPULARITY_KNOTS = (
    (1 / 9742, 329.0),
    (10 / 9742, 220.0),
    (138 / 9742, 100.0),
    (450 / 9742, 50.0),
    (2269 / 9742, 10.0),
    (3208 / 9742, 6.0),
    (4173 / 9742, 4.0),
    (4980 / 9742, 3.0),
    (6278 / 9742, 2.0),
    (1.0, 1.0),
)
_TAIL_FLOOR = 0.02  # expected extra ratings of the least popular movies
_PREFERENCE_WEIGHT = 0.5  # log-odds of picking a movie per star of expected rating
_POPULARITY_FOCUS = 0.3  # how much harder users below _FOCUS_REFERENCE ratings favour the head
_FOCUS_REFERENCE = 400
_ACTIVITY_SD = 1.5  # lognormal sd of ratings per user above the floor of 20
_ACTIVITY_Z_MAX = 2.65  # caps the heaviest rater near ml-small's 2,698
_WINDOW_MEDIAN_DAYS = 180.0  # per-user activity window, lognormal
_WINDOW_SD = 1.0
# Bounds the (users x movies) work matrix of one chunk, so memory stays flat for big inputs.
_CHUNK_CELLS = 1_500_000
# Up to this many (user, movie) cells the picks are drawn densely (~2 s); beyond, sparsely.
_DENSE_MAX_CELLS = 20_000_000


@dataclass(frozen=True, eq=False)
class SyntheticOracle:
    """The generator's truth: the noise-free expected rating of any (user, movie) pair.

    :param user_ids: sorted userIds the oracle knows.
    :param movie_ids: sorted movieIds the oracle knows.
    :param movie_log_popularity: per movie, the log popularity weight that drives which movies
        get rated (None for oracles built without it).
    :param user_focus: per user, how strongly the user's picks follow popularity.
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    global_mean: float
    user_bias: np.ndarray
    movie_bias: np.ndarray
    user_factors: np.ndarray
    movie_factors: np.ndarray
    user_tastes: np.ndarray
    movie_genres: np.ndarray
    noise_sd: np.ndarray
    half_star_share: np.ndarray
    movie_log_popularity: np.ndarray | None = None
    user_focus: np.ndarray | None = None

    def _index(self, ids: np.ndarray, known: np.ndarray, kind: str) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            # Float ids are accepted only when they hold whole numbers.
            whole = ids.dtype.kind == "f" and np.all(np.isfinite(ids) & (ids == np.round(ids)))
            if ids.size and not whole:
                raise ValueError(f"{kind} ids must be integers, got dtype {ids.dtype}")
            ids = ids.astype(np.int64)
        pos = np.clip(np.searchsorted(known, ids), 0, len(known) - 1)
        unknown = known[pos] != ids
        if unknown.any():
            examples = np.unique(ids[unknown])[:5].tolist()
            raise ValueError(f"unknown {kind} id(s) ({int(unknown.sum())}), e.g. {examples}")
        return pos

    def _latent(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the unclipped latent rating of each pair and the pairs' user and movie indexes."""
        users = self._index(user_ids, self.user_ids, "user")
        movies = self._index(movie_ids, self.movie_ids, "movie")
        if users.shape != movies.shape:
            raise ValueError(f"user_ids shape {users.shape} != movie_ids shape {movies.shape}")
        latent = (
            self.global_mean
            + self.user_bias[users]
            + self.movie_bias[movies]
            + np.einsum("ij,ij->i", self.user_factors[users], self.movie_factors[movies])
            + np.einsum("ij,ij->i", self.user_tastes[users], self.movie_genres[movies])
        )
        return latent, users, movies

    def expected_rating(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Return the noise-free rating of each pair, clipped to 0.5..5.0.

        :param user_ids: userIds, same shape as movie_ids.
        :param movie_ids: movieIds.
        """
        latent = self._latent(np.ravel(user_ids), np.ravel(movie_ids))[0]
        return np.clip(latent, 0.5, 5.0).reshape(np.shape(user_ids))

    def label_probability(
        self, user_ids: np.ndarray, movie_ids: np.ndarray, threshold: float = 4.0
    ) -> np.ndarray:
        """Return P(observed rating >= threshold) for each pair under the generator's noise.

        :param user_ids: userIds, same shape as movie_ids.
        :param movie_ids: movieIds.
        :param threshold: rating threshold (a half-star value).
        """
        latent, users, _ = self._latent(np.ravel(user_ids), np.ravel(movie_ids))
        return self._label_probability(latent, users, threshold).reshape(np.shape(user_ids))

    def _label_probability(self, latent: np.ndarray, users: np.ndarray, threshold: float) -> np.ndarray:
        sd = self.noise_sd[users]
        half = self.half_star_share[users]
        # Whole-star raters reach t when the noisy value rounds up to ceil(t); half-star raters
        # when it rounds to t. Clipping to 0.5..5.0 never moves a value across these cut points.
        whole_cut = max(math.ceil(threshold), 1) - 0.5
        half_cut = threshold - 0.25
        p_whole = _normal_sf((whole_cut - latent) / sd) if threshold > 1.0 else 1.0
        p_half = _normal_sf((half_cut - latent) / sd) if threshold > 0.5 else 1.0
        return (1.0 - half) * p_whole + half * p_half

    def watch_and_like_score(
        self, user_ids: np.ndarray, movie_ids: np.ndarray, threshold: float = 4.0
    ) -> np.ndarray:
        """Return, up to a per-user factor, P(the user rates the movie and rates it >= threshold).

        The generator picks a user's movies with weight exp(focus * log popularity +
        preference * latent rating) and rates them independently of that choice, so this
        product of the pick weight and ``label_probability`` ranks a user's unrated movies as
        well as anything can (compare scores within one user only: the scale varies by user).

        :param user_ids: userIds, same shape as movie_ids.
        :param movie_ids: movieIds.
        :param threshold: rating threshold (a half-star value).
        """
        self._check_popularity_weights()
        # One latent computation for both factors: it dominates the cost of ranking a catalog.
        latent, users, movies = self._latent(np.ravel(user_ids), np.ravel(movie_ids))
        return self._watch_and_like(latent, users, movies, threshold).reshape(np.shape(user_ids))

    def watch_and_like_grid(
        self, user_ids: np.ndarray, movie_ids: np.ndarray, threshold: float = 4.0
    ) -> np.ndarray:
        """``watch_and_like_score`` of every (user, movie) pair of the two lists, as a grid.

        Two matrix products over the factors instead of gathering them pair by pair: the same
        scores (to rounding) at a small fraction of the cost, which is what ranking a whole
        catalog for many users needs.

        :param user_ids: distinct userIds (the rows).
        :param movie_ids: movieIds (the columns).
        :param threshold: rating threshold (a half-star value).
        :return: array of shape (len(user_ids), len(movie_ids)).
        """
        self._check_popularity_weights()
        users = self._index(np.ravel(user_ids), self.user_ids, "user")[:, None]
        movies = self._index(np.ravel(movie_ids), self.movie_ids, "movie")[None, :]
        rows, columns = users[:, 0], movies[0]
        latent = (
            self.global_mean
            + self.user_bias[users]
            + self.movie_bias[movies]
            + self.user_factors[rows] @ self.movie_factors[columns].T
            + self.user_tastes[rows] @ self.movie_genres[columns].T
        )
        return self._watch_and_like(latent, users, movies, threshold)

    def _check_popularity_weights(self) -> None:
        if self.movie_log_popularity is None or self.user_focus is None:
            raise ValueError("this oracle was built without the generator's popularity weights")

    def _watch_and_like(self, latent: np.ndarray, users: np.ndarray, movies: np.ndarray, threshold: float) -> np.ndarray:
        """Pick weight x P(like) from latent ratings; users and movies index (or broadcast to) them."""
        pick = np.exp(
            self.user_focus[users] * self.movie_log_popularity[movies]
            + _PREFERENCE_WEIGHT * (latent - self.global_mean)
        )
        return pick * self._label_probability(latent, users, threshold)


def _popularity_focus(counts: np.ndarray) -> np.ndarray:
    """How strongly each user's picks follow popularity, from the user's number of ratings."""
    # Light raters stick to popular titles (MovieLens onboarding shows those first); heavy
    # raters dig into the tail.
    return 1.0 + _POPULARITY_FOCUS * np.log(np.maximum(_FOCUS_REFERENCE / counts, 1.0))


def _normal_sf(z: np.ndarray) -> np.ndarray:
    """Return the standard normal survival function."""
    # Imported here: scipy (a scikit-learn dependency) costs import time this module rarely needs.
    # Within 1 ulp of math.erfc, ~10x faster than np.vectorize over it at a catalog's size.
    from scipy.special import erfc

    return 0.5 * erfc(np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


def _check_sizes(n_users: int, n_movies: int, n_ratings: int) -> None:
    for name, value in (("n_users", n_users), ("n_movies", n_movies), ("n_ratings", n_ratings)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_ratings < n_users:
        raise ValueError(f"n_ratings={n_ratings} < n_users={n_users}: every user needs a rating")
    if n_ratings > n_users * n_movies:
        raise ValueError(
            f"n_ratings={n_ratings} > n_users*n_movies={n_users * n_movies}: "
            "more ratings than distinct (user, movie) pairs"
        )


def _time_bounds(start: str, end: str) -> tuple[int, int]:
    try:
        lo = pd.Timestamp(start, tz="UTC")
        hi = pd.Timestamp(end, tz="UTC")
    except ValueError as exc:
        raise ValueError(f"start={start!r}/end={end!r} are not dates: {exc}") from exc
    if hi <= lo:
        raise ValueError(f"end={end!r} must be after start={start!r}")
    return int(lo.timestamp()), int(hi.timestamp())


def _movies(rng: np.random.Generator, n_movies: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the movies table and its (n_movies, 19) genre indicator matrix."""
    movie_ids = np.sort(rng.choice(np.arange(1, 20 * n_movies + 1), n_movies, replace=False))
    shares = np.array(list(GENRE_SHARES.values()))
    genres = rng.random((n_movies, len(GENRES))) < shares
    # ml-small: ~0.35% of movies carry no genre; the other genre-less draws get one by share.
    empty = ~genres.any(axis=1)
    keep_empty = empty & (rng.random(n_movies) < 0.06)
    fill = empty & ~keep_empty
    genres[np.flatnonzero(fill), rng.choice(len(GENRES), fill.sum(), p=shares / shares.sum())] = True
    names = np.array(GENRES)
    labels = ["|".join(names[row]) if row.any() else NO_GENRES for row in genres]
    # Release years skew recent, like ml-small's (median ~1999).
    years = np.clip(np.round(2018 - rng.gamma(1.6, 12.0, n_movies)), 1902, 2018).astype(int)
    titles = [f"Synthetic Movie {mid} ({year})" for mid, year in zip(movie_ids, years)]
    movies = pd.DataFrame({"movieId": movie_ids.astype(np.int64), "title": titles, "genres": labels})
    return movies, genres


def _popularity_curve(n_movies: int) -> np.ndarray:
    """Return log popularity weights by rank (0 = most popular) shaped like ml-small's counts."""
    share = (np.arange(n_movies) + 1) / n_movies
    knots_x = np.log([x for x, _ in _POPULARITY_KNOTS])
    # Counts beyond the one rating every movie is guaranteed; the floor keeps the tail > 0.
    knots_y = np.log([max(c - 1.0, _TAIL_FLOOR) for _, c in _POPULARITY_KNOTS])
    return np.interp(np.log(share), knots_x, knots_y)


def _skew(rng: np.random.Generator, n: int, share: float, scale: float) -> np.ndarray:
    """Return exponential penalties for a random share of n items, zero for the rest."""
    return (rng.random(n) < share) * rng.exponential(scale, n)


def _user_counts(rng: np.random.Generator, n_users: int, n_movies: int, n_ratings: int) -> np.ndarray:
    """Return heavy-tailed ratings-per-user counts summing exactly to n_ratings."""
    floor = min(MIN_RATINGS_PER_USER, n_ratings // n_users, n_movies)
    # Stratified normal quantiles keep the shape stable across seeds; the cap trims the
    # lognormal tail, which is heavier than ml-small's (max ~2,700 ratings).
    u = (rng.permutation(n_users) + rng.random(n_users)) / n_users
    z = np.array([NormalDist().inv_cdf(min(max(p, 1e-9), 1 - 1e-9)) for p in u])
    weights = np.exp(_ACTIVITY_SD * np.minimum(z, _ACTIVITY_Z_MAX))
    counts = np.full(n_users, floor, dtype=np.int64)
    extra = n_ratings - counts.sum()
    while extra > 0:
        room = n_movies - counts
        share = np.where(room > 0, weights, 0.0)
        add = np.minimum(np.floor(share / share.sum() * extra).astype(np.int64), room)
        if add.sum() == 0:
            # Hand out the last few ratings one each to the most active users with room.
            order = np.argsort(-share, kind="stable")[:extra]
            add = np.zeros(n_users, dtype=np.int64)
            add[order[room[order] > 0]] = 1
        counts += add
        extra = n_ratings - counts.sum()
    return counts


def _round_ratings(x: np.ndarray, half_star: np.ndarray) -> np.ndarray:
    """Round to half stars (0.5..5.0) or whole stars (1..5) per rating."""
    halves = np.clip(np.floor(2.0 * x + 0.5) / 2.0, 0.5, 5.0)
    wholes = np.clip(np.floor(x + 0.5), 1.0, 5.0)
    return np.where(half_star, halves, wholes)


def generate_movielens(
    *,
    n_users: int = 610,
    n_movies: int = 9742,
    n_ratings: int = 100_836,
    seed: int = 42,
    start: str = "2024-01-01",
    end: str = "2025-12-31",
    ratings: pd.DataFrame | None = None,
) -> MovieLensData:
    """Generate MovieLens-format ratings and movies, deterministic in all arguments.

    :param n_users: number of users (userIds 1..n_users).
    :param n_movies: number of movies (sparse movieIds, like ml-small's).
    :param n_ratings: exact number of ratings; no (userId, movieId) pair repeats.
    :param seed: random seed; the same arguments always give identical frames.
    :param start: first possible rating date (UTC).
    :param end: last possible rating date (UTC).
    :param ratings: the ratings an earlier call with the same arguments returned (e.g. from
        synthetic_cache): the movies and oracle, cheap to draw, are drawn again around them and
        the ratings, most of the cost at scale, are not.
    """
    _check_sizes(n_users, n_movies, n_ratings)
    t_start, t_end = _time_bounds(start, end)
    rng = np.random.default_rng(seed)
    movies, oracle, counts = _draw_world(rng, n_users, n_movies, n_ratings)
    if ratings is None:
        ratings = _draw_ratings(rng, oracle, counts, t_start, t_end)
    source = (
        f"synthetic:n_users={n_users},n_movies={n_movies},n_ratings={n_ratings},"
        f"seed={seed},start={start},end={end}"
    )
    return MovieLensData(ratings=ratings, movies=movies[list(MOVIES_COLUMNS)], source=source, oracle=oracle)


def _draw_world(
    rng: np.random.Generator, n_users: int, n_movies: int, n_ratings: int
) -> tuple[pd.DataFrame, SyntheticOracle, np.ndarray]:
    """Return the movies table, the oracle and the ratings per user, before any rating is drawn."""
    movies, genres = _movies(rng, n_movies)
    genre_counts = genres.sum(axis=1, keepdims=True)
    movie_genres = (genres / np.maximum(genre_counts, 1)).astype(np.float64)

    # Popularity follows ml-small's rating-count curve over a random ranking; popular movies are
    # also a bit better, so popularity carries signal as in real data.
    log_pop = _popularity_curve(n_movies)[rng.permutation(n_movies)]
    pop_z = (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
    # Left-skewed like real ratings: a share of movies are duds and a share of users are harsh.
    movie_bias = (
        _MOVIE_BIAS_SD * rng.standard_normal(n_movies)
        + _POPULARITY_QUALITY * pop_z
        - _skew(rng, n_movies, _DUD_SHARE, _DUD_SCALE)
    )
    movie_factors = rng.normal(0.0, _FACTOR_SD, (n_movies, _N_FACTORS))

    counts = _user_counts(rng, n_users, n_movies, n_ratings)
    # Standardised over ratings, not users: a few heavy raters would otherwise move the overall
    # mean by +-0.2 and the spread by +-0.1 from seed to seed.
    raw_bias = rng.standard_normal(n_users) - _skew(rng, n_users, _HARSH_SHARE, _HARSH_SCALE)
    centred = raw_bias - np.average(raw_bias, weights=counts)
    user_bias = _USER_BIAS_SD * centred / np.sqrt(np.average(centred**2, weights=counts))
    user_factors = rng.normal(0.0, 1.0, (n_users, _N_FACTORS))
    user_tastes = _TASTE_SD * rng.standard_normal((n_users, len(GENRES)))
    noise_sd = _NOISE_SD * np.exp(0.2 * rng.standard_normal(n_users))
    # Some users only ever give whole stars, which makes 4.0 and 3.0 the most common values.
    half_star_share = np.where(rng.random(n_users) < _WHOLE_STAR_USERS, 0.0, rng.uniform(0.3, 1.0, n_users))

    oracle = SyntheticOracle(
        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
        movie_ids=movies["movieId"].to_numpy(),
        global_mean=_GLOBAL_MEAN,
        user_bias=user_bias,
        movie_bias=movie_bias,
        user_factors=user_factors,
        movie_factors=movie_factors,
        user_tastes=user_tastes,
        movie_genres=movie_genres,
        noise_sd=noise_sd,
        half_star_share=half_star_share,
        movie_log_popularity=log_pop,
        user_focus=_popularity_focus(counts),
    )
    return movies, oracle, counts


def _draw_ratings(
    rng: np.random.Generator, oracle: SyntheticOracle, counts: np.ndarray, t_start: int, t_end: int
) -> pd.DataFrame:
    """Draw which movies each user rates, the ratings and their times, sorted by user and movie."""
    users, items, latent = _choose_pairs(rng, oracle, counts, oracle.movie_log_popularity)
    noisy = latent + oracle.noise_sd[users] * rng.standard_normal(len(users))
    rating = _round_ratings(noisy, rng.random(len(users)) < oracle.half_star_share[users])
    timestamp = _timestamps(rng, users, counts, t_start, t_end)
    # Sorted by (userId, movieId): movie ids ascend with the movie index, and pairs are unique.
    order = np.argsort(users * len(oracle.movie_ids) + items)
    return pd.DataFrame(
        {
            "userId": oracle.user_ids[users[order]],
            "movieId": oracle.movie_ids[items[order]],
            "rating": rating[order].astype(np.float64),
            "timestamp": timestamp[order],
        },
        columns=list(RATINGS_COLUMNS),
    )


def _choose_pairs(
    rng: np.random.Generator, oracle: SyntheticOracle, counts: np.ndarray, log_pop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick counts[u] distinct movies per user; return (user index, movie index, latent rating).

    Every movie (or, for tiny n_ratings, n_ratings // 4 of them) first gets one rating from a
    random rating slot, as ml-small lists only rated movies; the remaining slots are drawn
    without replacement with weight popularity * exp(preference * latent rating): densely for
    small grids (the draws of earlier versions, bit for bit), else by rejection sampling
    (synthetic_sampling, the same law at a cost in proportion to the ratings).
    """
    n_users, n_movies = len(counts), len(log_pop)
    n_ratings = int(counts.sum())
    n_forced = min(n_movies, n_ratings // 4)
    slots = np.repeat(np.arange(n_users), counts)
    forced_users = slots[rng.choice(n_ratings, n_forced, replace=False)]
    forced_movies = rng.choice(n_movies, n_forced, replace=False)
    remaining = counts - np.bincount(forced_users, minlength=n_users)
    # Sequential draws slow down once a user needs a large share of the catalog.
    if n_users * n_movies <= _DENSE_MAX_CELLS or counts.max() * 4 > n_movies:
        users, movies = _choose_dense(rng, oracle, counts, log_pop, remaining, (forced_users, forced_movies))
        users, movies = np.concatenate([forced_users, users]), np.concatenate([forced_movies, movies])
        return users, movies, oracle._latent(oracle.user_ids[users], oracle.movie_ids[movies])[0]
    users, movies, interaction = choose_pairs_sparse(
        rng, oracle, remaining, log_pop, (forced_users, forced_movies), _PREFERENCE_WEIGHT
    )
    forced_latent = oracle._latent(oracle.user_ids[forced_users], oracle.movie_ids[forced_movies])[0]
    latent = oracle.global_mean + oracle.user_bias[users] + oracle.movie_bias[movies] + interaction
    return (
        np.concatenate([forced_users, users]),
        np.concatenate([forced_movies, movies]),
        np.concatenate([forced_latent, latent]),
    )


def _choose_dense(rng, oracle, counts, log_pop, remaining, forced) -> tuple[np.ndarray, np.ndarray]:
    """Draw the remaining picks by a Gumbel (exponential race) top-k over every movie."""
    n_users, n_movies = len(counts), len(log_pop)
    forced_users, forced_movies = forced
    # Users in order of how many picks they need, so each chunk's top-k stays small.
    order = np.argsort(remaining, kind="stable")
    row_of = np.empty(n_users, dtype=np.int64)
    row_of[order] = np.arange(n_users)
    forced_rows = row_of[forced_users]
    rows_per_chunk = max(1, _CHUNK_CELLS // n_movies)
    picked_users, picked_movies = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for lo in range(0, n_users, rows_per_chunk):
        chunk = order[lo : lo + rows_per_chunk]
        need = remaining[chunk]
        k_max = int(need.max())
        if k_max == 0:
            continue
        latent = (
            oracle.user_bias[chunk, None]
            + oracle.user_factors[chunk] @ oracle.movie_factors.T
            + oracle.user_tastes[chunk] @ oracle.movie_genres.T
            + oracle.movie_bias[None, :]
        )
        focus = _popularity_focus(counts[chunk])
        keys = (focus[:, None] * log_pop + _PREFERENCE_WEIGHT * latent).astype(np.float32)
        keys -= np.log(np.maximum(rng.standard_exponential(keys.shape, dtype=np.float32), 1e-30))
        in_chunk = (forced_rows >= lo) & (forced_rows < lo + len(chunk))
        keys[forced_rows[in_chunk] - lo, forced_movies[in_chunk]] = -np.inf
        if k_max < n_movies:
            top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]
        else:
            top = np.broadcast_to(np.arange(n_movies), keys.shape)
        top_keys = np.take_along_axis(keys, top, axis=1)
        ranked = np.take_along_axis(top, np.argsort(-top_keys, axis=1, kind="stable"), axis=1)
        take = np.arange(k_max)[None, :] < need[:, None]
        picked_users.append(np.broadcast_to(chunk[:, None], take.shape)[take])
        picked_movies.append(ranked[take])
    return np.concatenate(picked_users), np.concatenate(picked_movies)


def _timestamps(
    rng: np.random.Generator, users: np.ndarray, counts: np.ndarray, t_start: int, t_end: int
) -> np.ndarray:
    """Spread each user's ratings uniformly over a personal activity window inside the span."""
    span = t_end - t_start
    n_users = len(counts)
    # Windows last ~6 months (median), longer for heavy raters; see the module docstring for
    # why they are longer than ml-small's mostly one-session users.
    days = _WINDOW_MEDIAN_DAYS * np.exp(_WINDOW_SD * rng.standard_normal(n_users))
    days *= np.sqrt(counts / np.median(counts))
    window = np.minimum(days * 86_400.0, span)
    begin = t_start + rng.random(n_users) * (span - window)
    ts = begin[users] + rng.random(len(users)) * window[users]
    return np.floor(ts).astype(np.int64)


def write_movielens(data: MovieLensData, directory: str | Path) -> Path:
    """Write ratings.csv and movies.csv in MovieLens format; return the directory.

    :param data: the data to write.
    :param directory: target directory, created if missing.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    data.ratings[list(RATINGS_COLUMNS)].to_csv(out / "ratings.csv", index=False)
    data.movies[list(MOVIES_COLUMNS)].to_csv(out / "movies.csv", index=False)
    return out
