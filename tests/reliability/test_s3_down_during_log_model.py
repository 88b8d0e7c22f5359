"""Fault: the S3 endpoint (moto's server process) is killed while the train step logs the model.

The train step is the project's ``train_and_log`` against ``mlflow server`` (PostgreSQL store,
artifacts proxied to S3). moto is SIGKILLed right after the step created its logged model, so
the model's files are being uploaded to a dead endpoint.

Expected:
- the step fails with an error that names the artifact upload (no silent success);
- the MLflow run ends FAILED and its logged model is not READY;
- the register step, should it run for that model, refuses and creates nothing, both while S3
  is down and once S3 is back without the model's files ("no MLmodel file");
- the registry holds no version of the run (none READY pointing at a missing artifact), and
  ``@champion`` still points at the version it pointed at before.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases, register_version
from include.recommender.synthetic import generate_movielens
from include.recommender.training import train_and_log
from mlflow_governance.operators import RegisterModelVersionOperator
from tests.include.governance.support import GOOD_METRICS, log_tiny_model
from tests.reliability.faults import BEFORE_NEXT, inject

pytestmark = pytest.mark.services

MODEL = "s3_outage_model"
EXPERIMENT = "s3-outage"
CONTEXT = {"dag": SimpleNamespace(dag_id="movie_recommender_retrain"), "run_id": "manual__s3_outage"}


def test_s3_down_while_logging_the_model_fails_the_step_and_leaves_the_champion(mlflow_stack, mlflow_default, monkeypatch, client_retries):
    client = mlflow_stack.client()
    # A champion first (S3 up), so that "unchanged" means something.
    experiment_id = client.create_experiment(EXPERIMENT)
    champion_run, champion_uri = log_tiny_model(client, experiment_id, GOOD_METRICS)
    champion, _ = register_version(client, model_name=MODEL, model_uri=champion_uri, run_id=champion_run, tags={})
    client.set_registered_model_alias(MODEL, lc.CHAMPION, champion.version)

    # The server answers 500 once its S3 upload fails; the client retries those twice, briefly.
    client_retries(2)
    inside_log_model = []

    def kill_s3(_injection) -> None:
        inside_log_model.append(any(frame.function == "_log_model" for frame in inspect.stack()))
        mlflow_stack.s3.kill()

    injection = inject(monkeypatch, "mlflow/logged-models", kill_s3, moment=BEFORE_NEXT)
    data = generate_movielens(n_users=60, n_movies=200, n_ratings=4000, seed=3)
    with pytest.raises(Exception) as failure:
        train_and_log(
            data=data, model_type="logistic_regression", hyperparameters={}, experiment_name=EXPERIMENT,
            tracking_uri=mlflow_stack.url, cutoff=None, run_tags={"airflow_run_id": CONTEXT["run_id"]},
        )
    assert injection.fired and inside_log_model == [True], (injection.fired, inside_log_model)
    message = str(failure.value)
    print(f"train step failed with {type(failure.value).__name__}: {message[:600]}")
    assert "artifact" in message.lower() or "500" in message, message[:2000]

    (failed_run,) = client.search_runs([experiment_id], filter_string=f"tags.airflow_run_id = '{CONTEXT['run_id']}'")
    assert failed_run.info.status == "FAILED"
    logged_models = client.search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{failed_run.info.run_id}'")
    print(f"logged models of the failed run: {[(m.model_id, str(m.status)) for m in logged_models]}")
    assert all("READY" not in str(m.status) for m in logged_models), logged_models

    # Were the register step run for the half-logged model, it must refuse and create nothing:
    # while S3 is down, and once S3 is back without the files the upload never wrote.
    assert logged_models, "the failed run has no logged model to try registering"
    with pytest.raises(Exception) as refused_while_down:
        register_half_logged(failed_run.info.run_id, logged_models[0].model_id)
    print(f"register (S3 down) refused with {type(refused_while_down.value).__name__}: {str(refused_while_down.value)[:300]}")
    mlflow_stack.s3.start()  # moto keeps nothing in memory: the bucket comes back empty
    mlflow_stack.s3_server().client().create_bucket(Bucket=mlflow_stack.bucket)
    with pytest.raises(Exception, match="no MLmodel file") as refused_when_back:
        register_half_logged(failed_run.info.run_id, logged_models[0].model_id)
    print(f"register (S3 back) refused with {type(refused_when_back.value).__name__}: {str(refused_when_back.value)[:300]}")

    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [(mv.version, mv.run_id) for mv in versions] == [(champion.version, champion_run)]
    assert get_aliases(client, MODEL) == {lc.CHAMPION: champion.version}


def register_half_logged(run_id: str, model_id: str) -> dict:
    return RegisterModelVersionOperator(
        task_id="register", model_name=MODEL, run_id=run_id, model_uri=f"models:/{model_id}",
        data_fingerprint="sha256:x", submitted_by="trainer",
    ).execute(CONTEXT)
