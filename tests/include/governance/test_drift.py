"""`audit verify`: changes made behind the project's back are found; a governed run shows none."""

from __future__ import annotations

import json

import pytest

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditLog, AuditTrail, registered_event
from include.governance.drift import verify
from include.governance.policy import GovernancePolicy
from include.governance.steps import promote, request_approval, validate
from include.governance.steps.delete import delete_version

from tests.include.governance.registry_support import run_cli  # noqa: F401
from tests.include.governance.support import MODEL

POLICY = GovernancePolicy.load()
DAG = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1")


@pytest.fixture
def trail(run_cli, mlflow_client):  # noqa: F811
    """The audit table the CLI fixture reads."""
    return AuditTrail(AuditLog(f"sqlite:///{run_cli.audit_path}"), mlflow_client)


def governed(client, trail, make_version) -> str:
    """Register, validate, request approval (the auto policy approves) and promote one version."""
    version = make_version()
    trail.record(registered_event(client.get_model_version(MODEL, version), DAG))
    validate(client, POLICY, trail, DAG, MODEL, version)
    request_approval(client, POLICY, trail, DAG, MODEL, version)
    promote(client, POLICY, trail, DAG, MODEL, version)
    return version


@pytest.fixture
def served(mlflow_client, trail, make_version):
    """v1 then v2 promoted through the steps: v2 @champion, v1 @previous_champion."""
    first = governed(mlflow_client, trail, make_version)
    second = governed(mlflow_client, trail, make_version)
    aliases = mlflow_client.get_registered_model(MODEL).aliases
    assert (str(aliases[lc.CHAMPION]), str(aliases[lc.PREVIOUS_CHAMPION])) == (second, first)
    return first, second


def test_a_governed_sequence_shows_no_drift(mlflow_client, trail, served, run_cli, make_version):  # noqa: F811
    assert verify(mlflow_client, trail.log) == []
    third = make_version()
    trail.record(registered_event(mlflow_client.get_model_version(MODEL, third), DAG))
    delete_version(mlflow_client, POLICY, trail, DAG, MODEL, third, reason="not needed")  # audited: no drift
    code, out, err = run_cli("audit", "verify", MODEL)
    assert code == 0, err
    assert "No drift" in out


def test_champion_moved_behind_the_projects_back(mlflow_client, trail, served, run_cli):  # noqa: F811
    first, second = served
    mlflow_client.set_registered_model_alias(MODEL, lc.CHAMPION, first)
    [drift] = verify(mlflow_client, trail.log, MODEL)
    assert (drift.kind, drift.subject, drift.expected, drift.actual) == ("alias_moved", "@champion", second, first)
    assert f"set_registered_model_alias('{MODEL}', 'champion', '{second}')" in drift.restore
    assert f"rollback {MODEL} --to {second}" in drift.restore
    assert drift.last_right_at is not None and "promoted" in drift.last_event
    code, out, _ = run_cli("audit", "verify", "--json")
    assert code == 1
    assert [d["subject"] for d in json.loads(out)["drift"]] == ["@champion"]


def test_version_deleted_behind_the_projects_back(mlflow_client, trail, served):
    first, _ = served
    run_id = mlflow_client.get_model_version(MODEL, first).run_id
    mlflow_client.delete_model_version(MODEL, first)  # also drops its @previous_champion
    found = {(d.kind, d.subject): d for d in verify(mlflow_client, trail.log, MODEL)}
    assert set(found) == {("version_deleted", f"v{first}"), ("alias_moved", "@previous_champion")}
    assert f"run_id='{run_id}'" in found[("version_deleted", f"v{first}")].restore
    assert found[("alias_moved", "@previous_champion")].actual is None


def test_approval_tag_changed_behind_the_projects_back(mlflow_client, trail, served, run_cli):  # noqa: F811
    first, second = served
    mlflow_client.set_model_version_tag(MODEL, second, lc.APPROVAL_STATUS, "rejected")
    mlflow_client.set_model_version_tag(MODEL, first, lc.APPROVED_BY, "mallory")
    found = {(d.subject): d for d in verify(mlflow_client, trail.log, MODEL)}
    assert set(found) == {f"v{second} {lc.APPROVAL_STATUS}", f"v{first} {lc.APPROVED_BY}"}
    status = found[f"v{second} {lc.APPROVAL_STATUS}"]
    assert (status.expected, status.actual) == ("approved", "rejected")
    assert f"set_model_version_tag('{MODEL}', '{second}', 'approval_status', 'approved')" in status.restore
    assert "delete_model_version_tag" in found[f"v{first} {lc.APPROVED_BY}"].restore
    code, out, _ = run_cli("audit", "verify", MODEL)
    assert code == 1
    assert "tag_changed" in out and "mallory" in out


def test_audit_verify_exit_code_as_users_run_it(mlflow_client, mlflow_store, trail, served, run_cli):  # noqa: F811
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(MLFLOW_TRACKING_URI=mlflow_store["tracking_uri"], MOVIE_RECOMMENDER_AUDIT_DB=str(run_cli.audit_path),
               PYTHONPATH=str(repo))

    def verify_command():
        return subprocess.run([sys.executable, "-m", "include.governance", "audit", "verify", MODEL],
                              capture_output=True, text=True, cwd=repo, env=env, timeout=180)

    assert verify_command().returncode == 0
    mlflow_client.delete_registered_model_alias(MODEL, lc.CHAMPION)
    result = verify_command()
    assert result.returncode == 1, result.stderr
    assert "@champion" in result.stdout and "set_registered_model_alias" in result.stdout
