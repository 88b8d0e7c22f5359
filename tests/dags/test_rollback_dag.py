"""The rollback DAG: wiring and params, then real runs with dag.test() on a real MLflow store."""

from __future__ import annotations


import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog, EventType
from include.governance.policy import GovernancePolicy
from include.governance.promotion import promote
from include.governance.registry import get_aliases, register_version
from tests.include.governance.support import GOOD_METRICS, log_tiny_model

DAG_ID = "movie_recommender_rollback"
MODEL = "movie_recommender"


@pytest.fixture
def rollback_dag(parse_dag):
    return parse_dag(DAG_ID)


def test_manual_dag_plans_then_rolls_back(rollback_dag):
    assert rollback_dag.timetable.can_be_scheduled is False  # manual only
    assert rollback_dag.max_active_runs == 1
    assert rollback_dag.get_task("plan").downstream_task_ids == {"rollback"}
    assert rollback_dag.get_task("rollback").retries >= 1


@pytest.mark.parametrize(
    ("param", "value"),
    [("reason", None), ("reason", ""), ("to_version", "v3"), ("to_version", "0"), ("model_name", "a/b")],
)
def test_invalid_params_are_refused_before_the_run(rollback_dag, param, value):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(rollback_dag.params)
    params["reason"] = "a valid reason"
    with pytest.raises(ParamValidationError, match=param):
        params[param] = value
        params.validate()


def test_a_valid_trigger_form_passes(rollback_dag):
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(rollback_dag.params)
    params["reason"] = "CTR dropped"
    for version in (None, "", "12"):
        params["to_version"] = version
        params.validate()


@pytest.fixture
def served(mlflow_connection, mlflow_client):
    """v1 served, then v2 replaced it; v3 was approved but never served."""
    experiment = mlflow_client.create_experiment("rollback", artifact_location=mlflow_connection["artifact_location"])
    policy = GovernancePolicy.load().approval
    versions = []
    for accuracy in (0.80, 0.83, 0.84):
        run_id, uri = log_tiny_model(mlflow_client, experiment, {**GOOD_METRICS, "accuracy": accuracy})
        mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id,
                                 tags={lc.SUBMITTED_BY: "trainer"})
        version = str(mv.version)
        champion = get_aliases(mlflow_client, MODEL).get(lc.CHAMPION, lc.NO_BASELINE)
        for key, value in {lc.VALIDATION_STATUS: "passed", lc.VALIDATION_BASELINE_VERSION: champion,
                           "validation_accuracy": f"{accuracy:.6f}", lc.APPROVAL_STATUS: "approved"}.items():
            mlflow_client.set_model_version_tag(MODEL, version, key, value)
        mlflow_client.set_registered_model_alias(MODEL, lc.CHALLENGER, version)
        if len(versions) < 2:
            promote(mlflow_client, MODEL, version, policy)
        versions.append(version)
    return versions


@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(tmp_path / "audit.db"))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    return AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")


def run(dag, **conf):
    from airflow.utils.state import DagRunState

    dag_run = dag.test(run_conf={"model_name": MODEL, **conf})
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}, dag_run.state == DagRunState.SUCCESS


def test_rollback_run_restores_the_previous_champion_and_audits_it(rollback_dag, served, audit_log, mlflow_client):
    v1, v2, v3 = served
    dag_run, states, succeeded = run(rollback_dag, reason="CTR dropped after v2")
    assert succeeded, states
    assert get_aliases(mlflow_client, MODEL) == {lc.CHAMPION: v1, lc.PREVIOUS_CHAMPION: v2, lc.CHALLENGER: v3}
    rolled_back, archived = audit_log.events()
    assert (rolled_back.event, rolled_back.version, rolled_back.counterpart_version) == (EventType.ROLLED_BACK, v1, v2)
    assert (rolled_back.actor, rolled_back.reason) == ("dag_test", "CTR dropped after v2")
    assert (rolled_back.dag_id, rolled_back.dag_run_id, rolled_back.from_alias) == (DAG_ID, dag_run.run_id, "previous_champion")
    assert (archived.event, archived.version) == (EventType.ARCHIVED, v2)


def test_a_version_that_never_served_is_refused_and_nothing_moves(rollback_dag, served, audit_log, mlflow_client, capfd):
    v1, v2, v3 = served
    _, states, succeeded = run(rollback_dag, to_version=v3, reason="try the candidate")
    assert not succeeded
    assert (states["plan"], states["rollback"]) == ("failed", "upstream_failed")
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v2
    assert audit_log.events() == []
    assert f"v{v3} has never been champion" in capfd.readouterr().out
