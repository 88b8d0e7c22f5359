"""Reporting for the `make airflow-ui` tests: service output on a failure, timings at the end."""

from __future__ import annotations

import pytest

# Measured figures of this session, printed in the terminal summary (never asserted).
TIMINGS: dict[str, float] = {}


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
