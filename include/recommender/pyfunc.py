"""The MLflow pyfunc models: score (userId, movieId) pairs, or recommend top-k movies to users.

Every model type is served through the same interface (``RecommenderBase.predict``):

- ``model.predict(pairs)`` with columns userId, movieId (int64) -> 1-d float64 numpy array of
  P(user rates the movie >= 4 stars), one per row. Unknown users or movies get the model's
  fallback (priors), never an error.
- ``model.predict(users, params={"mode": "recommend", "k": 10})`` with column userId (movieId
  optional and ignored) -> DataFrame with columns userId, movieId, score, probability, rank:
  for each distinct user, in input order, the k movies with the highest score among those the
  user did not rate in training, rank 1 = best. ``score`` = propensity (share of training users
  who rated the movie) x ``probability`` (P(rating >= 4)), an estimate of the chance the user
  watches and likes it; ties go to the lower movieId. A user with fewer than k candidates gets
  fewer rows; an unknown user gets the list of a user with no history.

The instance is pickled by MLflow; the classes it references live in this package, which
training ships inside the model via ``code_paths``, so a fresh interpreter loads the model from
the registry without the repository. The torch model pickles no torch object: its weights are
a ``state_dict`` artifact loaded in ``load_context`` into a network rebuilt from the pickled
architecture parameters.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from include.recommender.baseline import PopularityTables
from include.recommender.features import FEATURE_NAMES, FeatureTables
from include.recommender.ranking import DEFAULT_K, CatalogIndex, check_k, recommend

INPUT_COLUMNS = ("userId", "movieId")
MODES = ("score", "recommend")
DEFAULT_PARAMS: dict[str, Any] = {"mode": "score", "k": DEFAULT_K}


def _ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as int64 ids; missing or fractional values raise ValueError naming it."""
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"model input column {column!r} has {int(values.isna().sum())} missing id(s)")
    array = values.to_numpy()
    if array.dtype.kind == "f" and not np.all(array == np.round(array)):
        raise ValueError(f"model input column {column!r} holds non-integer ids")
    if array.dtype.kind not in "iuf":
        raise ValueError(f"model input column {column!r} must hold integer ids, got {array.dtype}")
    return array.astype(np.int64)


