"""The ``airflow_stack`` fixture: one real Airflow 3 deployment, shared by this package's test modules.

Authentication is the production path of docker-compose.yaml: the simple auth manager with a
named admin user and a password file, and a JWT from ``POST /auth/token`` on every REST call
(not ``simple_auth_manager_all_admins``, which would skip the login entirely).
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from mlflow_governance.operators import PROMOTION_POOL

from tests.airflow_services import stack as st
from tests.airflow_services.rest import AirflowApi

# Generous: two cores shared with other work, and every Airflow process imports for seconds.
MIGRATE_TIMEOUT = 300
READY_TIMEOUT = 180

# Measured figures of this session, printed in the terminal summary (never asserted).
TIMINGS: dict[str, float] = {}


# Package scope: starting a stack costs tens of seconds, so the package's tests share one (they
# keep apart by model name); it stops when the package is done, not idling through the rest of
# the suite. The scheduler-kill scenario runs here too, last, rather than on a stack of its own.
@pytest.fixture(scope="package")
def airflow_stack(request):
    """A migrated PostgreSQL database, the four services running, the retrain DAG parsed.

    The stack carries an authenticated REST client (``stack.api``). Every process is stopped
    and the database dropped afterwards, also when the start-up itself fails; the logs are
    kept when a test failed.
    """
    started = time.monotonic()
    failures_before = request.session.testsfailed
    database = f"airflow_it_{secrets.token_hex(4)}"
    database_url = st.create_database(database)
    home = Path(tempfile.mkdtemp(prefix="airflow-it-"))
    port = st.free_port()
    mlflow_dir = home / "mlflow"
    (mlflow_dir / "artifacts").mkdir(parents=True)
    tracking_uri = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    artifact_location = (mlflow_dir / "artifacts").as_uri()
    password = secrets.token_urlsafe(16)
    stack = st.AirflowStack(
        home=home,
        base_url=f"http://127.0.0.1:{port}",
        env=st.build_env(home, database_url, port, tracking_uri, artifact_location),
        database=database,
        mlflow_tracking_uri=tracking_uri,
        mlflow_artifact_location=artifact_location,
    )
    stack.logs.mkdir()
    stack.passwords = {st.API_USER: password, st.REVIEWER_USER: secrets.token_urlsafe(16)}
    (home / "simple_auth_manager_passwords.json").write_text(json.dumps(stack.passwords))
    api = None
    try:
        _migrate_mlflow(tracking_uri)
        migrated = stack.airflow("db", "migrate", timeout=MIGRATE_TIMEOUT)
        assert migrated.returncode == 0, f"airflow db migrate failed:\n{migrated.stdout[-6000:]}"
        stack.timings["db_migrate_seconds"] = time.monotonic() - started

        # All at once: none needs another to start, only to work (tasks need the api-server).
        for name in st.SERVICE_COMMANDS:
            st.start_service(stack, name, port)
        stack.wait_until(
            "api-server up and scheduler, dag-processor and triggerer heartbeats",
            lambda: st.all_healthy(st.healthy_components(stack.base_url)),
            READY_TIMEOUT,
        )
        api = AirflowApi.login(stack.base_url, st.API_USER, password)
        stack.wait_until(f"the DAG {st.DAG_ID} to be parsed", lambda: _parsed(api), READY_TIMEOUT)
        # What docker/airflow/init.sh sets up besides connections: the one-slot promotion pool.
        api.create_pool(PROMOTION_POOL, 1, "One move of @champion at a time")
        missing = api.missing_pools(st.DAG_ID)
        assert not missing, f"{st.DAG_ID} uses pools nobody created: {sorted(missing)}"
        stack.timings["stack_start_seconds"] = time.monotonic() - started
        stack.api = api
        yield stack
    except BaseException:
        failures_before = -1  # keep the logs of a failed start-up
        raise
    finally:
        if api is not None:
            api.close()
        stopping = time.monotonic()
        forced, survivors = st.stop_services(stack)
        stack.timings["stack_stop_seconds"] = time.monotonic() - stopping
        if not survivors:
            st.drop_database(database)
        TIMINGS.update(stack.timings)
        if forced:
            print(f"\nairflow services stopped by SIGKILL: {', '.join(forced)}")
        if failures_before == request.session.testsfailed and not survivors:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"\nairflow stack logs kept in {stack.logs} and {home / 'logs'}")
        assert not survivors, f"processes of the Airflow stack survived teardown: {survivors}"


def _migrate_mlflow(tracking_uri: str) -> None:
    """Create the MLflow store's schema before any task touches it (no migration race)."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).search_experiments()


def _parsed(api: AirflowApi):
    """The DAG once parsed; fail at once on an import error in its file (others' files aside)."""
    errors = [e for e in api.import_errors() if e["filename"].endswith(f"{st.DAG_ID}.py")]
    if errors:
        raise AssertionError(f"{st.DAG_ID} does not import: {errors}")
    return api.get_dag(st.DAG_ID)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tails of the service and task logs to the report."""
    outcome = yield
    report = outcome.get_result()
    stack = item.funcargs.get("airflow_stack") if hasattr(item, "funcargs") else None
    if report.failed and stack is not None:
        report.sections.append(("airflow service logs", stack.diagnostics()))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("airflow services: measured (not asserted)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<54} {seconds:7.1f} s")
