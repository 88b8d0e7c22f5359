"""Every task of the retrain DAG runs as its own MLflow account, against the production auth server.

The whole DAG under ``dag.test()``: every task in this one process, as the triggerer or a test
run shares one. ``train`` and ``log`` (fluent API, proxied ``mlflow-artifacts:/`` uploads and
downloads) and ``register`` act as the training account; ``validate``, ``approve``,
``wait_for_approval`` and ``promote`` as the governance account, the only one the server lets
write verdicts and move ``@champion``. The only credentials are the two Airflow connections.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import requests

from include.governance import lifecycle as lc
from include.recommender.evaluation import REPORT_DIR
from tests.e2e.test_retrain_dag import run
from tests.security.auth_server import ADMIN, APPROVER, CREDENTIAL_VARIABLES, TRAINER, connection_json, permission

MODEL = "movie_recommender"
EXPERIMENT = "movie_recommendation"

pytestmark = [pytest.mark.services, pytest.mark.e2e]


@pytest.fixture(scope="module")
def retrained(auth_server, airflow_db, tmp_path_factory):
    """One run of the whole DAG with only the connections airflow-init writes holding a login."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", connection_json(auth_server.url, TRAINER))
        patch.setenv("AIRFLOW_CONN_MLFLOW_GOVERNANCE", connection_json(auth_server.url, APPROVER))
        for name in CREDENTIAL_VARIABLES:
            patch.delenv(name, raising=False)
        patch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
        patch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(tmp_path_factory.mktemp("audit") / "audit.db"))
        dag = DagBag(dag_folder=str(REPO / "dags")).dags["movie_recommender_retrain"]
        succeeded, states = run(dag, model_name=MODEL)
        left_behind = [name for name in os.environ if name in CREDENTIAL_VARIABLES]
    version = as_admin(auth_server, "model-versions/get", name=MODEL, version="1")["model_version"] if succeeded else None
    return SimpleNamespace(server=auth_server, succeeded=succeeded, states=states, left_behind=left_behind, version=version)


def as_admin(server, endpoint: str, **params) -> dict:
    """A REST read as the MLflow admin (sees everything, changes nothing)."""
    answer = requests.get(f"{server.url}/api/2.0/mlflow/{endpoint}", params=params, auth=ADMIN, timeout=30)
    answer.raise_for_status()
    return answer.json()


def test_every_task_succeeds_and_leaves_no_login_in_the_process(retrained):
    assert retrained.succeeded, retrained.states
    assert retrained.left_behind == [], "a task left its login in the process environment"


def test_train_created_the_experiment_as_the_training_account(retrained):
    # The server grants the creator of an experiment MANAGE; every other account has its wildcard EDIT.
    server = retrained.server
    experiment_id = as_admin(server, "experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]["experiment_id"]
    assert permission(server.url, TRAINER[0], "experiment", experiment_id) == "MANAGE"
    assert permission(server.url, APPROVER[0], "experiment", experiment_id) == "EDIT"


def test_the_governance_steps_ran_as_the_governance_account(retrained):
    # Only the governance account may write these (the trainer gets a 403): validate, approve and
    # promote ran as it, in the same process right after train, log and register ran as the trainer.
    assert retrained.succeeded, retrained.states
    tags = {tag["key"]: tag["value"] for tag in retrained.version.get("tags", [])}
    assert tags[lc.VALIDATION_STATUS] == "passed" and tags[lc.APPROVAL_STATUS] == "approved", tags
    champion = as_admin(retrained.server, "registered-models/alias", name=MODEL, alias=lc.CHAMPION)
    assert champion["model_version"]["version"] == "1"


def test_log_went_through_the_proxied_artifact_store(retrained):
    """log downloaded the model (MLflow's download threads) and uploaded its reports."""
    assert retrained.succeeded, retrained.states
    run_id = retrained.version["run_id"]
    metrics = {metric["key"] for metric in as_admin(retrained.server, "runs/get", run_id=run_id)["run"]["data"]["metrics"]}
    assert {"accuracy", "roc_auc", "ndcg_at_10"} <= metrics, metrics
    reports = as_admin(retrained.server, "artifacts/list", run_id=run_id, path=REPORT_DIR)
    assert {f"{REPORT_DIR}/report.json", f"{REPORT_DIR}/roc_curve.png"} <= {f["path"] for f in reports.get("files", [])}, reports
