"""No secret reaches a task log, an XCom, a rendered template field or the registry.

One retrain run under dag.test() with known secret strings in the connections it reads
(mlflow_default password and an extra token, audit_db's password on a real PostgreSQL database,
an aws_default secret key) and in the environment; then every place the run wrote is scanned:
stdout/stderr of the run (where dag.test prints each task's log), the log files under
AIRFLOW_HOME, every XCom and every RenderedTaskInstanceFields row of the run, the MLflow run's
params and tags and the version's tags, and the audit table.

The scan can fail: a harmless canary (the run's model name) is scanned for in the same places
and must be found in each, so an empty or unread channel cannot pass silently.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.reliability.input_support import SMALL_DATA
from tests.services.conftest import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.services]

# Unique strings that cannot occur by chance; each stands for a different kind of secret.
SECRETS = {
    "mlflow_default password": f"mlflow-pw-{uuid.uuid4().hex}",
    "mlflow_default extra token": f"mlflow-token-{uuid.uuid4().hex}",
    "audit_db password": f"audit-pw-{uuid.uuid4().hex}",
    "aws_default secret key": f"aws-secret-{uuid.uuid4().hex}",
    "environment secret": f"env-secret-{uuid.uuid4().hex}",
}
# Appears legitimately in logs, XComs and rendered fields: proves each channel is really read.
CANARY = f"canary_model_{uuid.uuid4().hex[:8]}"


def find(needles: dict[str, str], haystacks: dict[str, str]) -> list[tuple[str, str]]:
    """(needle name, place) for every needle found in every haystack."""
    return [(name, place) for name, needle in needles.items() for place, text in haystacks.items() if needle in text]


def test_the_scan_finds_a_planted_secret():
    """Control for `find`: a secret planted in one place is reported in that place only."""
    places = {"log": "a line with " + SECRETS["audit_db password"] + " in it", "xcom": '{"version": "1"}'}
    assert find(SECRETS, places) == [("audit_db password", "log")]


@pytest.fixture
def secret_connections(mlflow_store, monkeypatch):
    """Connections and environment holding the secrets; the audit table on a fresh database."""
    import mlflow_governance.audit as audit_module

    with fresh_database("no_secrets") as url:
        database = url.rsplit("/", 1)[1]
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT",
            json.dumps({
                "conn_type": "generic", "host": mlflow_store["tracking_uri"],
                "login": "mlflow-user", "password": SECRETS["mlflow_default password"],
                "extra": {"artifact_location": mlflow_store["artifact_location"], "token": SECRETS["mlflow_default extra token"]},
            }),
        )
        # Trust auth ignores the password, but Airflow and the hook still carry it everywhere.
        monkeypatch.setenv(
            "AIRFLOW_CONN_AUDIT_DB",
            json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "schema": database,
                        "login": "postgres", "password": SECRETS["audit_db password"]}),
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "login": "AKIAEXAMPLE",
                        "password": SECRETS["aws_default secret key"],
                        "extra": {"aws_secret_access_key": SECRETS["aws_default secret key"]}}),
        )
        monkeypatch.setenv("MOVIE_RECOMMENDER_API_TOKEN", SECRETS["environment secret"])
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(name, raising=False)  # the hook sets them from the connection
        # The audit sink caches one engine per connection id for the process: start clean.
        monkeypatch.setattr(audit_module, "_logs", {})
        try:
            yield url
        finally:
            for log in audit_module._logs.values():
                log.engine.dispose() if hasattr(log, "engine") else None


def _task_log_files(since: float) -> dict[str, str]:
    home = Path(os.environ["AIRFLOW_HOME"])
    return {
        f"log file {path.relative_to(home)}": path.read_text(errors="replace")
        for path in home.rglob("*.log")
        if path.stat().st_mtime >= since
    }


def _run_records(dag_id: str, run_id: str) -> dict[str, str]:
    """Every XCom value and rendered template field the run stored, one entry per row."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    records = {}
    with create_session() as session:
        for row in session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id):
            records[f"xcom {row.task_id}.{row.key}"] = json.dumps(row.value, default=str)
        for row in session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id
        ):
            records[f"rendered {row.task_id}"] = json.dumps(row.rendered_fields, default=str) + json.dumps(row.k8s_pod_yaml, default=str)
    return records


def _registry_records(client, model_name: str) -> dict[str, str]:
    records = {}
    for mv in client.search_model_versions(f"name = '{model_name}'"):
        records[f"version {mv.version} tags"] = json.dumps(mv.tags)
        run = client.get_run(mv.run_id)
        records[f"run {mv.run_id} params+tags"] = json.dumps({**run.data.params, **run.data.tags})
    return records


def _audit_rows(url: str) -> dict[str, str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT * FROM governance_audit_events")).mappings().all()
    finally:
        engine.dispose()
    return {f"audit row {i}": json.dumps(dict(row), default=str) for i, row in enumerate(rows)}


def test_no_secret_in_logs_xcom_rendered_fields_or_registry(parse_dag, secret_connections, mlflow_client, capfd):
    import time

    started = time.time()
    dag = parse_dag("movie_recommender_retrain")
    dag_run = dag.test(run_conf={"data_source": SMALL_DATA, "model_name": CANARY})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states

    captured = capfd.readouterr()
    places = {"dag.test stdout": captured.out, "dag.test stderr": captured.err, **_task_log_files(started)}
    records = _run_records(dag.dag_id, dag_run.run_id)
    places.update(records)
    places.update(_registry_records(mlflow_client, CANARY))
    audit = _audit_rows(secret_connections)
    places.update(audit)

    assert find(SECRETS, places) == []
    # Each channel was read and holds the run's own data (the canary): the scan was not vacuous.
    channels = {"dag.test stdout": [p for p in places if p == "dag.test stdout"],
                "xcom": [p for p in records if p.startswith("xcom")],
                "rendered": [p for p in records if p.startswith("rendered")],
                "audit": list(audit)}
    for channel, names in channels.items():
        assert any(CANARY in places[name] for name in names), f"canary not found in any {channel} record"
    print(f"scanned {len(places)} places ({sum(map(len, places.values()))} characters) for {len(SECRETS)} secrets")
