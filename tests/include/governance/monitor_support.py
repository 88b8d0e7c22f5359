"""Champions of known quality for the monitoring tests: one that knows every rating, one that knows none."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from include.governance import lifecycle as lc
from include.governance.registry import register_version
from include.recommender.features import LABEL_THRESHOLD

# Small generated data: two years of ratings, ~800 in a 30-day window.
SMALL_DATA = "synthetic:n_users=200,n_movies=800,n_ratings=20000,seed=11"
NEAR_PERFECT_VALIDATION = {"accuracy": 0.99, "precision": 0.99, "recall": 0.99, "f1_score": 0.99, "roc_auc": 0.99}
HIGH_VALIDATION = {"accuracy": 0.90, "precision": 0.90, "recall": 0.90, "f1_score": 0.90, "roc_auc": 0.95}
MODEST_VALIDATION = {"accuracy": 0.80, "precision": 0.78, "recall": 0.76, "f1_score": 0.77, "roc_auc": 0.85}


class LookupModel(mlflow.pyfunc.PythonModel):
    """Knows every rating of the data set: scores each pair 0.9 when liked, 0.1 when not.

    :param wrong_every: when set, gets every pair with (userId + movieId) % wrong_every == 0
        wrong (a decent, imperfect model: about 1/wrong_every of the answers are flipped).
    """

    def __init__(self, ratings: pd.DataFrame, wrong_every: int | None = None) -> None:
        liked = ratings["rating"] >= LABEL_THRESHOLD
        if wrong_every:
            liked = liked ^ ((ratings["userId"] + ratings["movieId"]) % wrong_every == 0)
        self.scores = dict(zip(zip(ratings["userId"], ratings["movieId"]), liked.map({True: 0.9, False: 0.1})))

    def predict(self, context, model_input, params=None):
        return [self.scores.get(pair, 0.5) for pair in zip(model_input["userId"], model_input["movieId"])]


class CoinModel(mlflow.pyfunc.PythonModel):
    """Knows nothing: scores every pair 0.5, so it predicts 'liked' for everyone."""

    def predict(self, context, model_input, params=None):
        return [0.5] * len(model_input)


def make_champion(client, experiment_id: str, model_name: str, python_model, validation: dict[str, float]) -> str:
    """Log, register and crown a model, with validation tags as validation would have written them."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=python_model, pip_requirements=["mlflow"],
                input_example=pd.DataFrame({"userId": [1, 2], "movieId": [10, 20]}),
            )
    finally:
        mlflow.set_tracking_uri(previous)
    mv, _ = register_version(
        client, model_name=model_name, model_uri=info.model_uri, run_id=run.info.run_id,
        tags={lc.SUBMITTED_BY: "trainer", lc.VALIDATION_STATUS: "passed"},
    )
    version = str(mv.version)
    for metric, value in validation.items():
        client.set_model_version_tag(model_name, version, f"{lc.VALIDATION_METRIC_PREFIX}{metric}", f"{value:.6f}")
    client.set_registered_model_alias(model_name, lc.CHAMPION, version)
    return version
