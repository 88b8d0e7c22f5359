"""`lineage MODEL VERSION`: aliases, the champion succession around the version and its evidence
files, on a real MLflow store and audit table seeded through the governance steps."""

from __future__ import annotations

import json

import pytest

from include.governance.audit import AuditContext, AuditLog, AuditTrail, registered_event
from include.governance.policy import GovernancePolicy
from include.governance.steps import promote, request_approval, validate
from tests.include.governance.registry_support import run_cli  # noqa: F401
from tests.include.governance.support import MODEL

POLICY = GovernancePolicy.load()
DAG = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1")


@pytest.fixture
def trail(run_cli, mlflow_client):  # noqa: F811
    """The audit table the CLI fixture reads."""
    return AuditTrail(AuditLog(f"sqlite:///{run_cli.audit_path}"), mlflow_client)


def governed(client, trail, make_version, *, promoted=True) -> str:
    version = make_version()
    trail.record(registered_event(client.get_model_version(MODEL, version), DAG))
    validate(client, POLICY, trail, DAG, MODEL, version)
    if promoted:
        request_approval(client, POLICY, trail, DAG, MODEL, version)
        promote(client, POLICY, trail, DAG, MODEL, version)
    return version


@pytest.fixture
def served(mlflow_client, trail, make_version):
    """v1 then v2 promoted; v3 validated only (@challenger)."""
    return tuple(governed(mlflow_client, trail, make_version, promoted=i < 2) for i in range(3))


def lineage(run_cli, version):  # noqa: F811
    code, out, err = run_cli("lineage", MODEL, version, "--json")
    assert code == 0, err
    return json.loads(out)


def test_the_replaced_champion_shows_who_followed_it(run_cli, served):  # noqa: F811
    first, second, _ = served
    found = lineage(run_cli, first)
    assert found["aliases"] == ["previous_champion"]
    [tenure] = found["succession"]
    assert (tenure["how"], tenure["by"], tenure["before"], tenure["after"]) == ("promoted", "carol", None, second)
    assert tenure["took_at"] <= tenure["after_at"]


def test_the_champion_shows_whom_it_replaced_and_since_when(run_cli, served):  # noqa: F811
    first, second, _ = served
    found = lineage(run_cli, second)
    assert found["aliases"] == ["champion"]
    [tenure] = found["succession"]
    assert (tenure["before"], tenure["after"], tenure["after_at"]) == (first, None, None)
    assert tenure["before_since"] is not None


def test_a_version_that_never_served_has_no_succession_but_its_evidence(run_cli, served, mlflow_client):  # noqa: F811
    candidate = served[2]
    found = lineage(run_cli, candidate)
    assert found["aliases"] == ["challenger"]
    assert found["succession"] == []
    paths = {f["path"] for f in found["evidence"]}
    assert {f"validation/validation_report_v{candidate}.json", f"validation/validation_chart_v{candidate}.png"} <= paths
    root = mlflow_client.get_run(found["run_id"]).info.artifact_uri
    assert all(f["uri"] == f"{root}/{f['path']}" and f["size"] > 0 for f in found["evidence"])


def test_the_text_view_names_aliases_succession_and_evidence(run_cli, served):  # noqa: F811
    first, second, _ = served
    code, out, err = run_cli("lineage", MODEL, first)
    assert code == 0, err
    assert "@previous_champion" in out
    assert f"replaced nobody; then v{second} at" in out
    assert f"validation/validation_report_v{first}.json" in out


def test_without_an_audit_trail_the_succession_is_unknown(run_cli, make_version):  # noqa: F811
    version = make_version()
    code, out, err = run_cli("lineage", MODEL, version)
    assert code == 0, err
    assert "unknown (no audit trail)" in out
    assert not run_cli.audit_path.exists()  # looking created nothing
