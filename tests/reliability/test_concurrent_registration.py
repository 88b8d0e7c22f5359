"""Fault: many writers against one ``mlflow server`` on PostgreSQL at the same moment.

Scenarios:
- eight threads each register a different run of the same model at once. Expected: every call
  succeeds, eight distinct version numbers, each version READY with its own run; the server
  logged no 500 and no traceback (a 500 retried away by the client would still be a defect).
- eight threads register the same run at once (a retried task racing a try still running).
  Expected: every call returns the same version and the run has exactly one version left.
- two retrain DAG runs of the same model at once: two ``airflow dags test`` processes, each
  with a copy of the session's migrated metadata database (two deployments, so no shared
  promotion pool orders them; ``dag.test()`` in threads is not possible: Airflow installs
  signal handlers, which only the main thread may do), MLflow on the server. Expected: two distinct versions, one per
  run; ``@champion`` reads back as one of them and matches that version's promotion tags; a run
  that did not promote failed at promote with a refusal (a stale candidate), not with an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases, register_version
from tests.include.governance.support import GOOD_METRICS, log_tiny_model
from tests.conftest import REPO

pytestmark = pytest.mark.services

WRITERS = 8
DAG_ID = "movie_recommender_retrain"
DAGS_TEST_TIMEOUT = 600
DAG_DATA = "synthetic:n_users=60,n_movies=200,n_ratings=4000,seed=3"


@pytest.fixture(scope="module")
def logged_runs(mlflow_stack):
    """Eight runs with a real (tiny) model each, logged one after the other."""
    client = mlflow_stack.client()
    experiment_id = client.create_experiment("concurrent-writers")
    return [log_tiny_model(client, experiment_id, GOOD_METRICS) for _ in range(WRITERS)]


def server_errors(log_text: str) -> list[str]:
    """Lines of the server log that show a 500 answer or a traceback."""
    return [line[:300] for line in log_text.splitlines() if re.search(r'" 500\b|\b500 Internal|Traceback', line)]


def register_all_at_once(client, model_name: str, runs: list[tuple[str, str]]) -> list[str]:
    barrier = threading.Barrier(len(runs))

    def register(run: tuple[str, str]) -> str:
        run_id, model_uri = run
        barrier.wait()
        version, _ = register_version(client, model_name=model_name, model_uri=model_uri, run_id=run_id, tags={"writer": run_id})
        return str(version.version)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(register, runs))


def test_eight_writers_of_different_runs_get_eight_unique_versions(mlflow_stack, logged_runs, client_retries):
    client = mlflow_stack.client()
    errors_before = len(server_errors(mlflow_stack.mlflow.log_text()))
    versions = register_all_at_once(client, "concurrent_runs", logged_runs)

    assert sorted(versions, key=int) == [str(n) for n in range(1, WRITERS + 1)], versions
    found = client.search_model_versions("name = 'concurrent_runs'")
    assert sorted((mv.run_id, str(mv.version), mv.status) for mv in found) == sorted(
        (run_id, version, "READY") for (run_id, _), version in zip(logged_runs, versions)
    )
    log_text = mlflow_stack.mlflow.log_text()
    # The access log is there (so "no 500 in it" means something), then: no 500, no traceback.
    assert len(re.findall(r'"POST /api/2.0/mlflow/model-versions/create HTTP/1.1" 200', log_text)) >= WRITERS
    assert server_errors(log_text)[errors_before:] == []


def test_eight_writers_of_the_same_run_leave_one_version(mlflow_stack, logged_runs, client_retries):
    client = mlflow_stack.client()
    versions = register_all_at_once(client, "concurrent_same_run", [logged_runs[0]] * WRITERS)

    remaining = client.search_model_versions("name = 'concurrent_same_run'")
    assert [(mv.run_id, mv.status) for mv in remaining] == [(logged_runs[0][0], "READY")]
    print(f"versions returned to the eight writers: {versions}; kept: v{remaining[0].version}")
    assert set(versions) == {str(remaining[0].version)}


def test_two_retrain_runs_at_once_end_with_one_consistent_champion(mlflow_stack, airflow_db, tmp_path):
    model_name = "concurrent_retrain"
    # Two deployments (each a copy of the session's migrated metadata database) run the DAG at
    # the same moment: the one-slot promotion pool of one deployment cannot order them.
    homes = [tmp_path / name for name in ("first", "second")]
    processes = []
    for home in homes:
        home.mkdir()
        shutil.copy(airflow_db / "airflow.db", home / "airflow.db")
        earlier = dag_run_ids(home)  # the session's database holds earlier tests' runs
        env = dags_test_environment(home, mlflow_stack.url)
        conf = json.dumps({"data_source": DAG_DATA, "model_name": model_name})
        log = (home / "dags-test.log").open("wb")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--conf", conf],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        log.close()
    try:
        for process in processes:
            process.wait(timeout=DAGS_TEST_TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    outcomes = [dag_run_outcome(home, earlier) for home in homes]
    logs = {o.run_id: (home / "dags-test.log").read_text(errors="replace") for o, home in zip(outcomes, homes)}
    print(f"two concurrent runs: {outcomes}")

    client = mlflow_stack.client()
    versions = client.search_model_versions(f"name = '{model_name}'")
    by_dag_run = {mv.tags[lc.AIRFLOW_RUN_ID]: str(mv.version) for mv in versions}
    assert len(versions) == 2 and sorted(by_dag_run) == sorted(o.run_id for o in outcomes), (versions, outcomes)
    assert len({mv.run_id for mv in versions}) == 2

    aliases = get_aliases(client, model_name)
    champion = aliases[lc.CHAMPION]
    assert champion in by_dag_run.values()
    champion_tags = client.get_model_version(model_name, champion).tags
    assert lc.PROMOTION_TIMESTAMP in champion_tags and champion_tags[lc.APPROVAL_STATUS] == "approved"
    assert aliases.get(lc.CHALLENGER) != champion
    assert any(o.state == "success" for o in outcomes), outcomes
    for outcome in outcomes:
        version = by_dag_run[outcome.run_id]
        if outcome.state == "success":
            # A run that succeeded promoted its version (the later promotion holds @champion).
            assert lc.PROMOTION_TIMESTAMP in client.get_model_version(model_name, version).tags
        else:
            # The other failed cleanly at promote (refused: no longer the candidate).
            assert outcome.state == "failed", outcome
            assert outcome.states["promote"] == "failed" and outcome.states["register"] == "success", outcome
            refusals = [line for line in logs[outcome.run_id].splitlines() if "Promotion refused" in line]
            print(f"the other run's promote: {refusals[:1]}")
            assert refusals, logs[outcome.run_id][-4000:]
            assert version != champion


def dags_test_environment(home: Path, tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MLFLOW_S3")) and k != "PYTHONPATH"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW_PROJECT_DIR": str(REPO),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "http", "host": tracking_uri}),
        "MOVIE_RECOMMENDER_SCHEDULE": "none",
        "OMP_NUM_THREADS": "1",
    })
    return env


def dag_run_ids(home: Path) -> set[str]:
    """The DAG's runs in a deployment's metadata database (the copied one may hold earlier tests')."""
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        return {run_id for (run_id,) in db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,))}


def dag_run_outcome(home: Path, earlier: set[str]) -> SimpleNamespace:
    """The one DAG run this test made in a deployment's metadata database, with its task states."""
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        runs = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchall()
        (run_id, state), = [(run_id, state) for run_id, state in runs if run_id not in earlier]
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", (run_id,)).fetchall())
    return SimpleNamespace(run_id=run_id, state=state, states=states)