class RecommenderBase(mlflow.pyfunc.PythonModel):
    """Shared pyfunc interface (see the module docstring); subclasses give pair_probability.

    :param catalog: the recommendable movies, their propensity and each user's training movies.
    :param model_type: the model type's name (recorded for inspection).
    """

    def __init__(self, catalog: CatalogIndex, model_type: str) -> None:
        self.catalog = catalog
        self.model_type = model_type

    def pair_probability(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Return P(rating >= 4) per (user_ids[i], movie_ids[i]) as float64 in [0, 1].

        :param user_ids: int64 userIds.
        :param movie_ids: int64 movieIds, same length.
        """
        raise NotImplementedError

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
        return np.asarray(
            self.pair_probability(_ids(pairs, "userId"), _ids(pairs, "movieId")), dtype=np.float64
        )

    def recommend(self, user_ids: np.ndarray, k: int = DEFAULT_K) -> pd.DataFrame:
        """Top-k unseen movies for each distinct user, in first-appearance order.

        :param user_ids: userIds (duplicates are listed once).
        :param k: list length per user.
        """
        distinct = pd.unique(np.asarray(user_ids, dtype=np.int64))
        return recommend(self.catalog, distinct, check_k(k), self.pair_probability)

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray | pd.DataFrame:
        """Score pairs (mode "score", default) or recommend top-k movies (mode "recommend").

        :param context: MLflow's PythonModelContext (unused here; see load_context).
        :param model_input: mode "score": DataFrame with userId and movieId columns; mode
            "recommend": DataFrame with a userId column.
        :param params: {"mode": "score" | "recommend", "k": list length (default 10)}.
        :return: mode "score": 1-d float64 array of P(rating >= 4), one per row; mode
            "recommend": DataFrame userId, movieId, score, probability, rank.
        """
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        merged = {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}
        mode = merged["mode"]
        if mode not in MODES:
            raise ValueError(f"params mode must be one of {list(MODES)}, got {mode!r}")
        if mode == "score":
            return self.predict_proba(model_input)
        if "userId" not in model_input.columns:
            raise ValueError(
                f"recommend mode needs a userId column; got {list(model_input.columns)}"
            )
        return self.recommend(_ids(model_input, "userId"), check_k(merged["k"]))


class RecommenderModel(RecommenderBase):
    """Scikit-learn classifier over FeatureTables features.

    :param features: FeatureTables fitted on the training ratings.
    :param estimator: fitted sklearn classifier over FEATURE_NAMES with predict_proba.
    :param model_type: name of the estimator type.
    :param catalog: the recommendation catalog fitted on the same training ratings.
    """

    def __init__(
        self, features: FeatureTables, estimator: Any, model_type: str, catalog: CatalogIndex
    ) -> None:
        super().__init__(catalog, model_type)
        self.features = features
        self.estimator = estimator
        self.feature_names = FEATURE_NAMES

    def pair_probability(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Return the classifier's P(rating >= 4) per pair.

        :param user_ids: int64 userIds.
        :param movie_ids: int64 movieIds, same length.
        """
        pairs = pd.DataFrame({"userId": user_ids, "movieId": movie_ids})
        matrix = self.features.transform(pairs)[list(self.feature_names)]
        positive = list(self.estimator.classes_).index(1)
        return self.estimator.predict_proba(matrix)[:, positive].astype(np.float64)


class PopularityModel(RecommenderBase):
    """The non-personalised baseline: the movie's smoothed P(rating >= 4) for every user.

    :param tables: PopularityTables fitted on the training ratings.
    :param catalog: the recommendation catalog fitted on the same training ratings.
    """

    def __init__(self, tables: PopularityTables, catalog: CatalogIndex) -> None:
        super().__init__(catalog, "popularity")
        self.tables = tables

    def pair_probability(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Return the movie's smoothed P(rating >= 4), whoever the user.

        :param user_ids: int64 userIds (unused: the baseline ignores the user).
        :param movie_ids: int64 movieIds.
        """
        return self.tables.probability(movie_ids).astype(np.float64)


class TorchRecommenderModel(RecommenderBase):
    """Neural MF (torch_model.NeuralMF) whose weights travel as a state_dict artifact.

    :param encoding: torch_model.Encoding (id -> table row, genre vectors).
    :param architecture: NeuralMF constructor arguments.
    :param catalog: the recommendation catalog fitted on the same training ratings.
    :param network: the trained network for in-process use; never pickled.
    """

    WEIGHTS_ARTIFACT = "weights"

    def __init__(
        self, encoding: Any, architecture: dict[str, int], catalog: CatalogIndex, network: Any = None
    ) -> None:
        super().__init__(catalog, "torch_ncf")
        self.encoding = encoding
        self.architecture = dict(architecture)
        self._network = network

    def __getstate__(self) -> dict[str, Any]:
        # The network is rebuilt from the weights artifact at load; pickling it would tie the
        # model file to torch's pickle format and the training process's module globals.
        state = dict(self.__dict__)
        state["_network"] = None
        return state

    def load_context(self, context) -> None:
        """Rebuild the network from the architecture parameters and load the weights artifact.

        :param context: MLflow's PythonModelContext with artifacts["weights"].
        """
        import torch

        from include.recommender.torch_model import NeuralMF

        network = NeuralMF(**self.architecture)
        state = torch.load(
            context.artifacts[self.WEIGHTS_ARTIFACT], map_location="cpu", weights_only=True
        )
        network.load_state_dict(state)
        network.eval()
        self._network = network

    def pair_probability(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Return the network's P(rating >= 4) per pair.

        :param user_ids: int64 userIds.
        :param movie_ids: int64 movieIds, same length.
        """
        if self._network is None:
            raise RuntimeError("torch model has no weights: load it with mlflow.pyfunc.load_model")
        from include.recommender.torch_model import predict_logits

        logits = predict_logits(
            self._network, self.encoding.user_index(user_ids), self.encoding.movie_index(movie_ids)
        )
        # tanh form of the sigmoid: no overflow warnings for large |logit|.
        return 0.5 * (1.0 + np.tanh(0.5 * logits))
