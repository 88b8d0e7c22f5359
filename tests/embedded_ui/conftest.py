"""Reporting for the `make airflow-ui` tests: service output on a failure, timings at the end."""

from __future__ import annotations

import pytest

# The package's one `make airflow-ui`, and the figures its tests measure.
from tests.embedded_ui.target import TIMINGS, airflow_ui  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tails of the target's output and of the latest task logs."""
    outcome = yield
    report = outcome.get_result()
    ui = item.funcargs.get("airflow_ui") if hasattr(item, "funcargs") else None
    if report.failed and ui is not None:
        report.sections.append(("make airflow-ui output and task logs", ui.stack.diagnostics()))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("make airflow-ui: measured (not asserted)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<48} {seconds:7.1f} s")
