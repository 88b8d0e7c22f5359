"""Estimators for the "rates >= 4" classifier, chosen by name with validated hyperparameters."""

from __future__ import annotations

from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_MODEL_TYPE = "hist_gradient_boosting"

# Defaults merged under the caller's hyperparameters; random_state fixed so reruns match.
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
}

MODEL_TYPES: tuple[str, ...] = tuple(DEFAULT_HYPERPARAMETERS)

_ESTIMATORS = {
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
}


def effective_hyperparameters(model_type: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Return the defaults of model_type overridden by params (what build_estimator uses).

    :param model_type: one of MODEL_TYPES.
    :param params: caller's hyperparameters; None means defaults only.
    """
    if model_type not in DEFAULT_HYPERPARAMETERS:
        raise ValueError(f"Unknown model_type {model_type!r}; expected one of {list(MODEL_TYPES)}")
    return {**DEFAULT_HYPERPARAMETERS[model_type], **(params or {})}


def build_estimator(model_type: str, params: dict[str, Any] | None) -> ClassifierMixin:
    """Build an unfitted sklearn classifier with predict_proba.

    :param model_type: one of MODEL_TYPES.
    :param params: hyperparameters of that estimator; unknown names or invalid values raise
        ValueError naming them (before any fitting starts).
    """
    merged = effective_hyperparameters(model_type, params)
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
