"""The reviewer CLI finds the audit database the way Airflow does: in Airflow's metastore too.

Inside the stack, airflow-init stores the connection ``audit_db`` in the metastore, not in the
environment. Here: a SQLite Airflow metastore in a throwaway AIRFLOW_HOME, the connection put
there with ``airflow connections import`` (as init.sh does), a fresh PostgreSQL database behind
it, and the CLI run as a reviewer runs it, ``python -m include.governance`` in its own process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from include.governance import lifecycle as lc
from tests.include.governance.support import MODEL, validated
from tests.services.conftest import free_port, fresh_database

REPO = Path(__file__).resolve().parents[3]
REVIEWER = "alice"


@pytest.fixture
def airflow_home(airflow_db, tmp_path) -> Path:
    """An Airflow home of its own: a copy of the session's migrated metastore, no audit file."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    # SQLite's backup, not a file copy: Airflow runs the metastore in WAL mode, and while this
    # process holds a connection, recent pages may still sit in airflow.db-wal.
    with closing(sqlite3.connect(airflow_db / "airflow.db")) as source, closing(sqlite3.connect(home / "airflow.db")) as copy:
        source.backup(copy)
    return home


@pytest.fixture
def environment(airflow_home, mlflow_store) -> dict[str, str]:
    """A reviewer's shell in the stack: Airflow configured, no audit setting in the environment."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW_CONN_", "MLFLOW_TRACKING_")) and key != "MOVIE_RECOMMENDER_AUDIT_DB"}
    env.update(AIRFLOW_HOME=str(airflow_home), MLFLOW_TRACKING_URI=mlflow_store["tracking_uri"], PYTHONPATH=str(REPO))
    return env


@pytest.fixture
def waiting_version(mlflow_client, make_version) -> str:
    version = make_version()
    validated(mlflow_client, version, approval_status="pending", approval_reason="Manual approval required")
    return version


def store_audit_connection(env: dict[str, str], tmp_path: Path, **fields) -> None:
    """Write ``audit_db`` into the metastore with Airflow's own CLI, overwriting an earlier one."""
    path = tmp_path / "connections.json"
    path.write_text(json.dumps({"audit_db": {"conn_type": "postgres", "host": "127.0.0.1", "login": "postgres", **fields}}))
    result = subprocess.run([sys.executable, "-m", "airflow", "connections", "import", "--overwrite", str(path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def governance_cli(env: dict[str, str], *args: str, airflow_installed: bool = True) -> subprocess.CompletedProcess:
    """``python -m include.governance ...``; without Airflow importable when asked."""
    if airflow_installed:
        command = [sys.executable, "-m", "include.governance", *args]
    else:
        block = "import sys; sys.modules['airflow'] = None; from include.governance.cli import main; sys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", block, *args]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def audit_rows(url: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(
                "SELECT event, model_name, version, actor, source FROM governance_audit_events ORDER BY id"))]
    finally:
        engine.dispose()


@pytest.mark.services
def test_approve_refuses_an_unreachable_audit_db_then_audits_into_the_one_in_the_metastore(
    environment, airflow_home, waiting_version, mlflow_client, tmp_path
):
    tags_before = mlflow_client.get_model_version(MODEL, waiting_version).tags

    # audit_db configured in the metastore, its server down: refused before the registry changes.
    store_audit_connection(environment, tmp_path, port=free_port(), schema="governance_audit")
    refused = governance_cli(environment, "approve", MODEL, waiting_version, "--reviewer", REVIEWER)
    assert refused.returncode == 4, refused.stderr
    assert "Airflow connection 'audit_db'" in refused.stderr and "no fallback to a local audit file" in refused.stderr, refused.stderr
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags == tags_before
    assert not (airflow_home / "governance_audit.db").exists(), "the decision went to a local SQLite file"

    with fresh_database("audit_cli") as url:
        store_audit_connection(environment, tmp_path, port=5432, schema=url.rsplit("/", 1)[1])
        approved = governance_cli(environment, "approve", MODEL, waiting_version, "--reviewer", REVIEWER)
        assert approved.returncode == 0, approved.stderr
        assert mlflow_client.get_model_version(MODEL, waiting_version).tags[lc.APPROVED_BY] == REVIEWER
        assert audit_rows(url) == [("approved", MODEL, waiting_version, REVIEWER, "cli")]
        assert not (airflow_home / "governance_audit.db").exists()

        # Where Airflow is not installed, the CLI reads AIRFLOW_CONN_AUDIT_DB itself: the same table.
        without_airflow = {**environment, "AIRFLOW_CONN_AUDIT_DB": url.replace("postgresql://", "postgres://", 1)}
        listed = governance_cli(without_airflow, "audit", "--model", MODEL, "--json", airflow_installed=False)
        assert listed.returncode == 0, listed.stderr
        assert [(e["event"], e["actor"]) for e in json.loads(listed.stdout)] == [("approved", REVIEWER)]


def test_without_airflow_and_without_settings_the_cli_uses_the_default_file(environment, airflow_home):
    listed = governance_cli(environment, "history", MODEL, airflow_installed=False)
    assert listed.returncode == 3 and f"no audit database at {airflow_home / 'governance_audit.db'}" in listed.stderr, listed.stderr


def test_an_unreachable_metastore_is_not_taken_for_a_missing_connection(environment, airflow_home, waiting_version, mlflow_client):
    """Airflow's own lookup skips a failing backend ("not defined"); the CLI refuses instead."""
    tags_before = mlflow_client.get_model_version(MODEL, waiting_version).tags
    down = {**environment, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql://postgres@127.0.0.1:{free_port()}/airflow"}
    refused = governance_cli(down, "approve", MODEL, waiting_version, "--reviewer", REVIEWER)
    assert refused.returncode == 4, refused.stderr
    assert "cannot tell whether Airflow connection 'audit_db' is defined" in refused.stderr, refused.stderr
    assert "[database] sql_alchemy_conn" in refused.stderr
    assert mlflow_client.get_model_version(MODEL, waiting_version).tags == tags_before
    assert not (airflow_home / "governance_audit.db").exists()
