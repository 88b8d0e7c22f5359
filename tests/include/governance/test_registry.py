"""Registration against a real MLflow store (SQLite + local artifacts)."""

from __future__ import annotations

import shutil
from urllib.parse import urlparse

import pytest

from include.governance import lifecycle as lc
from include.governance.registry import RegistryError, get_aliases, register_version

from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model


def test_registering_the_same_run_twice_returns_the_first_version(mlflow_client, experiment_id):
    run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    tags = {lc.SUBMITTED_BY: "trainer", lc.AIRFLOW_RUN_ID: "manual__1"}
    first, created_first = register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags=tags)
    second, created_second = register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags=tags)
    third, _ = register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags=tags)
    assert (created_first, created_second) == (True, False)
    assert first.version == second.version == third.version
    assert len(mlflow_client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert first.tags[lc.SUBMITTED_BY] == "trainer"
    assert first.status == "READY"


def test_a_second_run_gets_a_new_version(mlflow_client, experiment_id):
    versions = []
    for _ in range(2):
        run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
        mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags={})
        versions.append(str(mv.version))
    assert versions == ["1", "2"]


def test_a_model_whose_artifact_is_gone_is_not_registered(mlflow_client, experiment_id):
    run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    logged = mlflow_client.get_logged_model(model_uri.removeprefix("models:/"))
    shutil.rmtree(urlparse(logged.artifact_location).path)
    with pytest.raises(RegistryError, match="no MLmodel file"):
        register_version(mlflow_client, model_name=MODEL, model_uri=model_uri, run_id=run_id, tags={})
    assert mlflow_client.search_model_versions(f"name = '{MODEL}'") == []


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "s3://elsewhere/model", "runs:/other-run/model"])
def test_a_source_outside_the_run_is_refused(mlflow_client, experiment_id, uri):
    run_id, _ = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    with pytest.raises(RegistryError, match="neither a logged model"):
        register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id, tags={})


def test_a_logged_model_of_another_run_is_refused(mlflow_client, experiment_id):
    run_a, _ = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    _, model_b = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    with pytest.raises(RegistryError, match="not run"):
        register_version(mlflow_client, model_name=MODEL, model_uri=model_b, run_id=run_a, tags={})


def test_aliases_of_a_missing_model_are_empty(mlflow_client):
    assert get_aliases(mlflow_client, "never_registered") == {}
