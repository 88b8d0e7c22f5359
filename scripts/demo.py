"""Run the retrain DAG once on the embedded default and print what it did.

`make demo` runs this: Airflow on SQLite and MLflow on a SQLite file, both under .local/,
no server to start. The DAG's own log goes to .local/logs/; this prints the summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def airflow(env: dict[str, str], *args: str, log_path: Path) -> int:
    with log_path.open("a") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n")
        log.flush()
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO).returncode


def main() -> int:
    env = embedded_environment()
    for folder in ("airflow", "mlflow/artifacts", "logs"):
        (LOCAL / folder).mkdir(parents=True, exist_ok=True)
    log_path = LOCAL / "logs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"

    print(f"Preparing Airflow's metadata database (log: {log_path.relative_to(REPO)})", flush=True)
    if airflow(env, "db", "migrate", log_path=log_path) != 0:
        print(f"airflow db migrate failed; see {log_path}", file=sys.stderr)
        return 1
    # One promotion at a time: promote and rollback tasks run in this one-slot pool.
    if airflow(env, "pools", "set", "model_promotion", "1", "One move of @champion at a time", log_path=log_path) != 0:
        print(f"creating the model_promotion pool failed; see {log_path}", file=sys.stderr)
        return 1

    print(f"Running DAG {DAG_ID}: train -> log -> register -> validate -> approve -> promote", flush=True)
    started = time.time()
    code = airflow(env, "dags", "test", DAG_ID, log_path=log_path)
    wall = time.time() - started

    os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = env["AIRFLOW_CONN_MLFLOW_DEFAULT"]
    sys.path[:0] = [str(REPO)]
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
    print(f"{'run wall time':<13}  {wall:.1f} s (airflow dags test, log: {log_path.relative_to(REPO)})")
    print()
    print(f"MLflow UI: make mlflow-ui  ->  http://127.0.0.1:5000/#/models/{MODEL_NAME}")
    print("Airflow UI: make airflow-ui  ->  http://127.0.0.1:8080")
    if code != 0:
        print(f"\nThe DAG run did not succeed (exit code {code}); see {log_path}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
