"""One SMTP server and one HTTP receiver for the whole package (each started once); every test
gets them emptied, with the Airflow connections and base URLs pointing at them."""

from __future__ import annotations

import json

import pytest

from include.governance.audit import AuditLog, AuditTrail
from include.governance.notifications.links import MLFLOW_UI_URL_ENV

from tests.include.governance.notifications.support import AIRFLOW_BASE, MLFLOW_BASE, HttpReceiver, Mailbox, free_port


@pytest.fixture(scope="package")
def smtp_server():
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture(scope="package")
def http_receiver():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def receivers(smtp_server, http_receiver, monkeypatch):
    """The receivers, emptied and answering 200, and the connections the test channels use."""
    mailbox, smtp_port = smtp_server
    mailbox.messages.clear()
    http_receiver.posts.clear()
    http_receiver.status = 200
    smtp = {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
            "extra": {"disable_ssl": True, "disable_tls": True}}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(smtp))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_TEST", json.dumps(
        {"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{http_receiver.port}/slack/T000/B000/XXX"}))
    monkeypatch.setenv("AIRFLOW_CONN_WEBHOOK_TEST", f"http://127.0.0.1:{http_receiver.port}/governance")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", AIRFLOW_BASE)
    monkeypatch.setenv(MLFLOW_UI_URL_ENV, MLFLOW_BASE)
    return mailbox, http_receiver


@pytest.fixture
def trail(tmp_path, mlflow_client):
    return AuditTrail(AuditLog(f"sqlite:///{tmp_path / 'audit.db'}"), mlflow_client)
