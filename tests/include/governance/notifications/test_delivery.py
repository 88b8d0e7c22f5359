"""Notifications end to end: a real governance step on a real MLflow store, a real audit trail,
and real receivers (SMTP server, HTTP server) on loopback sockets."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import pytest

from include.governance import lifecycle as lc
from include.governance import steps
from include.governance.audit import (
    AuditContext,
    AuditEvent,
    EventType,
    make_event,
    promotion_events,
    retrain_triggered_event,
)
from include.governance.audit.events import as_utc
from include.governance.steps.recording import record

from tests.include.governance.notifications.support import AIRFLOW_BASE, MLFLOW_BASE, policy_routing
from tests.include.governance.support import MODEL, set_tags, validated

RETRAIN_DAG = "movie_recommender_retrain"
RUN_ID = "manual__2026-12-02T08:00:00.123456+00:00"
CONTEXT = AuditContext(actor="alice", source="airflow", dag_id=RETRAIN_DAG, dag_run_id=RUN_ID, task_id="approve")


def hrefs(html: str) -> dict[str, str]:
    return {label: url for url, label in re.findall(r'<a href="([^"]+)">([^<]+)</a>', html)}


def assert_mlflow_link_names_version(url: str, client, version: str) -> None:
    """The MLflow UI link is under the configured base and names a version that exists."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == MLFLOW_BASE
    name, number = re.fullmatch(r"/models/([^/]+)/versions/([^/]+)", parts.fragment).groups()
    assert (unquote(name), unquote(number)) == (MODEL, version)
    assert client.get_model_version(unquote(name), unquote(number)).run_id


def assert_airflow_run_link(url: str, dag_id: str, run_id: str, suffix: str = "") -> None:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == AIRFLOW_BASE
    match = re.fullmatch(rf"/dags/([^/]+)/runs/([^/]+){suffix}", parts.path)
    assert match, url
    assert (unquote(match[1]), unquote(match[2])) == (dag_id, run_id)


@pytest.fixture
def waiting_version(mlflow_client, make_version):
    version = make_version(submitted_by="alice")
    validated(mlflow_client, version)
    set_tags(mlflow_client, version, **{lc.AIRFLOW_DAG_ID: RETRAIN_DAG, lc.AIRFLOW_RUN_ID: RUN_ID})
    return version


def test_request_approval_emails_reviewers_once_with_working_links(receivers, trail, mlflow_client, waiting_version):
    mailbox, _ = receivers
    policy = policy_routing({"approval_requested": ["reviewers"]}, mode="manual")

    decision = steps.request_approval(mlflow_client, policy, trail, CONTEXT, MODEL, waiting_version)
    steps.request_approval(mlflow_client, policy, trail, CONTEXT, MODEL, waiting_version)  # a retried task

    assert decision.status is lc.ApprovalStatus.PENDING
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    assert message["Subject"] == f"[model governance] {MODEL} v{waiting_version} awaits a decision"
    assert message["X-Envelope-To"] == "reviewers@example.com"
    assert message["From"] == "governance@example.com"
    body = mailbox.bodies()[0]
    assert "Submitted by: alice" in body
    assert "accuracy=0.8000" in body
    requested = trail.log.events(kinds=[EventType.APPROVAL_REQUESTED])[0]
    deadline = as_utc(requested.occurred_at) + timedelta(hours=policy.approval.timeout_hours)
    assert f"Decide by: {deadline.isoformat(timespec='minutes')}" in body
    assert f"python -m include.governance approve {MODEL} {waiting_version} --reviewer &lt;you&gt;" in body
    links = hrefs(body)
    assert set(links) == {"Airflow run", "Required Actions", "MLflow version"}
    assert_airflow_run_link(links["Airflow run"], RETRAIN_DAG, RUN_ID)
    assert_airflow_run_link(links["Required Actions"], RETRAIN_DAG, RUN_ID, suffix="/required_actions")
    assert_mlflow_link_names_version(links["MLflow version"], mlflow_client, waiting_version)


