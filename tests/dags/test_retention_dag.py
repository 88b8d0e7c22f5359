"""The retention DAG: weekly by default, and a real run with dag.test() on a real MLflow store."""

from __future__ import annotations

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog, EventType

from tests.include.governance.registry_support import add_versions, archived, logged_model  # noqa: F401
from tests.include.governance.support import MODEL

DAG_ID = "movie_recommender_retention"


@pytest.fixture
def retention_dag(parse_dag):
    return parse_dag(DAG_ID)


def test_weekly_by_default_with_model_and_keep_params(retention_dag):
    assert retention_dag.timetable.can_be_scheduled
    assert retention_dag.schedule == "@weekly"
    assert retention_dag.params["model_name"] == lc.DEFAULT_MODEL_NAME
    assert retention_dag.params["keep"] == 5
    assert retention_dag.task_ids == ["retain"]


def test_negative_keep_is_refused_by_the_form(retention_dag):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(retention_dag.params)
    with pytest.raises(ParamValidationError, match="keep"):
        params["keep"] = -1
        params.validate()


@pytest.fixture
def experiment_id(mlflow_client, mlflow_connection):
    return mlflow_client.create_experiment("retention", artifact_location=mlflow_connection["artifact_location"])


@pytest.fixture
def archive(mlflow_connection, mlflow_client, logged_model):  # noqa: F811
    """v1..v4 archived in version order, v4 @previous_champion, v5 @champion."""
    stamps = [f"2026-0{month}-01T00:00:00.000+00:00" for month in range(1, 5)]
    add_versions(mlflow_client, logged_model, [archived(s) for s in stamps] + [{lc.SUBMITTED_BY: "trainer"}])
    mlflow_client.set_registered_model_alias(MODEL, lc.PREVIOUS_CHAMPION, "4")
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, "5")


@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(tmp_path / "audit.db"))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    return AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")


def _versions(client) -> list[str]:
    return sorted((str(mv.version) for mv in client.search_model_versions(f"name = '{MODEL}'")), key=int)


def test_a_run_keeps_the_last_archived_and_audits_each_deletion(parse_dag, archive, audit_log, mlflow_client):
    from airflow.utils.state import DagRunState

    # A fresh parse per run: dag.test writes its conf into the DAG's params.
    dry = parse_dag(DAG_ID).test(run_conf={"model_name": MODEL, "keep": 1, "dry_run": True})
    assert dry.state == DagRunState.SUCCESS
    assert _versions(mlflow_client) == ["1", "2", "3", "4", "5"]
    dag_run = parse_dag(DAG_ID).test(run_conf={"model_name": MODEL, "keep": 1})
    assert dag_run.state == DagRunState.SUCCESS
    # v4 is protected (@previous_champion), v3 the newest other archived one: v1 and v2 go.
    assert _versions(mlflow_client) == ["3", "4", "5"]
    rows = audit_log.events(kinds=[EventType.DELETED])
    assert sorted(e.version for e in rows) == ["1", "2"]
    assert {(e.dag_id, e.dag_run_id) for e in rows} == {(DAG_ID, dag_run.run_id)}
