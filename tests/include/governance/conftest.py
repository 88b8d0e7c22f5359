"""Registry fixtures: small real models logged to a real MLflow store."""

from __future__ import annotations

import pytest

from include.governance import lifecycle as lc
from include.governance.registry import register_version

from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model


@pytest.fixture
def experiment_id(mlflow_client, mlflow_store):
    return mlflow_client.create_experiment("governance-tests", artifact_location=mlflow_store["artifact_location"])


@pytest.fixture
def make_version(mlflow_client, experiment_id):
    """Log a tiny model with given metrics and register it; returns the version string."""

    def make(metrics: dict[str, float] | None = None, *, params: dict | None = None, submitted_by: str = "trainer") -> str:
        run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, metrics or GOOD_METRICS, params)
        version, _ = register_version(
            mlflow_client,
            model_name=MODEL,
            model_uri=model_uri,
            run_id=run_id,
            tags={lc.SUBMITTED_BY: submitted_by, lc.DATA_FINGERPRINT: "sha256:test"},
        )
        return str(version.version)

    return make
