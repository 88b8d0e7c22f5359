"""Which movies each synthetic user rates, at any size: sequential draws by rejection sampling.

The generator picks a user's movies without replacement with weight
``exp(focus_u * log_pop_m + preference * latent_um)``. For small catalogs it draws that exactly with
a dense (users x movies) Gumbel top-k (synthetic._choose_dense). Here the same distribution is
drawn without touching every (user, movie) cell, so MovieLens-32M sizes (200k users x 87k movies)
cost time in proportion to the ratings:

- the weight splits into a movie part, ``focus_u * log_pop_m + preference * movie_bias_m`` (one
  cumulative table per distinct focus value), and a bounded interaction part,
  ``preference * (user_factors . movie_factors + user_tastes . movie_genres)``;
- proposals drawn i.i.d. from the movie part and accepted with probability
  ``exp(preference * (interaction - bound_u))`` are i.i.d. draws from the full weight;
- keeping each user's first ``need`` distinct accepted movies (the movies forced on the user
  excluded) is sampling without replacement, the same law as the Gumbel top-k.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

# Picks per block of users: per-proposal arrays stay ~50 MB and the block's taste table (users x
# genre combinations) at most ~250 MB, for blocks of 20-rating users at ml-32m's 5,078 combinations.
_PICKS_PER_BLOCK = 250_000
# Proposals per missing pick in a user's first round; later rounds top up the few still short.
_FIRST_ROUND_PROPOSALS = 3.0
# float32 interactions may exceed the float64 bound by rounding; this keeps the ratio <= 1.
_BOUND_SLACK = 1e-4


def choose_pairs_sparse(
    rng: np.random.Generator,
    oracle,
    need: np.ndarray,
    log_pop: np.ndarray,
    forced: tuple[np.ndarray, np.ndarray],
    preference: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (user index, movie index, interaction) of need[u] distinct new picks per user.

    The interaction (float32) is the pair's latent rating less the user and movie biases.

    :param rng: the generator's random stream (consumed deterministically).
    :param oracle: synthetic.SyntheticOracle with user_focus set.
    :param need: picks per user index (after the forced ones).
    :param log_pop: per movie index, the log popularity weight.
    :param forced: (user index, movie index) pairs already given; never picked again.
    :param preference: log-odds of picking a movie per star of its latent rating.
    """
    # Hundreds of small matmuls: BLAS threads cost far more in wake-ups than they save.
    with threadpool_limits(limits=1, user_api="blas"):
        picks = _draw_by_focus(rng, oracle, need, log_pop, _Interactions(oracle, forced, len(log_pop)), preference)
    if not picks:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    return tuple(np.concatenate(column) for column in zip(*picks))


def _draw_by_focus(rng, oracle, need, log_pop, world, preference) -> list[tuple[np.ndarray, ...]]:
    """Draw the picks of each group of users sharing a focus value, one block at a time."""
    focus_values, focus_group = np.unique(oracle.user_focus, return_inverse=True)
    picks = []
    for group, focus in enumerate(focus_values):
        users = np.flatnonzero((focus_group == group) & (need > 0))
        if not len(users):
            continue
        weights = np.exp(focus * log_pop + preference * oracle.movie_bias - focus * log_pop.max())
        cdf = np.cumsum(weights)
        for block in _blocks(users, need[users]):
            picks.append(_draw_distinct(rng, block, need[block], cdf, world, preference))
    return picks


