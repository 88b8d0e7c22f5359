"""The MLflow pyfunc wrapper serving P(rating >= 4) for (userId, movieId) pairs.

The instance (fitted FeatureTables + sklearn estimator) is pickled by MLflow; the classes it
references live in this package, which training ships inside the model via ``code_paths`` so a
fresh interpreter can load the model from the registry without the repository on sys.path.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from include.recommender.features import FEATURE_NAMES, FeatureTables

INPUT_COLUMNS = ("userId", "movieId")


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Probability that a user rates a movie >= 4 stars, from fitted features and a classifier.

    :param features: FeatureTables fitted on the training ratings.
    :param estimator: fitted sklearn classifier over FEATURE_NAMES with predict_proba.
    :param model_type: name of the estimator type (recorded for inspection).
    """

    def __init__(self, features: FeatureTables, estimator: Any, model_type: str) -> None:
        self.features = features
        self.estimator = estimator
        self.model_type = model_type
        self.feature_names = FEATURE_NAMES

    def predict_proba(self, pairs: pd.DataFrame) -> np.ndarray:
        """Return P(rating >= 4) for each row of pairs, as float64 in [0, 1].

        :param pairs: frame with userId and movieId columns (int64).
        """
        missing = [column for column in INPUT_COLUMNS if column not in pairs.columns]
        if missing:
            raise ValueError(
                f"model input is missing column(s) {missing}; got {list(pairs.columns)}"
            )
        if len(pairs) == 0:
            return np.empty(0, dtype=np.float64)
        matrix = self.features.transform(pairs)[list(self.feature_names)]
        positive = list(self.estimator.classes_).index(1)
        return self.estimator.predict_proba(matrix)[:, positive].astype(np.float64)

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Score (userId, movieId) pairs; returns a 1-d float64 numpy array of probabilities.

        :param context: MLflow's PythonModelContext (unused: the state is pickled with the model).
        :param model_input: DataFrame with userId and movieId columns.
        :param params: reserved for inference options such as a top-k recommendation mode.
        """
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.predict_proba(model_input)
