"""Small real models logged to a real MLflow store, for the registry tests."""

from __future__ import annotations

from include.governance import lifecycle as lc
from include.governance.registry import register_version

MODEL = "test_model"


def log_tiny_model(client, experiment_id: str, metrics: dict[str, float], params: dict | None = None) -> tuple[str, str]:
    """Log a run with the given metrics and a real (tiny) pyfunc model; return (run_id, model_uri)."""
    import mlflow
    import mlflow.pyfunc
    import pandas as pd

    class ConstantModel(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [0.5] * len(model_input)

    # Point the global tracking URI at the store only while logging: the code under test must
    # work with its own client, not through MLflow's process-global state.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metrics(metrics)
            mlflow.log_params(params or GOOD_PARAMS)
            # An input example, as the real models log: validation builds its probe request from it.
            info = mlflow.pyfunc.log_model(
                name="model", python_model=ConstantModel(), pip_requirements=["mlflow"],
                input_example=pd.DataFrame({"userId": [1, 2], "movieId": [10, 20]}),
            )
    finally:
        mlflow.set_tracking_uri(previous)
    return run.info.run_id, info.model_uri


GOOD_METRICS = {"accuracy": 0.80, "precision": 0.78, "recall": 0.76, "f1_score": 0.77, "roc_auc": 0.85}
GOOD_PARAMS = {
    "dataset_train_size": 80000,
    "dataset_feature_count": 8,
    "dataset_duplicate_count": 0,
    "dataset_missing_values": 0,
    "dataset_out_of_range": 0,
}




def set_tags(client, version, **tags):
    for key, value in tags.items():
        client.set_model_version_tag(MODEL, version, key, value)


def validated(client, version, baseline=None, **extra):
    """The tags validation writes on a version that passed (set directly: fast)."""
    accuracy = client.get_run(client.get_model_version(MODEL, version).run_id).data.metrics["accuracy"]
    set_tags(client, version, **{
        lc.VALIDATION_STATUS: "passed", lc.VALIDATION_TIMESTAMP: lc.utc_now_iso(),
        lc.VALIDATION_BASELINE_VERSION: baseline or lc.NO_BASELINE, "validation_accuracy": f"{accuracy:.6f}",
        lc.APPROVAL_TIMESTAMP: lc.utc_now_iso(), **extra,
    })
    client.set_registered_model_alias(MODEL, lc.CHALLENGER, version)
