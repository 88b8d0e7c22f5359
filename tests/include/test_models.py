"""Estimator factory and the pyfunc wrapper (in-process; the registry round trip is in
test_training)."""

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
    assert set(MODEL_TYPES) == {"hist_gradient_boosting", "logistic_regression"}


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
    return RecommenderModel(features, estimator, model_type="logistic_regression")


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