class _Interactions:
    """Per-pair interaction (factors . factors + tastes . genres) and its per-user upper bound."""

    def __init__(self, oracle, forced: tuple[np.ndarray, np.ndarray], n_movies: int) -> None:
        self.n_movies = n_movies
        self.user_factors = oracle.user_factors.astype(np.float32)
        self.movie_factors = oracle.movie_factors.astype(np.float32)
        self.user_tastes = oracle.user_tastes.astype(np.float32)
        # Movies share few genre combinations, so a block's tastes . genres is one small matmul.
        combos, self.movie_combo = np.unique(oracle.movie_genres, axis=0, return_inverse=True)
        self.combos = combos.astype(np.float32)
        self.movie_combo = self.movie_combo.ravel()
        # Genre rows are averages (or all zero), so the taste part is at most max(taste, 0);
        # the factor part at most |user factors| * the longest movie factor vector.
        longest = np.linalg.norm(oracle.movie_factors, axis=1).max()
        self.bound = (
            np.linalg.norm(oracle.user_factors, axis=1) * longest
            + np.maximum(oracle.user_tastes.max(axis=1), 0.0)
            + _BOUND_SLACK
        ).astype(np.float32)
        self.forced_keys = np.sort(forced[0].astype(np.int64) * n_movies + forced[1])

    def of(self, users: np.ndarray, local: np.ndarray, movies: np.ndarray, tastes: np.ndarray) -> np.ndarray:
        factor = np.einsum("ij,ij->i", self.user_factors[users[local]], self.movie_factors[movies])
        return factor + tastes[local, self.movie_combo[movies]]

    def is_forced(self, keys: np.ndarray) -> np.ndarray:
        if not len(self.forced_keys):
            return np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(self.forced_keys, keys), len(self.forced_keys) - 1)
        return self.forced_keys[pos] == keys


def _blocks(users: np.ndarray, need: np.ndarray) -> list[np.ndarray]:
    """Split users into consecutive blocks of about _PICKS_PER_BLOCK picks each."""
    edges = np.searchsorted(np.cumsum(need), np.arange(_PICKS_PER_BLOCK, need.sum(), _PICKS_PER_BLOCK))
    return [block for block in np.split(users, np.unique(edges + 1)) if len(block)]


def _draw_distinct(rng, users, need, cdf, world: _Interactions, preference: float):
    """Draw each user's first need[i] distinct accepted movies; return (users, movies, interaction)."""
    n_movies = world.n_movies
    tastes = world.user_tastes[users] @ world.combos.T
    bound = world.bound[users]
    kept = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
    missing = need.astype(np.int64)
    while missing.sum() > 0:
        short = np.flatnonzero(missing > 0)
        local = np.repeat(short, np.ceil(missing[short] * _FIRST_ROUND_PROPOSALS).astype(np.int64) + 2)
        movies = np.minimum(np.searchsorted(cdf, rng.random(len(local)) * cdf[-1], side="right"), n_movies - 1)
        interaction = world.of(users, local, movies, tastes)
        accept = rng.random(len(local)) < np.exp(preference * (interaction - bound[local]))
        accept[accept] = ~world.is_forced(users[local[accept]].astype(np.int64) * n_movies + movies[accept])
        drawn = (local[accept], movies[accept], interaction[accept])
        kept = _first_distinct(*(np.concatenate(pair) for pair in zip(kept, drawn)), need, n_movies)
        missing = need - np.bincount(kept[0], minlength=len(users))
    return users[kept[0]], kept[1], kept[2]


def _first_distinct(local, movies, interaction, need, n_movies):
    """Keep, per user, the first need[i] distinct movies in stream order (kept ones come first)."""
    position = np.arange(len(local), dtype=np.int64)
    # One int64 sort finds first occurrences: (user, movie) high, stream position low.
    shift = max(int(len(local)).bit_length(), 1)
    by_pair = np.sort(((local * n_movies + movies) << shift) | position)
    pair = by_pair >> shift
    first = np.ones(len(pair), dtype=bool)
    first[1:] = pair[1:] != pair[:-1]
    survivors = by_pair[first] & ((1 << shift) - 1)
    # Back to stream order within each user: (user, position).
    order = np.sort((local[survivors] << shift) | survivors) & ((1 << shift) - 1)
    local, movies, interaction = local[order], movies[order], interaction[order]
    rank = np.arange(len(local)) - np.searchsorted(local, local)
    keep = rank < need[local]
    return local[keep], movies[keep], interaction[keep]
