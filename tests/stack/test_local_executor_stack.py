"""The production stack of docker-compose.yaml, run by the stack runner, end to end.

LocalExecutor, FAB auth manager, MLflow with governance-auth and its two Airflow identities, the
audit database with its writer role: all as docker-compose.yaml and its init jobs configure
them. The tests in this module share one model and run in file order (each fixture builds on
the last: a first champion, then a version waiting for a reviewer).

The retrain DAG allows one run at a time and a run takes minutes, so the first run carries the
MLflow crash too: the runner kills and restarts MLflow while ``train`` runs, and that run must
still end at @champion with one version. The second run (manual approval, promoted after the
review) is the run without a fault.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from dataclasses import dataclass

import psycopg2
import pytest

from tests.stack.conftest import TIMINGS
from tests.stack.harness import DAG_ID, REVIEW_DAG_ID, RUN_CONF, run_finished, wait_until

pytestmark = pytest.mark.services
MODEL = "stack_recommender"
RUN_TIMEOUT = 900


@pytest.fixture(scope="module")
def admin(compose_stack):
    api = compose_stack.api()
    wait_until("the DAGs to be parsed", lambda: api.get_dag(DAG_ID) and api.get_dag(REVIEW_DAG_ID), 300, compose_stack)
    api.set_paused(DAG_ID, False)
    api.set_paused(REVIEW_DAG_ID, False)
    yield api
    api.close()


@dataclass
class ChampionRun:
    run_id: str
    state: str
    mlflow_restart: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def champion_run(compose_stack, admin) -> ChampionRun:
    """The first run of MODEL, with MLflow killed (SIGKILL) and restarted by the runner during train."""
    started = time.monotonic()
    run_id = admin.trigger(DAG_ID, {**RUN_CONF, "model_name": MODEL})["dag_run_id"]
    wait_until("train to run", lambda: admin.task_states(DAG_ID, run_id).get("train") == "running", RUN_TIMEOUT, compose_stack)
    restarted = compose_stack.runner("restart", "mlflow", "--kill")
    state = wait_until(f"run {run_id} to finish", lambda: run_finished(admin, run_id), RUN_TIMEOUT, compose_stack)
    TIMINGS["trigger -> @champion, MLflow restarted in train (LocalExecutor), seconds"] = time.monotonic() - started
    return ChampionRun(run_id, state, restarted)


def test_the_stack_scheduler_runs_the_retrain_dag_to_champion(compose_stack, champion_run):
    assert champion_run.state == "success", compose_stack.diagnostics()
    assert compose_stack.alias(MODEL, "champion") == "1"
    tags = compose_stack.version(MODEL, "1")["tags"]
    assert tags["validation_status"] == "passed"
    assert tags["approval_status"] == "approved"
    assert tags["airflow_run_id"] == champion_run.run_id


def test_a_run_survives_mlflow_killed_and_restarted_by_the_runner(compose_stack, champion_run):
    assert champion_run.mlflow_restart.returncode == 0, champion_run.mlflow_restart.stdout
    assert champion_run.state == "success", compose_stack.diagnostics()
    versions = compose_stack.mlflow("ADMIN", "GET", "model-versions/search", params={"filter": f"name='{MODEL}'"}).json()
    assert [mv["version"] for mv in versions["model_versions"]] == ["1"]
    assert compose_stack.alias(MODEL, "champion") == "1"


def test_the_training_account_created_the_run_and_cannot_approve(compose_stack, champion_run):
    experiment = compose_stack.mlflow("ADMIN", "GET", "experiments/get-by-name",
                                      params={"experiment_name": "movie_recommendation"}).json()["experiment"]
    def permission(role: str) -> str:
        response = compose_stack.mlflow("ADMIN", "GET", "users/permissions/get", api="3.0", params={
            "username": compose_stack.env[f"MLFLOW_{role}_USERNAME"], "resource_type": "experiment",
            "resource_id": experiment["experiment_id"]})
        assert response.status_code == 200, response.text
        return response.json()["permission"]

    # mlflow-init grants both accounts EDIT on every experiment; MLflow gives MANAGE to the one
    # whose login created it: the training account's, the identity of the train task.
    assert (permission("TRAINER"), permission("GOVERNANCE")) == ("MANAGE", "EDIT")
    refused = compose_stack.mlflow("TRAINER", "POST", "model-versions/set-tag",
                                   json={"name": MODEL, "version": "1", "key": "approval_status", "value": "rejected"})
    assert refused.status_code == 403, refused.text
    assert "approval_status" in refused.text
    # So the verdicts on the version were written by the governance account, as designed.
    assert compose_stack.version(MODEL, "1")["tags"]["approval_status"] == "approved"


@pytest.fixture(scope="module")
def pending_version(compose_stack, admin, champion_run):
    """A second run with approval_mode=manual, waiting for a reviewer on version 2."""
    run_id = admin.trigger(DAG_ID, {**RUN_CONF, "model_name": MODEL, "approval_mode": "manual"})["dag_run_id"]

    def waiting():
        states = admin.task_states(DAG_ID, run_id)
        return states.get("wait_for_approval") in ("up_for_reschedule", "running", "deferred")

    wait_until("wait_for_approval to wait", waiting, RUN_TIMEOUT, compose_stack)
    tags = compose_stack.version(MODEL, "2")["tags"]
    assert tags["airflow_run_id"] == run_id and tags["approval_status"] == "pending", tags
    return run_id, "2"


def governance_login(stack) -> dict[str, str]:
    """A reviewer's MLflow login for the CLI (here the governance account: MANAGE on models)."""
    return {"MLFLOW_TRACKING_USERNAME": stack.env["MLFLOW_GOVERNANCE_USERNAME"],
            "MLFLOW_TRACKING_PASSWORD": stack.env["MLFLOW_GOVERNANCE_PASSWORD"]}


