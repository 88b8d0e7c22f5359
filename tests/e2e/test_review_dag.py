"""The review DAG writes the triggering Airflow user's decision on the version (dag.test())."""

from __future__ import annotations


import pytest

from include.governance import lifecycle as lc
from include.governance.approval import request_approval
from include.governance.policy import GovernancePolicy
from include.governance.registry import register_version
from include.governance.validation import validate_model_version
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

pytestmark = pytest.mark.e2e

MANUAL = GovernancePolicy.load().with_overrides({"mode": "manual"})
# dag.test() runs as this user: the review DAG takes it as the reviewer.
DAG_TEST_USER = "dag_test"


@pytest.fixture
def review_dag(parse_dag):
    return parse_dag("movie_recommender_review")


@pytest.fixture
def waiting_version(mlflow_connection, mlflow_client):
    def make(submitted_by: str) -> str:
        experiment = mlflow_client.create_experiment("review", artifact_location=mlflow_connection["artifact_location"])
        run_id, uri = log_tiny_model(mlflow_client, experiment, GOOD_METRICS)
        mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id, tags={lc.SUBMITTED_BY: submitted_by})
        validate_model_version(mlflow_client, MODEL, mv.version, MANUAL)
        request_approval(mlflow_client, MODEL, mv.version, MANUAL.approval)
        return str(mv.version)

    return make


def review(dag, version, decision, notes=""):
    from airflow.utils.state import DagRunState

    run = dag.test(run_conf={"model_name": MODEL, "version": int(version), "decision": decision, "notes": notes})
    return run.state == DagRunState.SUCCESS


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_decision_is_recorded_with_the_airflow_user(review_dag, waiting_version, mlflow_client, decision):
    version = waiting_version(submitted_by="trainer")
    assert review(review_dag, version, decision, notes="seen the report")
    tags = mlflow_client.get_model_version(MODEL, version).tags
    assert tags[lc.APPROVAL_STATUS] == ("approved" if decision == "approve" else "rejected")
    assert tags[lc.APPROVED_BY] == DAG_TEST_USER
    assert tags[lc.APPROVAL_NOTES] == "seen the report"


def test_the_submitter_cannot_approve_through_the_review_dag(review_dag, waiting_version, mlflow_client, capfd):
    version = waiting_version(submitted_by=DAG_TEST_USER)
    assert not review(review_dag, version, "approve")
    assert mlflow_client.get_model_version(MODEL, version).tags[lc.APPROVAL_STATUS] == "pending"
    assert "separation of duties" in capfd.readouterr().out


def test_a_missing_version_fails_naming_it(review_dag, waiting_version, capfd):
    waiting_version(submitted_by="trainer")
    assert not review(review_dag, "42", "approve")
    assert f"{MODEL} v42 does not exist" in capfd.readouterr().out
