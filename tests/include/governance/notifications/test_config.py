"""The policy file's notifications section: validated key by key, empty by default."""

from __future__ import annotations

import textwrap

import pytest

from include.governance.notifications.config import Target
from include.governance.policy import DEFAULT_POLICY_PATH, GovernancePolicy, PolicyError

EXAMPLE = """
notifications:
  channels:
    reviewers: {type: email, to: [ml-reviewers@example.com]}
    team_chat: {type: slack, conn_id: slack_governance, timeout_seconds: 5}
    ops_webhook: {type: webhook}
  routes:
    approval_requested: [reviewers, team_chat]
    out_of_band_change: [{channel: reviewers, to: [security@example.com]}, ops_webhook]
"""


def load(tmp_path, text: str) -> GovernancePolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return GovernancePolicy.load(path)


def test_the_packaged_policy_sends_nothing():
    policy = GovernancePolicy.load()
    assert policy.notifications.routes == {} and policy.notifications.channels == {}
    assert "# notifications:" in DEFAULT_POLICY_PATH.read_text()  # the commented example


def test_the_readme_example_parses(tmp_path):
    notifications = load(tmp_path, EXAMPLE).notifications
    assert notifications.channels["reviewers"].conn_id == "smtp_default"
    assert notifications.channels["ops_webhook"].conn_id == "governance_webhook"
    assert notifications.channels["team_chat"].timeout_seconds == 5.0
    assert notifications.targets("out_of_band_change") == (
        Target("reviewers", ("security@example.com",)), Target("ops_webhook"))
    assert notifications.targets("promoted") == ()


def test_overrides_keep_the_files_notifications(tmp_path):
    policy = load(tmp_path, EXAMPLE)
    assert policy.with_overrides({"min_accuracy": 0.8}).notifications == policy.notifications
    with pytest.raises(PolicyError, match="notifications"):
        policy.with_overrides({"notifications": {}})


@pytest.mark.parametrize(
    "section, named",
    [
        ("{colour: red}", r"notifications: unknown key\(s\) \['colour'\]"),
        ("{channels: {a: {type: pager}}}", r"notifications.channels.a.type: 'pager' is not one of email, slack, webhook"),
        ("{channels: {a: {type: slack, to: [x@example.com]}}}", r"notifications.channels.a: unknown key\(s\) \['to'\]"),
        ("{channels: {a: {type: slack, timeout_seconds: 0}}}", r"notifications.channels.a.timeout_seconds: 0"),
        ("{channels: {a: {type: slack, conn_id: ''}}}", r"notifications.channels.a.conn_id"),
        ("{channels: {a: {type: email, to: nobody}}}", r"notifications.channels.a.to: \['nobody'\] is not a list of email"),
        ("{channels: {a: {type: slack}}, routes: {promotted: [a]}}", r"notifications.routes: unknown event 'promotted'"),
        ("{channels: {a: {type: slack}}, routes: {notification_failed: [a]}}", r"unknown event 'notification_failed'"),
        ("{channels: {a: {type: slack}}, routes: {promoted: [b]}}", r"notifications.routes.promoted\[0\].channel: 'b' is not a channel"),
        ("{channels: {a: {type: slack}}, routes: {promoted: [{channel: a, cc: x}]}}", r"notifications.routes.promoted\[0\]: unknown key\(s\) \['cc'\]"),
        ("{channels: {a: {type: slack}}, routes: {promoted: [{channel: a, to: [x@example.com]}]}}", r"promoted\[0\].to: recipients apply to email"),
        ("{channels: {a: {type: email}}, routes: {promoted: [a]}}", r"promoted\[0\]: email channel 'a' has no recipients"),
        ("{channels: [a]}", r"notifications.channels: expected a mapping, got list"),
        ("{channels: {a: {type: slack}}, routes: {promoted: 7}}", r"notifications.routes.promoted: expected a list"),
    ],
)
def test_a_bad_section_is_refused_naming_the_key(tmp_path, section, named):
    with pytest.raises(PolicyError, match=named) as refused:
        load(tmp_path, f"notifications: {section}\n")
    assert str(tmp_path / "policy.yaml") in str(refused.value)
