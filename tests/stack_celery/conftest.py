"""One compose stack with the celery profile (two workers) for this package, started by the runner."""

from __future__ import annotations

import pytest

from tests.stack.conftest import TIMINGS, pytest_runtest_makereport  # noqa: F401  (logs on failure)
from tests.stack.harness import running_stack

WORKERS = 2
OVERRIDES = {
    "AIRFLOW_EXECUTOR": "CeleryExecutor",
    "COMPOSE_PROFILES": "celery",
    "MOVIE_RECOMMENDER_SCHEDULE": "none",
    # A worker killed mid-task is noticed after this many seconds without a heartbeat (300 in
    # .env.example); shorter here so the retry comes within the test's patience.
    "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": "45",
}


@pytest.fixture(scope="package")
def compose_stack(request):
    with running_stack(request, "compose-stack-celery-", OVERRIDES, ["--scale", f"airflow-worker={WORKERS}"]) as stack:
        TIMINGS["stack up (CeleryExecutor, 2 workers), seconds"] = stack.up_seconds
        yield stack
