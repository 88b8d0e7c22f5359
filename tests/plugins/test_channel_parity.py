"""Every channel a person decides through applies the same review rules with the same outcome,
the same message and the same audit rows (real MLflow store, real audit table).

The channels, each driven through its own entry point: the version's tags written directly
(the MLflow UI) and seen by the approval sensor's ``poke``; the reviewer CLI's ``main``; the
review DAG's ``RecordReviewOperator.execute``; the HITL operator's ``execute_complete`` with the
answer Airflow delivers.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from include.governance import lifecycle as lc
from include.governance.audit import AuditLog
from include.governance.registry import register_version
from mlflow_governance.hitl import ModelVersionHITLApprovalOperator
from mlflow_governance.review import RecordReviewOperator
from mlflow_governance.sensors import ModelVersionApprovalSensor
from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model

CHANNELS = ("tags+sensor", "cli", "review", "hitl")
WHERE = f"{MODEL} v1"


@dataclass(frozen=True)
class Case:
    reviewer: str
    approve: bool
    # None: the decision is accepted; else the refusal's reason (the rule, without the version).
    refusal: str | None
    audit: tuple[tuple[str, str], ...]
    # A decision the same channel recorded first (the "second decision" case).
    first: tuple[str, bool] | None = None


CASES = {
    "self-approval": Case(
        "trainer", True, "trainer submitted this version and cannot also approve it (separation of duties)",
        (("approval_refused", "trainer"),),
    ),
    "not an allowed approver": Case(
        "bob", True, "bob is not an allowed approver (alice)", (("approval_refused", "bob"),),
    ),
    "unvalidated version": Case(
        "alice", True, "it has not passed validation, so it cannot be approved", (("approval_refused", "alice"),),
    ),
    "stale candidate": Case(
        "alice", True, "it is no longer the candidate (@challenger is 2): a stale approval does not promote it",
        (("approval_refused", "alice"),),
    ),
    "rejecting the serving champion": Case(
        "alice", False, "it is the serving @champion; roll back to another version instead of rejecting it",
        (("approval_refused", "alice"),),
    ),
    "approving after expiry": Case("alice", True, None, (("approved", "alice"),)),
    "a second decision": Case(
        "carol", False, "it was already approved by alice; a recorded decision is final",
        (("approved", "alice"), ("approval_refused", "carol")), first=("alice", True),
    ),
}


@pytest.fixture
def audit_path(tmp_path, monkeypatch):
    path = tmp_path / "audit.db"
    monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(path))
    monkeypatch.delenv("AIRFLOW_CONN_AUDIT_DB", raising=False)
    return path


@pytest.fixture
def waiting_version(mlflow_connection, mlflow_client):
    """v1 of MODEL, submitted by ``trainer``, validated and waiting for a person (tags set directly)."""
    experiment = mlflow_client.create_experiment("parity", artifact_location=mlflow_connection["artifact_location"])
    run_id, uri = log_tiny_model(mlflow_client, experiment, GOOD_METRICS)
    mv, _ = register_version(mlflow_client, model_name=MODEL, model_uri=uri, run_id=run_id, tags={lc.SUBMITTED_BY: "trainer"})
    now = lc.utc_now_iso()
    set_tags(mlflow_client, {
        lc.VALIDATION_STATUS: "passed", lc.VALIDATION_TIMESTAMP: now, lc.VALIDATION_BASELINE_VERSION: lc.NO_BASELINE,
        "validation_accuracy": "0.800000", lc.APPROVAL_STATUS: "pending",
        lc.APPROVAL_REASON: "Manual approval required (approval mode 'manual')", lc.APPROVAL_TIMESTAMP: now,
    })
    mlflow_client.set_registered_model_alias(MODEL, lc.CHALLENGER, "1")
    return mv


def set_tags(client, tags, version="1"):
    for key, value in tags.items():
        client.set_model_version_tag(MODEL, version, key, value)


def arrange(name: str, client, mv) -> None:
    """Put v1 in the registry state the case is about."""
    if name == "not an allowed approver":
        set_tags(client, {lc.VALIDATION_POLICY_OVERRIDES: json.dumps({"approvers": ["alice"]})})
    elif name == "unvalidated version":
        client.delete_model_version_tag(MODEL, "1", lc.VALIDATION_STATUS)
        client.delete_registered_model_alias(MODEL, lc.CHALLENGER)
    elif name == "stale candidate":
        client.create_model_version(MODEL, source=mv.source, run_id=mv.run_id, tags={lc.SUBMITTED_BY: "trainer"})
        client.set_registered_model_alias(MODEL, lc.CHALLENGER, "2")
    elif name == "rejecting the serving champion":
        client.delete_registered_model_alias(MODEL, lc.CHALLENGER)
        client.set_registered_model_alias(MODEL, lc.CHAMPION, "1")
        set_tags(client, {lc.APPROVAL_STATUS: "approved", lc.APPROVAL_REASON: "First model meets validation criteria"})
    elif name == "approving after expiry":
        set_tags(client, {lc.APPROVAL_STATUS: "expired", lc.APPROVAL_REASON: "No decision within 5 minutes"})


def task_context(user: str = "trainer") -> dict:
    return {
        "task_instance": SimpleNamespace(id="ti-1", task_id="task"),
        "dag": SimpleNamespace(dag_id="movie_recommender_retrain"),
        "run_id": "manual__2025-01-01",
        "dag_run": SimpleNamespace(triggering_user_name=user),
    }


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    message: str


class Channels:
    """Each channel's entry point; every call returns whether the decision was accepted and what it said."""

    def __init__(self, client, store, audit_path, capsys, caplog, monkeypatch) -> None:
        self.client, self.store, self.audit_path = client, store, audit_path
        self.capsys, self.caplog = capsys, caplog
        monkeypatch.setattr("airflow.sdk.execution_time.hitl.upsert_hitl_detail", lambda **request: None)

    def decide(self, channel: str, reviewer: str, approve: bool) -> Outcome:
        return getattr(self, channel.replace("+", "_"))(reviewer, approve)

    def tags_sensor(self, reviewer: str, approve: bool) -> Outcome:
        set_tags(self.client, {lc.APPROVED_BY: reviewer, lc.APPROVAL_STATUS: "approved" if approve else "rejected"})
        sensor = ModelVersionApprovalSensor(task_id="wait_for_approval", model_name=MODEL, version="1")
        try:
            done = sensor.poke(task_context())
        except AirflowFailException as exc:
            return Outcome("Decision refused" not in str(exc), str(exc))
        return Outcome(bool(done), "approved")

    def cli(self, reviewer: str, approve: bool) -> Outcome:
        from include.governance.cli import main

        self.capsys.readouterr()
        code = main(["--tracking-uri", self.store["tracking_uri"], "--audit-db", str(self.audit_path),
                     "approve" if approve else "reject", MODEL, "1", "--reviewer", reviewer])
        out, err = self.capsys.readouterr()
        assert code in (0, 1), err  # 1: refused by policy (the CLI's exit-code table)
        return Outcome(code == 0, out if code == 0 else err)

    def review(self, reviewer: str, approve: bool) -> Outcome:
        operator = RecordReviewOperator(task_id="record_decision", model_name=MODEL, version="1",
                                        decision="approve" if approve else "reject")
        try:
            operator.execute(task_context(user=reviewer))
        except AirflowFailException as exc:
            return Outcome(False, str(exc))
        return Outcome(True, "recorded")

    def hitl(self, reviewer: str, approve: bool) -> Outcome:
        operator = ModelVersionHITLApprovalOperator(
            task_id="review_in_airflow", model_name=MODEL, version="1", approval_mode="hitl", approval_timeout_minutes=5,
        )
        answer = {
            "chosen_options": [operator.APPROVE if approve else operator.REJECT],
            "params_input": {"notes": ""},
            "responded_at": datetime.now(timezone.utc),
            "responded_by_user": {"id": "7", "name": reviewer},
        }
        self.capsys.readouterr()
        try:
            result = operator.execute_complete(task_context(), answer, deadline=time.time() + 60)
        except TaskAwaitingInput:  # refused: the same form opens again
            result = None
        except AirflowFailException as exc:
            return Outcome(False, str(exc))
        if result is not None:
            return Outcome(True, "recorded")
        # The task's log (Airflow's logging writes it to the console): the warning with the refusal.
        logged = "".join(self.capsys.readouterr()) + " ".join(r.getMessage() for r in self.caplog.records)
        return Outcome(False, next((line for line in logged.splitlines() if "Decision refused" in line), ""))


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("name", list(CASES))
def test_every_channel_applies_the_same_rule_with_the_same_message_and_audit_rows(
    name, channel, waiting_version, mlflow_client, mlflow_store, audit_path, capsys, caplog, monkeypatch
):
    case = CASES[name]
    arrange(name, mlflow_client, waiting_version)
    channels = Channels(mlflow_client, mlflow_store, audit_path, capsys, caplog, monkeypatch)
    caplog.set_level(logging.WARNING)
    if case.first:
        assert channels.decide(channel, *case.first).accepted
    before = mlflow_client.get_model_version(MODEL, "1").tags

    outcome = channels.decide(channel, case.reviewer, case.approve)

    events = AuditLog(f"sqlite:///{audit_path}").events(model_name=MODEL, version="1")
    assert tuple((e.event.value, e.actor) for e in events) == case.audit
    if case.refusal is None:
        assert outcome.accepted, outcome.message
        tags = mlflow_client.get_model_version(MODEL, "1").tags
        assert (tags[lc.APPROVAL_STATUS], tags[lc.APPROVED_BY]) == ("approved" if case.approve else "rejected", case.reviewer)
        return
    assert not outcome.accepted
    assert f"{WHERE}: {case.refusal}" in outcome.message
    refused = events[-1]
    assert refused.reason == case.refusal
    assert refused.details["decision"] == ("approved" if case.approve else "rejected")
    if channel != "tags+sensor":  # there the person wrote the tags themselves: nothing else was written
        assert mlflow_client.get_model_version(MODEL, "1").tags == before
