"""Helpers for the registry-work tests: many versions fast, and the CLI run in-process."""

from __future__ import annotations

import os

import pytest

from include.governance import lifecycle as lc

from tests.include.governance.support import GOOD_METRICS, MODEL, log_tiny_model


@pytest.fixture
def logged_model(mlflow_client, experiment_id):
    """One logged tiny model: ``(run_id, source)``; versions are created from it.

    The source is the logged model's storage location, as register_version writes it (a
    models:/ source would be resolved through the process-global tracking URI).
    """
    run_id, model_uri = log_tiny_model(mlflow_client, experiment_id, GOOD_METRICS)
    return run_id, mlflow_client.get_logged_model(model_uri.removeprefix("models:/")).artifact_location


def add_versions(client, logged, tag_sets, *, model: str = MODEL) -> list[str]:
    """One registry version per tag set, all from the same logged model (no new runs: fast)."""
    run_id, source = logged
    try:
        client.create_registered_model(model)
    except Exception:  # noqa: BLE001 - already there
        pass
    return [
        str(client.create_model_version(model, source, run_id=run_id, tags=dict(tags)).version)
        for tags in tag_sets
    ]


def archived(stamp: str, **extra) -> dict[str, str]:
    return {lc.SUBMITTED_BY: "trainer", lc.ARCHIVED_TIMESTAMP: stamp, **extra}


@pytest.fixture
def run_cli(mlflow_store, tmp_path, monkeypatch, capsys):
    """Run a reviewer CLI command in-process on the test's store and audit file: (code, out, err)."""
    from include.governance.cli import main

    audit = tmp_path / "audit.db"

    def run(*args: str):
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
                patch.delenv(key)
            patch.setenv("MLFLOW_TRACKING_URI", mlflow_store["tracking_uri"])
            patch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(audit))
            capsys.readouterr()
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    run.audit_path = audit
    return run
