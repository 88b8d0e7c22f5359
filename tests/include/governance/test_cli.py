"""The reviewer CLI against a real MLflow store.

Commands run in-process through ``cli.main`` (the same parsing, exit codes and output; a fresh
interpreter costs seconds of MLflow import per call), and the decisive ones also as users run
them: ``python -m include.governance`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.governance import lifecycle as lc
from include.governance.approval import pending_versions
from include.governance.audit import AuditContext, AuditLog, AuditTrail, EventType, promotion_events
from include.governance.policy import GovernancePolicy
from include.governance.promotion import promote
from include.governance.registry import get_aliases

from tests.include.governance.support import GOOD_METRICS, MODEL, set_tags, validated

REPO = Path(__file__).resolve().parents[3]
POLICY = GovernancePolicy.load()
DAG = AuditContext(actor="carol", source="airflow", dag_id="movie_recommender_retrain", dag_run_id="manual__1")


@pytest.fixture
def audit_path(tmp_path):
    return tmp_path / "audit.db"


@pytest.fixture
def cli(mlflow_store, audit_path, monkeypatch, capsys):
    """Run a CLI command on the test's store and audit file; returns (code, stdout, stderr).

    ``subprocess=True`` runs ``python -m include.governance`` in a fresh interpreter.
    """
    from include.governance.cli import main

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        MLFLOW_TRACKING_URI=mlflow_store["tracking_uri"],
        MOVIE_RECOMMENDER_AUDIT_DB=str(audit_path),
        PYTHONPATH=str(REPO),
    )

    def run(*args: str, env_overrides: dict | None = None, subprocess_: bool = False):
        full_env = {**env, **(env_overrides or {})}
        if subprocess_:
            result = subprocess.run(
                [sys.executable, "-m", "include.governance", *args],
                capture_output=True, text=True, cwd=REPO, env=full_env, timeout=120,
            )
            return result.returncode, result.stdout, result.stderr
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
                patch.delenv(key)
            for key, value in full_env.items():
                patch.setenv(key, value)
            capsys.readouterr()
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def serve(client, version, trail, baseline=None):
    """Validate, approve (policy) and promote a version, recording the promotion as the DAG would."""
    validated(client, version, baseline, approval_status="approved", approval_reason="First model")
    result = promote(client, MODEL, version, POLICY.approval)
    mv = client.get_model_version(MODEL, version)
    old = client.get_model_version(MODEL, result.previous_champion) if result.previous_champion else None
    trail.record(*promotion_events(mv, old, DAG, promoted_at=result.promoted_at))


@pytest.fixture
def registry(mlflow_client, make_version, audit_path):
    """v1 champion, v2 waiting for a reviewer as @challenger, v3 an older waiting one (stale)."""
    trail = AuditTrail(AuditLog(f"sqlite:///{audit_path}"), mlflow_client)
    v1 = make_version()
    serve(mlflow_client, v1, trail)
    v3 = make_version({**GOOD_METRICS, "accuracy": 0.81})
    validated(mlflow_client, v3, v1, approval_status="needs_review", approval_reason="Performance degradation requires review")
    v2 = make_version({**GOOD_METRICS, "accuracy": 0.83, "recall": 0.79})
    validated(mlflow_client, v2, v1, approval_status="pending", approval_reason="Manual approval required")
    return {"v1": v1, "v2": v2, "v3": v3, "trail": trail}


def test_help_documents_commands_and_exit_codes(cli):
    code, out, _ = cli("--help", subprocess_=True)
    assert code == 0
    for word in ("pending", "show", "compare", "lineage", "approve", "reject", "rollback", "audit", "history",
                 "exit codes", "MLFLOW_TRACKING_URI", "MOVIE_RECOMMENDER_AUDIT_DB"):
        assert word in out
    code, _, err = cli("approve", MODEL, "2", subprocess_=True)
    assert code == 2 and "--reviewer" in err
    code, _, err = cli("show", MODEL, "two")
    assert code == 2 and "invalid version 'two'" in err


def test_pending_lists_waiting_versions_and_flags_stale_ones(cli, registry):
    code, out, _ = cli("pending", "--json", subprocess_=True)
    assert code == 0
    rows = {row["version"]: row for row in json.loads(out)}
    assert set(rows) == {registry["v2"], registry["v3"]}
    assert rows[registry["v2"]]["status"] == "pending" and rows[registry["v2"]]["is_candidate"] is True
    assert rows[registry["v3"]]["status"] == "needs_review" and rows[registry["v3"]]["is_candidate"] is False
    assert rows[registry["v2"]]["evidence"]["accuracy"] == pytest.approx(0.83)
    code, out, _ = cli("pending")
    assert code == 0
    header, rule, *lines = out.splitlines()
    assert header.split()[:3] == ["MODEL", "VERSION", "STATUS"]
    assert any(line.split()[:3] == [MODEL, registry["v2"], "pending"] for line in lines)
    assert any(f"no (@challenger={registry['v2']})" in line for line in lines)


def test_pending_is_one_paged_search_not_a_call_per_version(mlflow_client, registry, monkeypatch):
    calls = {"search_model_versions": 0, "get_model_version": 0, "get_model_version_by_alias": 0}
    for name in calls:
        original = getattr(mlflow_client, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(mlflow_client, name, spy)
    waiting = pending_versions(mlflow_client)
    assert {p.version for p in waiting} == {registry["v2"], registry["v3"]}
    assert calls == {"search_model_versions": 1, "get_model_version": 0, "get_model_version_by_alias": 1}
    # More results than a page: one call per page, still none per version.
    calls.update(dict.fromkeys(calls, 0))
    assert len(pending_versions(mlflow_client, page_size=1)) == 2
    assert calls["search_model_versions"] == 2 and calls["get_model_version"] == 0


def test_pending_without_a_challenger_marks_no_version_as_the_candidate(mlflow_client, registry):
    # A model whose @challenger is unset (e.g. cleared by a failed re-validation) still lists its
    # waiting versions, none of them approvable as the candidate.
    mlflow_client.delete_registered_model_alias(MODEL, lc.CHALLENGER)
    waiting = {p.version: p for p in pending_versions(mlflow_client)}
    assert set(waiting) == {registry["v2"], registry["v3"]}
    assert all(p.challenger is None and not p.is_candidate for p in waiting.values())


def test_show_compare_and_lineage(cli, registry):
    v1, v2 = registry["v1"], registry["v2"]
    code, out, _ = cli("show", MODEL, v2)
    assert code == 0
    assert f"{MODEL} v{v2}" in out and "pending (Manual approval required)" in out and "accuracy=0.8300" in out
    code, out, _ = cli("compare", MODEL, v1, v2)
    assert code == 0
    accuracy_row = next(line for line in out.splitlines() if line.startswith("accuracy "))
    assert accuracy_row.split() == ["accuracy", "0.8000", "0.8300", "+0.0300"]
    assert f"accuracy: +0.0300 (better: v{v2})" in out
    code, out, _ = cli("--json", "lineage", MODEL, v1)
    lineage = json.loads(out)
    assert code == 0
    assert lineage["run_id"] and lineage["experiment_name"] == "governance-tests"
    assert lineage["data_fingerprint"] == "sha256:test"
    assert lineage["dataset_info"]["dataset_train_size"] == "80000"
    code, out, err = cli("lineage", MODEL, "99")
    assert code == 3 and "v99 does not exist" in err


def test_approve_enforces_the_policy_and_records_the_decision(cli, registry, mlflow_client):
    v2, v3 = registry["v2"], registry["v3"]
    code, _, err = cli("approve", MODEL, v2, "--reviewer", "trainer", subprocess_=True)
    assert code == 1 and "separation of duties" in err
    # In a fresh interpreter: this test process's Airflow logging writes log lines to stdout.
    code, out, err = cli("approve", MODEL, v3, "--reviewer", "alice", "--json", subprocess_=True)
    assert code == 1 and "no longer the candidate" in err and json.loads(out)["exit_code"] == 1
    assert mlflow_client.get_model_version(MODEL, v3).tags[lc.APPROVAL_STATUS] == "needs_review"
    code, out, _ = cli("approve", MODEL, v2, "--reviewer", "alice", "--notes", "checked the holdout report",
                       subprocess_=True)
    assert code == 0 and f"{MODEL} v{v2} approved by alice" in out
    tags = mlflow_client.get_model_version(MODEL, v2).tags
    assert (tags[lc.APPROVAL_STATUS], tags[lc.APPROVED_BY], tags[lc.APPROVAL_NOTES]) == (
        "approved", "alice", "checked the holdout report"
    )
    code, out, _ = cli("audit", "--model", MODEL, "--version", v2, "--json")
    assert code == 0
    refused, event = json.loads(out)
    # The submitter's refused approval is audited too, as in every channel.
    assert (refused["event"], refused["actor"], refused["source"]) == ("approval_refused", "trainer", "cli")
    assert "separation of duties" in refused["reason"]
    assert (event["event"], event["actor"], event["source"]) == ("approved", "alice", "cli")
    assert event["details"]["notes"] == "checked the holdout report"
    assert event["metrics"]["accuracy"] == pytest.approx(0.83)
    code, _, err = cli("approve", MODEL, "42", "--reviewer", "alice", subprocess_=True)
    assert code == 3 and "v42 does not exist" in err


def test_reject_refuses_the_champion(cli, registry, mlflow_client):
    code, _, err = cli("reject", MODEL, registry["v1"], "--reviewer", "alice")
    assert code == 1 and "roll back" in err
    code, out, _ = cli("reject", MODEL, registry["v3"], "--reviewer", "alice", "--notes", "drop too large")
    assert code == 0 and "rejected by alice" in out
    assert mlflow_client.get_model_version(MODEL, registry["v3"]).tags[lc.APPROVAL_STATUS] == "rejected"


def test_rollback_history_and_audit_answer_who_put_a_version_in_production(cli, registry, mlflow_client):
    v1, v2 = registry["v1"], registry["v2"]
    set_tags(mlflow_client, v2, approval_status="approved", approved_by="alice")
    serve(mlflow_client, v2, registry["trail"], baseline=v1)
    code, _, err = cli("rollback", MODEL, "--to", registry["v3"], "--actor", "bob", "--reason", "test")
    assert code == 1 and "never approved" in err
    code, out, _ = cli("rollback", MODEL, "--actor", "bob", "--reason", "CTR dropped after v2", subprocess_=True)
    assert code == 0 and f"@champion is v{v1} again" in out
    assert get_aliases(mlflow_client, MODEL)[lc.CHAMPION] == v1

    code, out, _ = cli("history", MODEL)
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:] if line.strip() and not line.startswith("Last")]
    assert [(row[2], row[3]) for row in rows] == [(f"v{v1}", "promoted"), (f"v{v2}", "promoted"), (f"v{v1}", "rolled_back")]
    assert f"Last recorded champion: v{v1}" in out

    code, out, _ = cli("audit", "--model", MODEL, "--version", v2, "--json", subprocess_=True)
    events = json.loads(out)
    promoted = next(e for e in events if e["event"] == "promoted")
    assert (promoted["actor"], promoted["details"]["approved_by"], promoted["dag_run_id"]) == ("carol", "alice", "manual__1")
    assert promoted["metrics"]["accuracy"] == pytest.approx(0.83) and promoted["counterpart_version"] == v1
    assert [e["event"] for e in events] == ["promoted", "archived"]
    code, out, _ = cli("audit", "--event", "rolled_back")
    assert code == 0 and "bob" in out and "CTR dropped after v2" in out
    assert [e.event for e in AuditLog(registry["trail"].log.engine).events()][-2:] == [EventType.ROLLED_BACK, EventType.ARCHIVED]


def test_where_things_are_is_never_guessed(cli, tmp_path):
    code, _, err = cli("pending", env_overrides={"MLFLOW_TRACKING_URI": ""})
    assert code == 2 and "--tracking-uri" in err
    code, _, err = cli("--tracking-uri", f"sqlite:///{tmp_path / 'typo.db'}", "pending")
    assert code == 2 and "no MLflow database" in err
    code, _, err = cli("history", MODEL, "--audit-db", str(tmp_path / "nothing-here.db"))
    assert code == 3 and "no audit database" in err
