"""The monitor's trigger_retrain task records retrain_triggered once per triggered run and
notifies it: the real operator, a real MLflow store and audit file, a real HTTP receiver."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from airflow.sdk.exceptions import DagRunTriggerException

from include.governance.audit import AuditLog, EventType
from mlflow_governance.monitoring import TriggerRetrainOperator

from tests.include.governance.notifications.support import CHANNELS

MONITOR_RUN = "scheduled__2026-12-02T00:00:00+00:00"


def context(try_number: int) -> dict:
    return {
        "dag": SimpleNamespace(dag_id="movie_recommender_monitor"),
        "run_id": MONITOR_RUN,
        "ti": SimpleNamespace(task_id="trigger_retrain", try_number=try_number),
        "dag_run": SimpleNamespace(triggering_user_name=None),
    }


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"notifications": {"channels": CHANNELS, "routes": {"retrain_triggered": ["hook"]}}}))
    return str(path)


def test_a_triggered_retrain_is_audited_and_notified_once(receivers, mlflow_connection, policy_file, tmp_path):
    _, receiver = receivers
    operator = TriggerRetrainOperator(
        task_id="trigger_retrain", trigger_dag_id="movie_recommender_retrain", trigger_run_id=f"monitor__{MONITOR_RUN}",
        skip_when_already_exists=True, conf={"model_name": "movie_recommender"},
        note="movie_recommender v3 degraded: accuracy 0.61 below the policy minimum 0.75",
        model_name="movie_recommender", champion_version="3", policy_path=policy_file,
    )

    for try_number in (1, 2):  # a retried trigger task
        with pytest.raises(DagRunTriggerException) as triggered:
            operator.execute(context(try_number))
        assert triggered.value.dag_run_id == f"monitor__{MONITOR_RUN}"

    (event,) = AuditLog(f"sqlite:///{tmp_path / 'governance_audit.db'}").events(kinds=[EventType.RETRAIN_TRIGGERED])
    assert (event.model_name, event.version, event.dag_run_id) == ("movie_recommender", "3", MONITOR_RUN)
    assert event.details["retrain_run_id"] == f"monitor__{MONITOR_RUN}"
    assert "below the policy minimum" in event.reason
    [(_, body)] = receiver.posts
    assert body["event"]["event"] == "retrain_triggered"
    assert "movie_recommender v3 (@champion) degraded" in body["text"]