def test_a_version_the_policy_approves_at_once_is_not_announced_as_waiting(receivers, trail, mlflow_client, waiting_version):
    mailbox, receiver = receivers
    policy = policy_routing({"approval_requested": ["reviewers"], "approved": ["hook"]})

    decision = steps.request_approval(mlflow_client, policy, trail, CONTEXT, MODEL, waiting_version)

    assert decision.status is lc.ApprovalStatus.APPROVED
    assert mailbox.messages == []
    assert [body["event"]["event"] for _, body in receiver.posts] == ["approved"]


def _events(client, version: str) -> dict[str, AuditEvent]:
    """One event of each notifiable kind the issue names (approval_requested is tested above)."""
    mv = client.get_model_version(MODEL, version)
    ctx = CONTEXT
    return {
        "rejected": make_event(EventType.REJECTED, mv, ctx, stamp="2026-12-02T08:01:00+00:00", actor="bob",
                               reason="rejected by bob", details={"notes": "worse on new users"}),
        "expired": make_event(EventType.EXPIRED, mv, ctx, stamp="2026-12-03T08:00:00+00:00", actor="policy",
                              reason="No decision within 1440 minutes"),
        "promoted": promotion_events(mv, None, ctx, promoted_at="2026-12-02T08:02:00+00:00")[0],
        "rolled_back": make_event(EventType.ROLLED_BACK, mv, ctx, stamp="2026-12-02T08:03:00+00:00", actor="carol",
                                  reason="bad recommendations", counterpart_version="9", to_alias=lc.CHAMPION),
        "retrain_triggered": retrain_triggered_event(
            MODEL, version, AuditContext(actor="policy", source="airflow", dag_id="movie_recommender_monitor",
                                         dag_run_id="scheduled__2026-12-02T00:00:00+00:00", task_id="assess"),
            reason="accuracy 0.61 below the gate 0.75", retrain_dag_id=RETRAIN_DAG,
            retrain_run_id="monitor__scheduled__2026-12-02T00:00:00+00:00"),
        "out_of_band_change": AuditEvent(
            event=EventType.OUT_OF_BAND_CHANGE, model_name=MODEL, version=version, actor="mlflow-webhook",
            occurred_at=as_utc(mv_time(mv)), source="mlflow_webhook", reason="alias champion set by hand",
            details={"alias": "champion"}, dedup_key=f"out_of_band_change/{MODEL}/{version}/delivery-1"),
    }


def mv_time(mv):
    return datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc)


EXPECTED_SUBJECTS = {
    "rejected": "v{v} rejected by bob",
    "expired": "v{v} expired without a decision",
    "promoted": "v{v} promoted to @champion",
    "rolled_back": "rolled back to v{v}",
    "retrain_triggered": "retrain triggered by the monitor",
    "out_of_band_change": "out-of-band change to test_model v{v}",
}


def test_each_event_arrives_once_on_the_webhook_with_its_links(receivers, trail, mlflow_client, waiting_version):
    _, receiver = receivers
    events = _events(mlflow_client, waiting_version)
    policy = policy_routing({kind: ["hook"] for kind in events})

    for event in events.values():
        record(trail, event, policy=policy)
        record(trail, event, policy=policy)  # a retry, or a second channel seeing the same change

    assert [path for path, _ in receiver.posts] == ["/governance"] * len(events)
    by_kind = {body["event"]["event"]: body for _, body in receiver.posts}
    assert set(by_kind) == set(events)
    for kind, body in by_kind.items():
        assert EXPECTED_SUBJECTS[kind].format(v=waiting_version) in body["subject"], kind
        assert body["event"]["model_name"] == MODEL and body["event"]["version"] == waiting_version
        assert_mlflow_link_names_version(body["links"]["MLflow version"], mlflow_client, waiting_version)
    assert_airflow_run_link(by_kind["rejected"]["links"]["Airflow run"], RETRAIN_DAG, RUN_ID)
    retrain = by_kind["retrain_triggered"]["links"]
    assert_airflow_run_link(retrain["Monitor run"], "movie_recommender_monitor", "scheduled__2026-12-02T00:00:00+00:00")
    assert_airflow_run_link(retrain["Retrain run"], RETRAIN_DAG, "monitor__scheduled__2026-12-02T00:00:00+00:00")
    assert "audit verify test_model" in by_kind["out_of_band_change"]["text"]


