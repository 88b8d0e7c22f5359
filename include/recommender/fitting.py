"""Fit one model type on training ratings and return the pyfunc model plus what to log.

One entry point (``fit_model``) for every model type, so training.py only does MLflow logging.
torch is imported only when the torch model is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.recommender.baseline import PopularityTables
from include.recommender.features import FEATURE_NAMES, FeatureTables, labels, out_of_fold_features
from include.recommender.models import SKLEARN_MODEL_TYPES, build_estimator, effective_hyperparameters
from include.recommender.pyfunc import (
    PopularityModel,
    RecommenderBase,
    RecommenderModel,
    TorchRecommenderModel,
)
from include.recommender.ranking import CatalogIndex


@dataclass
class FittedModel:
    """A fitted pyfunc model and what training.py logs with it.

    :param python_model: the pyfunc model, ready to predict in this process.
    :param artifacts: files logged with the model, by name (the torch weights).
    :param curves: per-step training metrics (train_loss, val_loss, val_accuracy, ...).
    :param metrics: single-value training metrics (train_accuracy, best_epoch, ...).
    :param feature_count: number of input features the model uses (the dataset_feature_count).
    :param packages: pip packages the model needs beyond the common ones.
    """

    python_model: RecommenderBase
    artifacts: dict[str, str] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    feature_count: int = 0
    packages: tuple[str, ...] = ()


def fit_model(
    model_type: str,
    hyperparameters: dict[str, Any],
    train: pd.DataFrame,
    movies: pd.DataFrame,
    workdir: Path,
) -> FittedModel:
    """Fit model_type on the training ratings.

    :param model_type: one of models.MODEL_TYPES.
    :param hyperparameters: the caller's hyperparameters (validated here, defaults filled).
    :param train: training ratings (never the holdout).
    :param movies: movies table (catalog and genres).
    :param workdir: a directory for files the model ships as artifacts.
    """
    effective = effective_hyperparameters(model_type, hyperparameters)
    catalog = CatalogIndex.fit(train, movies)
    if model_type in SKLEARN_MODEL_TYPES:
        return _fit_sklearn(model_type, effective, train, movies, catalog)
    if model_type == "popularity":
        tables = PopularityTables.fit(train, effective["prior_count"])
        model = PopularityModel(tables, catalog)
        # Two inputs: the movie's rating count (propensity) and its share of ratings >= 4.
        return FittedModel(model, metrics=_train_accuracy(model, train), feature_count=2)
    if model_type == "torch_ncf":
        return _fit_torch(effective, train, movies, catalog, workdir)
    raise ValueError(f"Unknown model_type {model_type!r}")


def _train_accuracy(model: RecommenderBase, train: pd.DataFrame) -> dict[str, float]:
    proba = model.predict_proba(train[["userId", "movieId"]])
    return {"train_accuracy": float(np.mean((proba >= 0.5) == labels(train)))}


def _fit_sklearn(
    model_type: str,
    hyperparameters: dict[str, Any],
    train: pd.DataFrame,
    movies: pd.DataFrame,
    catalog: CatalogIndex,
) -> FittedModel:
    estimator = build_estimator(model_type, hyperparameters)
    # Out-of-fold features for the estimator's own rows (no self-leakage), and tables fitted on
    # all training rows for serving; the holdout is never seen here.
    train_matrix = out_of_fold_features(train, movies)
    y_train = labels(train)
    estimator.fit(train_matrix, y_train)
    model = RecommenderModel(
        FeatureTables.fit(train, movies), estimator, model_type=model_type, catalog=catalog
    )
    return FittedModel(
        model,
        curves=_iteration_metrics(estimator),
        metrics={"train_accuracy": float(np.mean(estimator.predict(train_matrix) == y_train))},
        feature_count=len(FEATURE_NAMES),
    )


def _iteration_metrics(estimator: Any) -> dict[str, list[float]]:
    """Per-iteration losses of a boosting estimator with early stopping (else empty)."""
    curves = {}
    # scoring="loss" stores negative log-loss per iteration (index 0 = before the first tree).
    if getattr(estimator, "scoring", None) == "loss":
        for attribute, key in (("train_score_", "train_loss"), ("validation_score_", "val_loss")):
            scores = getattr(estimator, attribute, None)
            if scores is not None and len(scores):
                curves[key] = [float(-score) for score in scores]
    return curves


def _fit_torch(
    hyperparameters: dict[str, Any],
    train: pd.DataFrame,
    movies: pd.DataFrame,
    catalog: CatalogIndex,
    workdir: Path,
) -> FittedModel:
    import torch

    from include.recommender.torch_model import train_network

    encoding, trained = train_network(train, movies, hyperparameters)
    weights = Path(workdir) / "weights.pt"
    torch.save(trained.network.state_dict(), weights)
    model = TorchRecommenderModel(encoding, trained.architecture, catalog, network=trained.network)
    metrics = {
        **_train_accuracy(model, train),
        "best_epoch": float(trained.best_epoch),
        "epochs_run": float(len(trained.history["val_loss"])),
    }
    return FittedModel(
        model,
        artifacts={TorchRecommenderModel.WEIGHTS_ARTIFACT: str(weights)},
        curves=trained.history,
        metrics=metrics,
        # The user and movie ids (embedded) plus one input per genre.
        feature_count=2 + trained.architecture["n_genres"],
        packages=("torch",),
    )
