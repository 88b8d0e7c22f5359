"""Run the retrain DAG once on the embedded default and print what it did.

`make demo` runs this: Airflow on SQLite and MLflow on a SQLite file, both under .local/,
no server to start. Everything runs in this one process (what `airflow db migrate`, `airflow
pools set` and `airflow dags test` would do, without three interpreters and the CLI's parse of
the whole DAG folder). The DAG's own log goes to .local/logs/; this prints the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / ".local"
DAG_ID = "movie_recommender_retrain"
MODEL_NAME = "movie_recommender"


def embedded_environment() -> dict[str, str]:
    """The environment the Makefile exports, filled in when this script runs on its own."""
    env = dict(os.environ)
    mlflow_db = LOCAL / "mlflow" / "mlflow.db"
    artifacts = LOCAL / "mlflow" / "artifacts"
    env.setdefault("AIRFLOW_HOME", str(LOCAL / "airflow"))
    env.setdefault("AIRFLOW_CONFIG", str(REPO / "airflow.cfg"))
    env.setdefault("AIRFLOW_PROJECT_DIR", str(REPO))
    env.setdefault("PYTHONPATH", os.pathsep.join([str(REPO), str(REPO / "plugins")]))
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    env.setdefault(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "generic", "host": f"sqlite:///{mlflow_db}", "extra": {"artifact_location": artifacts.as_uri()}}),
    )
    return env


@contextlib.contextmanager
def output_to(log_path: Path):
    """Send everything written to file descriptors 1 and 2 (Airflow's own handlers included) to the log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def prepare_airflow(log_path: Path) -> str | None:
    """Migrate the metadata database and create the promotion pool in-process; return an error or None."""
    with output_to(log_path):
        try:
            from airflow.models.pool import Pool
            from airflow.utils import db

            db.upgradedb()
            # One promotion at a time: promote and rollback tasks run in this one-slot pool.
            Pool.create_or_update_pool("model_promotion", 1, "One move of @champion at a time", include_deferred=False)
        except Exception:  # noqa: BLE001 - reported with the log's traceback
            traceback.print_exc()
            return "preparing Airflow's metadata database failed"
    return None


def run_dag(log_path: Path) -> int:
    """Run the DAG once with dag.test() in this process (parsing only its file); return an exit code."""
    with output_to(log_path):
        try:
            from airflow.utils import timezone
            from airflow.utils.cli import get_bagged_dag
            from airflow.utils.state import DagRunState

            dag = get_bagged_dag(None, DAG_ID, dagfile_path=str(REPO / "dags" / f"{DAG_ID}.py"))
            run = dag.test(logical_date=timezone.utcnow())
            return 0 if run is not None and run.state == DagRunState.SUCCESS else 1
        except Exception:  # noqa: BLE001 - reported with the log's traceback
            traceback.print_exc()
            return 1


def main() -> int:
    env = embedded_environment()
    # Airflow reads its configuration when first imported: the environment must be set before.
    os.environ.update(env)
    sys.path[:0] = [str(REPO), str(REPO / "plugins")]
    for folder in ("airflow", "mlflow/artifacts", "logs"):
        (LOCAL / folder).mkdir(parents=True, exist_ok=True)
    log_path = LOCAL / "logs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"

    print(f"Preparing Airflow's metadata database (log: {log_path.relative_to(REPO)})", flush=True)
    error = prepare_airflow(log_path)
    if error:
        print(f"{error}; see {log_path}", file=sys.stderr)
        return 1

    print(f"Running DAG {DAG_ID}: train -> log -> register -> validate -> approve -> promote", flush=True)
    started = time.time()
    code = run_dag(log_path)
    wall = time.time() - started

    from mlflow import MlflowClient

    from include.governance.summary import format_summary, version_summary

    tracking_uri = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])["host"]
    client = MlflowClient(tracking_uri=tracking_uri)
    created = [
        mv
        for mv in client.search_model_versions(f"name = '{MODEL_NAME}'", order_by=["creation_timestamp DESC"], max_results=5)
        if mv.creation_timestamp / 1000 >= started
    ]
    print()
    if not created:
        print(f"The run registered no model version (exit code {code}). Last lines of {log_path}:")
        print("".join(log_path.read_text().splitlines(keepends=True)[-30:]))
        return 1
    print(format_summary(version_summary(client, MODEL_NAME, created[0].version)))
    print(f"{'run wall time':<13}  {wall:.1f} s (dag.test(), log: {log_path.relative_to(REPO)})")
    print()
    print(f"MLflow UI: make mlflow-ui  ->  http://127.0.0.1:5000/#/models/{MODEL_NAME}")
    print("Airflow UI: make airflow-ui  ->  http://127.0.0.1:8080")
    if code != 0:
        print(f"\nThe DAG run did not succeed (exit code {code}); see {log_path}", file=sys.stderr)
    return code


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is printed and the stores are committed: skip the interpreter's tear-down
    # (atexit hooks, thread joins, module teardown of Airflow, MLflow and torch take seconds).
    os._exit(exit_code)
