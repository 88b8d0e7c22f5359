"""One compose stack (LocalExecutor) for this package, started by the runner as a user starts it."""

from __future__ import annotations

import pytest

from tests.stack.harness import running_stack

TIMINGS: dict[str, float] = {}
OVERRIDES = {
    "MOVIE_RECOMMENDER_SCHEDULE": "none",
    # Not shorter: apache/airflow#71172 (see tests/airflow_services/stack.py).
    "MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS": "20",
}


@pytest.fixture(scope="package")
def compose_stack(request):
    with running_stack(request, "compose-stack-", OVERRIDES, []) as stack:
        TIMINGS["stack up (LocalExecutor), seconds"] = stack.up_seconds
        yield stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    stack = item.funcargs.get("compose_stack") if hasattr(item, "funcargs") else None
    if report.failed and stack is not None:
        report.sections.append(("compose stack logs", stack.diagnostics()))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("compose stack: measured (not asserted)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<60} {seconds:7.1f}")
