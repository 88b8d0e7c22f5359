"""The model types, their default hyperparameters, and validation of a caller's hyperparameters.

Every type predicts P(rating >= 4) for (user, movie) pairs and recommends top-k lists:
- ``hist_gradient_boosting`` (default) and ``logistic_regression``: scikit-learn classifiers over
  user, movie and user-genre features (features.py);
- ``torch_ncf``: neural matrix factorisation with genre side features (torch_model.py);
- ``popularity``: the movie's smoothed share of ratings >= 4 (baseline.py), the reference
  every other model must beat.
No torch import here: validating a torch configuration must not cost torch's import time.
"""

from __future__ import annotations

import math
from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_MODEL_TYPE = "hist_gradient_boosting"
SKLEARN_MODEL_TYPES = ("hist_gradient_boosting", "logistic_regression")

# Defaults merged under the caller's hyperparameters; seeds fixed so reruns match.
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {
        "learning_rate": 0.1,
        "max_iter": 300,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
        "early_stopping": True,
        "validation_fraction": 0.1,
        "n_iter_no_change": 20,
        "random_state": 42,
    },
    "logistic_regression": {
        "C": 1.0,
        "max_iter": 1000,
        "random_state": 42,
    },
    # Sized for ml-latest-small: ~10-30 s on one CPU thread (docs/model-quality.md).
    "torch_ncf": {
        "embedding_dim": 32,
        "hidden_size": 64,
        "learning_rate": 0.005,
        "epochs": 40,
        "batch_size": 1024,
        "patience": 3,
        "weight_decay": 1e-4,
        "rating_loss_weight": 1.0,
        "validation_fraction": 0.1,
        "seed": 42,
    },
    "popularity": {
        # Pseudo-ratings pulling a movie's share of ratings >= 4 towards the global share.
        "prior_count": 10.0,
    },
}

# Plain-number hyperparameters: name -> (kind, lower bound, lower inclusive, upper bound).
_NUMBER_RULES: dict[str, dict[str, tuple[str, float, bool, float]]] = {
    "torch_ncf": {
        "embedding_dim": ("int", 1, True, 1024),
        "hidden_size": ("int", 1, True, 100_000),
        "learning_rate": ("float", 0.0, False, 10.0),
        "epochs": ("int", 1, True, 10_000),
        "batch_size": ("int", 1, True, 10_000_000),
        "patience": ("int", 1, True, 10_000),
        "weight_decay": ("float", 0.0, True, 10.0),
        "rating_loss_weight": ("float", 0.0, True, 100.0),
        "validation_fraction": ("float", 0.0, False, 0.5),
        "seed": ("int", 0, True, 2**32 - 1),
    },
    "popularity": {
        "prior_count": ("float", 0.0, True, 1e9),
    },
}

MODEL_TYPES: tuple[str, ...] = tuple(DEFAULT_HYPERPARAMETERS)

_ESTIMATORS = {
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
}


def effective_hyperparameters(model_type: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Return the defaults of model_type overridden by params, validated before any fitting.

    Unknown names and invalid values raise ValueError naming the hyperparameter (sklearn
    types: checked by sklearn's own parameter validation in ``build_estimator``).

    :param model_type: one of MODEL_TYPES.
    :param params: caller's hyperparameters; None means defaults only.
    """
    if model_type not in DEFAULT_HYPERPARAMETERS:
        raise ValueError(f"Unknown model_type {model_type!r}; expected one of {list(MODEL_TYPES)}")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"hyperparameters must be a mapping, got {type(params).__name__}")
    merged = {**DEFAULT_HYPERPARAMETERS[model_type], **(params or {})}
    if model_type in SKLEARN_MODEL_TYPES:
        return merged
    rules = _NUMBER_RULES[model_type]
    unknown = sorted(set(merged) - set(rules))
    if unknown:
        raise ValueError(
            f"Unknown hyperparameter(s) {unknown} for model_type {model_type!r}; "
            f"valid: {sorted(rules)}"
        )
    return {name: _checked_number(name, value, rules[name]) for name, value in merged.items()}


def _checked_number(name: str, value: Any, rule: tuple[str, float, bool, float]) -> int | float:
    kind, low, low_inclusive, high = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid hyperparameter {name}={value!r}: expected a number ({kind})")
    if not math.isfinite(value):
        raise ValueError(f"Invalid hyperparameter {name}={value!r}: must be finite")
    if kind == "int" and value != int(value):
        raise ValueError(f"Invalid hyperparameter {name}={value!r}: expected an integer")
    number = int(value) if kind == "int" else float(value)
    if (number < low if low_inclusive else number <= low) or number > high:
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"Invalid hyperparameter {name}={value!r}: must be {bound} {low} and <= {high}")
    return number


def build_estimator(model_type: str, params: dict[str, Any] | None) -> ClassifierMixin:
    """Build an unfitted sklearn classifier with predict_proba.

    :param model_type: one of MODEL_TYPES.
    :param params: hyperparameters of that estimator; unknown names or invalid values raise
        ValueError naming them (before any fitting starts).
    """
    merged = effective_hyperparameters(model_type, params)
    if model_type not in _ESTIMATORS:
        raise ValueError(f"model_type {model_type!r} is not a scikit-learn estimator")
    estimator_class = _ESTIMATORS[model_type]
    valid = set(estimator_class().get_params(deep=False))
    unknown = sorted(set(merged) - valid)
    if unknown:
        raise ValueError(
            f"Unknown hyperparameter(s) {unknown} for model_type {model_type!r}; "
            f"valid: {sorted(valid)}"
        )
    estimator = estimator_class(**merged)
    # sklearn checks values only inside fit(); validate now so a bad trigger param fails fast.
    # _validate_params is sklearn's own (stable since 1.2) check, raising ValueError subclasses.
    try:
        estimator._validate_params()
    except ValueError as error:
        raise ValueError(
            f"Invalid hyperparameter for model_type {model_type!r}: {error}"
        ) from error
    if model_type == "logistic_regression":
        # Features live on different scales (log counts vs shares); lbfgs needs them standardised.
        return Pipeline([("scale", StandardScaler()), ("classifier", estimator)])
    return estimator