def test_the_cli_refuses_to_approve_when_the_audit_database_is_unreachable(compose_stack, pending_version):
    _, version = pending_version
    env = compose_stack.env
    closed_port = compose_stack.port("postgres", 5432) + 1
    unreachable = (f"postgres://{env['AUDIT_DB_WRITER']}:{env['AUDIT_DB_WRITER_PASSWORD']}@127.0.0.1:{closed_port}/"
                   f"{env['AUDIT_DB_NAME']}")
    done = compose_stack.exec("airflow-scheduler", "python", "-m", "include.governance", "approve", MODEL, version,
                              "--reviewer", "bob", "--notes", "no audit, no decision",
                              extra_env={**governance_login(compose_stack), "AIRFLOW_CONN_AUDIT_DB": unreachable})
    assert done.returncode == 4, done.stdout
    assert "audit" in done.stdout.lower()
    assert compose_stack.version(MODEL, version)["tags"]["approval_status"] == "pending"
    airflow_home = compose_stack.state_dir / "rootfs" / "airflow-scheduler" / "opt" / "airflow"
    assert not list(airflow_home.glob("*audit*.db")), "the CLI fell back to a local SQLite audit file"


def test_a_fab_reviewer_approves_through_the_review_dag_and_the_run_promotes(compose_stack, admin, pending_version):
    run_id, version = pending_version
    password = secrets.token_urlsafe(16)
    created = compose_stack.exec("airflow-scheduler", "airflow", "users", "create", "--username", "alice",
                                 "--password", password, "--role", "User", "--firstname", "Alice",
                                 "--lastname", "Reviewer", "--email", "alice@example.com")
    assert created.returncode == 0, created.stdout
    alice = compose_stack.api("alice", password)
    review = alice.trigger(REVIEW_DAG_ID, {"model_name": MODEL, "version": int(version), "decision": "approve",
                                           "notes": "holdout ok"})
    assert wait_until("the review run", lambda: run_finished(alice, review["dag_run_id"], REVIEW_DAG_ID), RUN_TIMEOUT,
                      compose_stack) == "success"
    tags = compose_stack.version(MODEL, version)["tags"]
    assert (tags["approval_status"], tags["approved_by"]) == ("approved", "alice")
    assert wait_until("the waiting run", lambda: run_finished(admin, run_id), RUN_TIMEOUT, compose_stack) == "success"
    assert compose_stack.alias(MODEL, "champion") == version
    alice.close()


