"""The torch model: determinism, early stopping, unknown ids, pickling, and learned tastes."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from include.recommender.fitting import fit_model
from include.recommender.pyfunc import TorchRecommenderModel
from include.recommender.snapshot import temporal_split
from include.recommender.synthetic import generate_movielens
from include.recommender.torch_model import train_network

FAST = {"epochs": 3, "embedding_dim": 8, "hidden_size": 16}


@pytest.fixture(scope="module")
def tiny():
    data = generate_movielens(n_users=60, n_movies=200, n_ratings=4000, seed=3)
    train, _ = temporal_split(data.ratings, 0.2)
    return data, train


def test_same_seed_gives_identical_weights_and_history(tiny):
    data, train = tiny
    _, first = train_network(train, data.movies, FAST)
    _, second = train_network(train, data.movies, FAST)
    _, other = train_network(train, data.movies, {**FAST, "seed": 7})
    state, again = first.network.state_dict(), second.network.state_dict()
    assert all(torch.equal(state[name], again[name]) for name in state)
    assert first.history == second.history
    other_state = other.network.state_dict()
    assert not torch.equal(state["user_embedding.weight"], other_state["user_embedding.weight"])


def test_training_leaves_the_callers_rng_and_threads_alone(tiny):
    data, train = tiny
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_network(train, data.movies, {**FAST, "epochs": 1})
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_early_stopping_keeps_the_best_epoch(tiny):
    data, train = tiny
    # A high learning rate overfits 3,000 ratings within a few epochs.
    _, trained = train_network(
        train, data.movies, {**FAST, "epochs": 60, "patience": 2, "learning_rate": 0.05}
    )
    history = trained.history
    run = len(history["val_loss"])
    assert len(history["train_loss"]) == len(history["val_accuracy"]) == run
    assert run < 60
    assert trained.best_epoch == int(np.argmin(history["val_loss"])) + 1
    assert run - trained.best_epoch == 2  # stopped after `patience` epochs without improvement
    assert all(0.0 <= a <= 1.0 for a in history["val_accuracy"])


def test_fitted_torch_model_scores_unknown_ids_and_pickles_without_the_network(tiny, tmp_path):
    data, train = tiny
    fitted = fit_model("torch_ncf", FAST, train, data.movies, tmp_path)
    model = fitted.python_model
    assert isinstance(model, TorchRecommenderModel)
    assert (tmp_path / "weights.pt").exists()
    assert set(fitted.curves) == {"train_loss", "val_loss", "val_accuracy"}
    assert fitted.packages == ("torch",)
    pairs = pd.DataFrame({"userId": [1, 10**9, 1], "movieId": [data.movies["movieId"].iloc[0], 5, 10**9]})
    proba = model.predict(None, pairs)
    assert proba.shape == (3,) and np.all((proba > 0) & (proba < 1))

    restored = pickle.loads(pickle.dumps(model))
    assert restored._network is None
    with pytest.raises(RuntimeError, match="no weights"):
        restored.predict(None, pairs)


def _two_taste_data(seed: int = 0):
    """40 comedies and 40 horror films; odd users love comedy and hate horror, even users the
    reverse. Each user rates 12 of each genre, so both genres have unseen titles left."""
    rng = np.random.default_rng(seed)
    comedies, horrors = np.arange(1, 41), np.arange(41, 81)
    movies = pd.DataFrame(
        {
            "movieId": np.concatenate([comedies, horrors]),
            "title": [f"m{i}" for i in range(1, 81)],
            "genres": ["Comedy"] * 40 + ["Horror"] * 40,
        }
    )
    rows = []
    for user in range(1, 61):
        loves_comedy = user % 2 == 1
        for genre, ids in (("comedy", comedies), ("horror", horrors)):
            liked = (genre == "comedy") == loves_comedy
            for movie in rng.choice(ids, 12, replace=False):
                rating = rng.choice([4.5, 5.0]) if liked else rng.choice([1.0, 1.5, 2.0])
                timestamp = int(rng.integers(1_700_000_000, 1_710_000_000))
                rows.append((user, int(movie), float(rating), timestamp))
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    return ratings, movies, comedies, horrors


def test_ranks_a_users_preferred_genre_above_the_disliked_one(tmp_path):
    ratings, movies, comedies, horrors = _two_taste_data()
    fitted = fit_model("torch_ncf", {"epochs": 30, "patience": 5}, ratings, movies, tmp_path)
    model = fitted.python_model
    for user, loved, hated in ((1, comedies, horrors), (2, horrors, comedies)):
        seen = set(ratings.loc[ratings["userId"] == user, "movieId"])
        unseen_loved = [m for m in loved if m not in seen]
        unseen_hated = [m for m in hated if m not in seen]
        p_loved = model.pair_probability(np.full(len(unseen_loved), user), np.array(unseen_loved))
        p_hated = model.pair_probability(np.full(len(unseen_hated), user), np.array(unseen_hated))
        assert p_loved.min() > p_hated.max(), (user, p_loved.min(), p_hated.max())
        top = model.recommend(np.array([user]), k=5)
        assert set(top["movieId"]) <= set(unseen_loved)
