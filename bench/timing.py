"""Helpers shared by the timing benchmarks: the machine, its load, medians, the JSON report.

Benchmarks print their figures and write them as JSON under bench/results/; nothing here
asserts a time. The load average goes with every measurement because the benchmark machine is
shared (2 cores): a figure taken under load 4 is not the figure of an idle machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def load_average() -> float:
    """The 1-minute load average (what `uptime` shows first)."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, object]:
    """Where the figures were taken: cores, CPU model, OS, Python, load at the start."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError):
        memory_gb = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def median(values: Iterable[float]) -> float | None:
    """The median of the values (None for none)."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def project_env(**extra: str) -> dict[str, str]:
    """The environment a project process needs: repo and plugins importable, one OpenMP thread.

    One thread because HistGradientBoosting's OpenMP threads spin-wait on a busy 2-core box, and
    both sides of a comparison must run with the same setting.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING")) and k != "PYTHONPATH"}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
            "OMP_NUM_THREADS": "1",
            "GIT_PYTHON_REFRESH": "quiet",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def write_report(report: dict, output: Path) -> Path:
    """Write the report as JSON atomically (no half-written file when interrupted)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(output.suffix + ".partial")
    partial.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    partial.replace(output)
    return output


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with an error that names the bad value."""
    try:
        value = int(text)
    except ValueError:
        raise_argument_error(f"{text!r} is not an integer")
    if value < 1:
        raise_argument_error(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0, with an error that names the bad value."""
    try:
        value = float(text)
    except ValueError:
        raise_argument_error(f"{text!r} is not a number")
    if value <= 0:
        raise_argument_error(f"{value} must be positive")
    return value


def raise_argument_error(message: str):
    import argparse

    raise argparse.ArgumentTypeError(message)


def say(message: str) -> None:
    """Progress on stderr (stdout carries the figures)."""
    print(f"[{time.strftime('%H:%M:%S')} load {load_average():.2f}] {message}", file=sys.stderr, flush=True)