def test_the_cli_with_the_scheduler_environment_audits_into_the_stack_database(compose_stack, pending_version):
    listed = compose_stack.exec("airflow-scheduler", "python", "-m", "include.governance", "--json", "audit",
                                "--model", MODEL, extra_env=governance_login(compose_stack))
    assert listed.returncode == 0, listed.stdout
    events = {event["event"] for event in json.loads(listed.stdout[listed.stdout.index("["):])}
    assert {"registered", "validated", "promoted"} <= events, events
    rolled = compose_stack.exec("airflow-scheduler", "python", "-m", "include.governance", "rollback", MODEL,
                                "--actor", "bob", "--reason", "stack test rollback",
                                extra_env=governance_login(compose_stack))
    assert rolled.returncode == 0, rolled.stdout
    assert compose_stack.alias(MODEL, "champion") == "1"
    env = compose_stack.env
    with psycopg2.connect(host="127.0.0.1", port=compose_stack.port("postgres", 5432), dbname=env["AUDIT_DB_NAME"],
                          user=env["AUDIT_DB_OWNER"], password=env["AUDIT_DB_OWNER_PASSWORD"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT actor FROM governance_audit_events WHERE model_name = %s AND event = 'rolled_back'", (MODEL,))
            assert [row[0] for row in cursor.fetchall()] == ["bob"]



# ---- MLflow webhooks (issue #15): mlflow-init's webhook to the api-server's plugin endpoint ----
WEBHOOK_PATH = "/movie-recommender/webhooks/mlflow"
# The stack polls MLflow every 600 s while webhooks are on (docker-compose.yaml); a promotion
# within a third of that was woken by the webhook, not by the poll.
WOKEN_WITHIN = 200


def webhooks(stack) -> list[dict]:
    response = stack.mlflow("ADMIN", "GET", "webhooks")
    assert response.status_code == 200, response.text
    return response.json().get("webhooks", [])


def audit_rows(stack, event: str) -> list[dict]:
    env = stack.env
    with psycopg2.connect(host="127.0.0.1", port=stack.port("postgres", 5432), dbname=env["AUDIT_DB_NAME"],
                          user=env["AUDIT_DB_OWNER"], password=env["AUDIT_DB_OWNER_PASSWORD"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version, details FROM governance_audit_events WHERE model_name = %s AND event = %s "
                           "ORDER BY id", (MODEL, event))
            return [{"version": version, **details} for version, details in cursor.fetchall()]


def test_mlflow_init_made_one_webhook_to_the_api_server_and_a_rerun_updates_it(compose_stack):
    url = f"{compose_stack.airflow_url}{WEBHOOK_PATH}"
    [hook] = webhooks(compose_stack)
    assert hook["url"] == url and hook["status"] == "ACTIVE"
    again = compose_stack.exec("mlflow-init", "python", "-m", "mlflow_governance_auth.provision")
    assert again.returncode == 0 and f"webhook to {url}: updated" in again.stdout, again.stdout
    assert [h["webhook_id"] for h in webhooks(compose_stack)] == [hook["webhook_id"]]


@pytest.fixture(scope="module")
def tag_approved_run(compose_stack, admin, pending_version):
    """A third run waiting in the triggerer, approved by tags set through MLflow (the MLflow UI channel)."""
    run_id = admin.trigger(DAG_ID, {**RUN_CONF, "model_name": MODEL, "approval_mode": "manual"})["dag_run_id"]
    wait_until("wait_for_approval to defer", lambda: admin.task_states(DAG_ID, run_id).get("wait_for_approval") == "deferred",
               RUN_TIMEOUT, compose_stack)
    version = compose_stack.version(MODEL, "3")
    assert version["tags"]["airflow_run_id"] == run_id, version["tags"]
    started = time.monotonic()
    for key, value in (("approved_by", "alice"), ("approval_status", "approved")):
        done = compose_stack.mlflow("GOVERNANCE", "POST", "model-versions/set-tag",
                                    json={"name": MODEL, "version": "3", "key": key, "value": value})
        assert done.status_code == 200, done.text
    champion = wait_until("@champion to move to v3", lambda: compose_stack.alias(MODEL, "champion") == "3", WOKEN_WITHIN,
                          compose_stack, interval=0.5)
    TIMINGS["approval tag set in MLflow -> @champion (webhook wake, 600 s poll), seconds"] = time.monotonic() - started
    return run_id, champion


def test_an_approval_tag_set_in_mlflow_wakes_the_deferred_run_long_before_its_poll(compose_stack, admin, tag_approved_run):
    run_id, _ = tag_approved_run
    assert wait_until("the run", lambda: run_finished(admin, run_id), RUN_TIMEOUT, compose_stack) == "success"
    # The reviewer's tags are a review channel, and the steps' own changes are in-band.
    assert audit_rows(compose_stack, "out_of_band_change") == []
    assert "3" in [row["version"] for row in audit_rows(compose_stack, "approved")]


def test_an_alias_moved_by_hand_in_mlflow_is_audited_as_out_of_band(compose_stack, tag_approved_run):
    moved = compose_stack.mlflow("ADMIN", "POST", "registered-models/alias", json={"name": MODEL, "alias": "champion", "version": "2"})
    assert moved.status_code == 200, moved.text
    [row] = wait_until("the out-of-band change in the audit trail", lambda: audit_rows(compose_stack, "out_of_band_change"),
                       120, compose_stack, interval=0.5)
    assert (row["version"], row["change"], row["alias"], row["old"], row["new"]) == (
        "2", "model_version_alias.created", "champion", "3", "2")