def test_slack_channel_gets_the_incoming_webhook_format(receivers, trail, mlflow_client, waiting_version):
    _, receiver = receivers
    event = _events(mlflow_client, waiting_version)["rejected"]

    record(trail, event, policy=policy_routing({"rejected": ["chat"]}))

    [(path, body)] = receiver.posts
    assert path == "/slack/T000/B000/XXX"
    assert body["text"].startswith(f"[model governance] {MODEL} v{waiting_version} rejected by bob")
    header, section = body["blocks"]
    assert header["type"] == "header" and section["text"]["type"] == "mrkdwn"
    url = re.search(r"<([^|>]+)\|MLflow version>", section["text"]["text"])[1]
    assert_mlflow_link_names_version(url, mlflow_client, waiting_version)


def test_a_route_may_send_an_event_to_other_recipients(receivers, trail, mlflow_client, waiting_version):
    mailbox, _ = receivers
    event = _events(mlflow_client, waiting_version)["out_of_band_change"]
    policy = policy_routing({"out_of_band_change": [{"channel": "reviewers", "to": ["security@example.com"]}]})

    record(trail, event, policy=policy)

    [message] = mailbox.messages
    assert message["X-Envelope-To"] == "security@example.com"


def test_a_failing_channel_is_audited_and_the_step_succeeds(receivers, trail, mlflow_client, waiting_version, monkeypatch):
    mailbox, receiver = receivers
    receiver.status = 500
    # Nothing listens on the SMTP connection's port any more.
    from tests.include.governance.notifications.support import free_port

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", f'{{"conn_type": "smtp", "host": "127.0.0.1", "port": {free_port()}, '
                                                    '"extra": {"disable_ssl": true, "disable_tls": true}}')
    policy = policy_routing({"approval_requested": ["reviewers", "hook", "chat"]}, mode="manual")

    decision = steps.request_approval(mlflow_client, policy, trail, CONTEXT, MODEL, waiting_version)
    steps.request_approval(mlflow_client, policy, trail, CONTEXT, MODEL, waiting_version)  # a retried task

    assert decision.status is lc.ApprovalStatus.PENDING
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVAL_STATUS] == "pending"
    failures = trail.log.events(kinds=[EventType.NOTIFICATION_FAILED])
    assert sorted(f.details["channel"] for f in failures) == ["chat", "hook", "reviewers"]
    errors = {f.details["channel"]: f.details["error"] for f in failures}
    assert "500" in errors["hook"] and "refused" in errors["reviewers"].lower()
    assert all(f.details["notified_event"] == "approval_requested" for f in failures)
    assert len(receiver.posts) == 2 and mailbox.messages == []  # one try each, none repeated


def test_without_an_audit_trail_nothing_is_sent(receivers, mlflow_client, waiting_version):
    mailbox, receiver = receivers
    policy = policy_routing({"approval_requested": ["reviewers", "hook"]}, mode="manual")

    steps.request_approval(mlflow_client, policy, None, CONTEXT, MODEL, waiting_version)

    assert mailbox.messages == [] and receiver.posts == []


def test_a_channel_that_never_answers_is_cut_off_at_its_timeout(receivers, trail, mlflow_client, waiting_version, monkeypatch):
    import socket

    from include.governance.notifications.config import parse_notifications
    from include.governance.policy import GovernancePolicy

    # Accepts connections (the kernel's backlog) but never reads or answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("AIRFLOW_CONN_SILENT", f"http://127.0.0.1:{silent.getsockname()[1]}/hook")
        policy = GovernancePolicy(notifications=parse_notifications({
            "channels": {"silent": {"type": "webhook", "conn_id": "silent", "timeout_seconds": 1}},
            "routes": {"rejected": ["silent"]},
        }))
        event = _events(mlflow_client, waiting_version)["rejected"]

        assert record(trail, event, policy=policy) == [event]

    (failure,) = trail.log.events(kinds=[EventType.NOTIFICATION_FAILED])
    assert failure.details["channel"] == "silent" and "timed out" in failure.details["error"]
