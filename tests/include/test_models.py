"""Model types, hyperparameter validation and the pyfunc interface (in-process; the registry
round trip is in test_model_registry)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from include.recommender.features import FeatureTables, labels, out_of_fold_features
from include.recommender.models import (
    DEFAULT_HYPERPARAMETERS,
    DEFAULT_MODEL_TYPE,
    MODEL_TYPES,
    build_estimator,
    effective_hyperparameters,
)
from include.recommender.pyfunc import RecommenderModel
from include.recommender.ranking import CatalogIndex
from include.recommender.synthetic import generate_movielens


@pytest.fixture(scope="module", autouse=True)
def _single_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait; on a shared CI box that turns seconds
    into minutes. One thread keeps the tests' wall time stable."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def small_data():
    return generate_movielens(n_users=80, n_movies=300, n_ratings=6000, seed=5)


def test_model_types():
    assert set(MODEL_TYPES) == set(DEFAULT_HYPERPARAMETERS)
    assert DEFAULT_MODEL_TYPE == "hist_gradient_boosting"
    assert set(MODEL_TYPES) == {"hist_gradient_boosting", "logistic_regression", "torch_ncf", "popularity"}
    # The DAG's default choice is the first one.
    assert MODEL_TYPES[0] == DEFAULT_MODEL_TYPE


@pytest.mark.parametrize(
    ("model_type", "params", "name"),
    [
        ("torch_ncf", {"embedding_dim": 0}, "embedding_dim"),
        ("torch_ncf", {"hidden_size": -3}, "hidden_size"),
        ("torch_ncf", {"learning_rate": 0}, "learning_rate"),
        ("torch_ncf", {"learning_rate": float("nan")}, "learning_rate"),
        ("torch_ncf", {"epochs": 2.5}, "epochs"),
        ("torch_ncf", {"batch_size": "big"}, "batch_size"),
        ("torch_ncf", {"patience": True}, "patience"),
        ("torch_ncf", {"weight_decay": -1e-4}, "weight_decay"),
        ("torch_ncf", {"validation_fraction": 0.5001}, "validation_fraction"),
        ("torch_ncf", {"max_iter": 10}, "max_iter"),
        ("popularity", {"prior_count": -1}, "prior_count"),
        ("popularity", {"C": 1.0}, "'C'"),
    ],
)
def test_bad_torch_and_popularity_hyperparameters_are_named(model_type, params, name):
    with pytest.raises(ValueError, match=name):
        effective_hyperparameters(model_type, params)


def test_torch_hyperparameters_merge_and_convert():
    merged = effective_hyperparameters("torch_ncf", {"hidden_size": 16.0, "learning_rate": 1})
    assert merged["hidden_size"] == 16 and isinstance(merged["hidden_size"], int)
    assert merged["learning_rate"] == 1.0 and isinstance(merged["learning_rate"], float)
    assert merged["embedding_dim"] == DEFAULT_HYPERPARAMETERS["torch_ncf"]["embedding_dim"]


def test_build_estimator_refuses_non_sklearn_types():
    with pytest.raises(ValueError, match="'torch_ncf' is not a scikit-learn estimator"):
        build_estimator("torch_ncf", {})


# Few boosting iterations: this checks the wiring, not the quality.
@pytest.mark.parametrize(
    ("model_type", "params"),
    [("hist_gradient_boosting", {"max_iter": 30}), ("logistic_regression", {})],
)
def test_every_model_type_fits_and_gives_probabilities(small_data, model_type, params):
    ratings = small_data.ratings
    estimator = build_estimator(model_type, params)
    estimator.fit(out_of_fold_features(ratings, small_data.movies), labels(ratings))
    features = FeatureTables.fit(ratings, small_data.movies).transform(ratings.head(50))
    proba = estimator.predict_proba(features)[:, 1]
    assert ((proba >= 0) & (proba <= 1)).all()


def test_caller_hyperparameters_override_defaults():
    merged = effective_hyperparameters("hist_gradient_boosting", {"max_iter": 7})
    assert merged["max_iter"] == 7
    defaults = DEFAULT_HYPERPARAMETERS["hist_gradient_boosting"]
    assert merged["learning_rate"] == defaults["learning_rate"]
    assert build_estimator("hist_gradient_boosting", {"max_iter": 7}).max_iter == 7
    pipeline = build_estimator("logistic_regression", {"C": 0.5})
    assert pipeline.named_steps["classifier"].C == 0.5


def test_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="'random_forest'"):
        build_estimator("random_forest", {})


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="hidden_size"):
        build_estimator("hist_gradient_boosting", {"hidden_size": 64})


@pytest.mark.parametrize(
    ("model_type", "params", "name"),
    [
        ("hist_gradient_boosting", {"learning_rate": -1.0}, "learning_rate"),
        ("hist_gradient_boosting", {"max_iter": "many"}, "max_iter"),
        ("logistic_regression", {"C": 0}, "'C'"),
    ],
)
def test_invalid_hyperparameter_value_is_named(model_type, params, name):
    with pytest.raises(ValueError, match=name):
        build_estimator(model_type, params)


@pytest.fixture(scope="module")
def fitted_model(small_data):
    ratings = small_data.ratings
    estimator = build_estimator("logistic_regression", {})
    estimator.fit(out_of_fold_features(ratings, small_data.movies), labels(ratings))
    features = FeatureTables.fit(ratings, small_data.movies)
    catalog = CatalogIndex.fit(ratings, small_data.movies)
    return RecommenderModel(features, estimator, model_type="logistic_regression", catalog=catalog)


def test_pyfunc_predicts_probabilities_including_unknown_ids(fitted_model, small_data):
    pairs = small_data.ratings[["userId", "movieId"]].head(20)
    pairs = pd.concat([pairs, pd.DataFrame({"userId": [10**9], "movieId": [10**9]})])
    proba = fitted_model.predict(None, pairs)
    assert isinstance(proba, np.ndarray)
    assert proba.shape == (21,)
    assert ((proba >= 0) & (proba <= 1)).all()


def test_pyfunc_empty_input_gives_empty_output(fitted_model):
    empty = pd.DataFrame({"userId": [], "movieId": []}).astype("int64")
    assert fitted_model.predict(None, empty).shape == (0,)


def test_pyfunc_names_missing_columns(fitted_model):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['movieId'\]"):
        fitted_model.predict(None, pd.DataFrame({"userId": [1]}))


def test_recommend_mode_lists_k_unseen_movies_per_user(fitted_model, small_data):
    ratings = small_data.ratings
    users = pd.DataFrame({"userId": [5, 1, 5, 10**9, 3]})
    out = fitted_model.predict(None, users, params={"mode": "recommend", "k": 5})
    assert list(out.columns) == ["userId", "movieId", "score", "probability", "rank"]
    # Distinct users in first-appearance order; an unknown user still gets a list; user 3
    # rated the whole catalog in training, so has no candidates and gets no rows.
    assert ratings.loc[ratings["userId"] == 3, "movieId"].nunique() == ratings["movieId"].nunique()
    assert list(pd.unique(out["userId"])) == [5, 1, 10**9]
    assert out.groupby("userId")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    for user in (1, 5):
        seen = set(ratings.loc[ratings["userId"] == user, "movieId"])
        mine = out[out["userId"] == user]
        assert not seen & set(mine["movieId"])
        assert mine["score"].is_monotonic_decreasing
    assert ((out["probability"] >= 0) & (out["probability"] <= 1)).all()
    assert (out["score"] <= out["probability"]).all()


def test_recommend_mode_gives_the_same_top_movie_as_scoring_every_candidate(fitted_model, small_data):
    user = 7
    catalog = fitted_model.catalog
    pairs = pd.DataFrame({"userId": user, "movieId": catalog.movie_ids})
    score = catalog.propensity * fitted_model.predict(None, pairs)
    score[catalog.seen_mask(np.array([user]))[0]] = -np.inf
    best = catalog.movie_ids[np.argmax(score)]
    out = fitted_model.predict(None, pd.DataFrame({"userId": [user]}), params={"mode": "recommend", "k": 1})
    assert out["movieId"].tolist() == [best]


@pytest.mark.parametrize(
    ("frame", "params", "message"),
    [
        (pd.DataFrame({"userId": [1]}), {"mode": "rank"}, "mode must be one of"),
        (pd.DataFrame({"userId": [1]}), {"mode": "recommend", "k": 0}, "k must be a positive integer"),
        (pd.DataFrame({"movieId": [1]}), {"mode": "recommend"}, "needs a userId column"),
        (pd.DataFrame({"userId": [1.5], "movieId": [2]}), None, "non-integer ids"),
    ],
)
def test_bad_requests_are_named(fitted_model, frame, params, message):
    with pytest.raises(ValueError, match=message):
        fitted_model.predict(None, frame, params=params)
