"""Shared helpers of the bad-input, property and secrets tests: registry snapshots and models."""

from __future__ import annotations

from pathlib import Path

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases

# Small generated data keeps a DAG run to seconds; the gates still apply in full.
SMALL_DATA = "synthetic:n_users=200,n_movies=800,n_ratings=20000,seed=11"


def registry_state(client) -> dict:
    """Everything a refusal must leave untouched: each model's versions, their tags, aliases."""
    state = {}
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        state[model.name] = {
            "aliases": get_aliases(client, model.name),
            "versions": {str(mv.version): dict(mv.tags) for mv in versions},
        }
    return state


def champion(client, model_name: str) -> str | None:
    return get_aliases(client, model_name).get(lc.CHAMPION)


def log_marker_model(client, experiment_id: str, marker: Path, metrics: dict, params: dict) -> tuple[str, str]:
    """Log a pyfunc model that touches ``marker`` when it is loaded; return (run_id, model_uri).

    Loading it is the side effect the source check must prevent for a copy outside the store.
    """
    import mlflow
    import mlflow.pyfunc
    import pandas as pd

    class MarkerModel(mlflow.pyfunc.PythonModel):
        def __init__(self, path: str) -> None:
            self.path = path

        def load_context(self, context):
            Path(self.path).write_text("loaded")

        def predict(self, context, model_input, params=None):
            return [0.5] * len(model_input)

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metrics(metrics)
            mlflow.log_params(params)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=MarkerModel(str(marker)), pip_requirements=["mlflow"],
                input_example=pd.DataFrame({"userId": [1, 2], "movieId": [10, 20]}),
            )
    finally:
        mlflow.set_tracking_uri(previous)
    return run.info.run_id, info.model_uri
