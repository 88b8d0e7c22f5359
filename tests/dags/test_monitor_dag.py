"""The monitor DAG is wired as promised: schedule, branch, and a trigger the retrain DAG accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MONITOR = "movie_recommender_monitor"
RETRAIN = "movie_recommender_retrain"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def monitor(dagbag):
    return dagbag.dags[MONITOR]


def test_scheduled_daily_one_run_at_a_time_without_catchup(monitor):
    assert monitor.timetable.can_be_scheduled
    assert monitor.timetable.expression in ("@daily", "0 0 * * *")
    assert monitor.catchup is False
    assert monitor.max_active_runs == 1
    assert monitor.doc_md and "window" in monitor.doc_md
    assert "monitoring" in monitor.tags


def test_branch_between_trigger_and_no_retrain(monitor):
    assert set(monitor.task_ids) == {"score_champion", "assess", "trigger_retrain", "no_retrain", "verify_audit_trail"}
    assert monitor.get_task("assess").upstream_task_ids == {"score_champion"}
    assert monitor.get_task("trigger_retrain").upstream_task_ids == {"assess"}
    assert monitor.get_task("no_retrain").upstream_task_ids == {"assess"}
    from airflow.providers.standard.operators.python import BranchPythonOperator

    assert isinstance(monitor.get_task("assess"), BranchPythonOperator)


def test_the_drift_check_stands_beside_the_scoring_branch(monitor):
    verify = monitor.get_task("verify_audit_trail")
    assert verify.upstream_task_ids == set() and verify.downstream_task_ids == set()
    assert verify.retries == 0  # drift found stays found: alert at once
    assert monitor.params["check_drift"] is True


def test_tasks_retry(monitor):
    for task_id in ("score_champion", "assess", "trigger_retrain"):
        assert monitor.get_task(task_id).retries >= 1, task_id


def test_trigger_targets_the_retrain_dag_with_params_it_declares(dagbag, monitor):
    from mlflow_governance.monitoring import TriggerRetrainOperator

    trigger = monitor.get_task("trigger_retrain")
    assert isinstance(trigger, TriggerRetrainOperator)
    assert trigger.trigger_dag_id == RETRAIN and RETRAIN in dagbag.dags
    retrain_params = dagbag.dags[RETRAIN].params
    assert set(trigger.conf) <= set(retrain_params.keys())
    assert "trigger_reason" not in trigger.conf
    # The reason travels in the run note, rendered at run time.
    assert "note" in trigger.template_fields and "trigger_reason" in trigger.note
    # A retried trigger must not start a second retrain.
    assert trigger.skip_when_already_exists and "{{ run_id }}" in trigger.trigger_run_id


def test_monitor_model_name_rule_is_the_retrain_dags(dagbag, monitor):
    retrain = dagbag.dags[RETRAIN]
    assert monitor.params.get_param("model_name").schema["pattern"] == retrain.params.get_param("model_name").schema["pattern"]


def test_default_params_are_valid(monitor):
    monitor.params.validate()


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("model_name", "has spaces"),
        ("data_source", ""),
        ("window_days", 0),
        ("window_days", 2.5),
        ("margin", -0.1),
        ("margin", 1.5),
    ],
)
def test_invalid_params_are_refused_before_the_run(monitor, param, value):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(monitor.params)
    with pytest.raises(ParamValidationError, match=param):
        params[param] = value
        params.validate()
