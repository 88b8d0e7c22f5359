"""Shared fixtures. Airflow reads its configuration at import, so the environment it needs is
set here, at collection time, before any test module imports airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One throwaway Airflow home for the whole session, configured by the project's airflow.cfg.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW_PROJECT_DIR": str(REPO),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS": "1",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    }
)
os.environ.pop("MLFLOW_TRACKING_URI", None)
for path in (str(REPO), str(REPO / "plugins")):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's Airflow metadata database once (SQLite in the throwaway home)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])},
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema migrated once (migrating costs ~2 s a store)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def parse_dag(airflow_db):
    """Parse a DAG afresh from dags/ (dag.test(run_conf=...) writes the conf into dag.params,
    so a DAG object must not be shared between runs)."""

    def parse(dag_id: str):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        return bag.dags[dag_id]

    return parse


@pytest.fixture
def mlflow_store(tmp_path: Path, _empty_mlflow_db: Path) -> dict[str, str]:
    """A real MLflow tracking and registry store of the test's own: SQLite file plus artifacts."""
    import shutil

    shutil.copy(_empty_mlflow_db, tmp_path / "mlflow.db")
    artifacts = tmp_path / "mlflow-artifacts"
    artifacts.mkdir()
    return {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "artifact_location": artifacts.as_uri(),
    }


@pytest.fixture
def mlflow_client(mlflow_store):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_store["tracking_uri"])


@pytest.fixture
def mlflow_connection(mlflow_store, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """Point the Airflow connection ``mlflow_default`` at the test's MLflow store.

    The audit trail goes with it (unless the test chose one): an audit table shared by every test
    would hold other stores' events for the same model names, which the drift check rightly reports.
    """
    import json

    if "MOVIE_RECOMMENDER_AUDIT_DB" not in os.environ:
        monkeypatch.setenv("MOVIE_RECOMMENDER_AUDIT_DB", str(tmp_path / "governance_audit.db"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps(
            {
                "conn_type": "generic",
                "host": mlflow_store["tracking_uri"],
                "extra": {"artifact_location": mlflow_store["artifact_location"]},
            }
        ),
    )
    return mlflow_store
