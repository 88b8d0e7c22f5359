"""Steps announce themselves before they change the registry, and say when they finished."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.governance.audit import AuditContext, AuditLog, AuditTrail
from include.governance.audit.intents import OPEN_FOR, IntentLog, StepIntent
from include.governance.policy import GovernancePolicy
from include.governance.promotion import PromotionRefused
from include.governance.steps import promote, validate

from tests.include.governance.support import MODEL

POLICY = GovernancePolicy.load()
TASK = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1",
                    task_id="validate")


@pytest.fixture
def trail(tmp_path, mlflow_client):
    return AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)


def test_a_step_is_announced_before_its_audit_row_and_finished_after(mlflow_client, make_version, trail):
    version = make_version()
    before = datetime.now(timezone.utc)
    validate(mlflow_client, POLICY, trail, TASK, MODEL, version)
    [intent] = IntentLog(trail.log.engine).about(MODEL, since=before)
    [validated] = trail.log.events(model_name=MODEL)
    assert (intent.step, intent.version, intent.actor, intent.dag_run_id, intent.task_id) == (
        "validate", version, "carol", "manual__1", "validate")
    assert intent.started_at <= validated.recorded_at <= intent.finished_at


def test_a_refused_step_still_says_it_finished(mlflow_client, make_version, trail):
    version = make_version()  # never validated: promotion is refused
    before = datetime.now(timezone.utc)
    with pytest.raises(PromotionRefused):
        promote(mlflow_client, POLICY, trail, TASK, MODEL, version)
    [intent] = IntentLog(trail.log.engine).about(MODEL, since=before)
    # Promotion moves aliases on other versions too: announced for the whole model.
    assert (intent.step, intent.version) == ("promote", None) and intent.finished_at is not None


def test_what_an_announcement_covers():
    started = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    running = StepIntent("i1", MODEL, "2", "validate", "carol", "airflow", "manual__1", "validate", started)
    assert running.covers(MODEL, "2", started + timedelta(minutes=5))
    assert not running.covers(MODEL, "3", started + timedelta(minutes=5))
    assert not running.covers("other_model", "2", started + timedelta(minutes=5))
    assert not running.covers(MODEL, "2", started - timedelta(seconds=10))
    # A step that died without finishing stops covering changes after OPEN_FOR.
    assert not running.covers(MODEL, "2", started + OPEN_FOR + timedelta(seconds=1))
    done = StepIntent("i2", MODEL, None, "promote", "carol", "airflow", "manual__1", "promote", started,
                      finished_at=started + timedelta(seconds=30))
    assert done.covers(MODEL, "7", started + timedelta(seconds=30))
    # After the step, its audit rows judge the change: a by-hand move right after is not covered.
    assert not done.covers(MODEL, "7", started + timedelta(seconds=31))
