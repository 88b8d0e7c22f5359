"""DAG parse cost: the time to import each DAG file in a fresh interpreter, minus a trivial DAG's.

Usage (from the repository root):

    .venv/bin/python bench/dag_parse.py                 # every file in dags/, 7 interpreters each
    .venv/bin/python bench/dag_parse.py --repeats 11 --importtime

Each measurement is a new interpreter that imports ``airflow.sdk`` first, then runs one DAG file
and reports how long that took ("fresh", the issue's measure). The same is done for a trivial DAG
(no tasks), whose median is subtracted: what remains is what the file itself costs at every parse
(its own imports: the mlflow_governance plugins, operators, the DAG's construction). A second
column ("processor") preloads what Airflow's DAG processor has loaded when it forks the process
that parses a file, so it shows what a parse really costs there.
Interpreters for different files alternate, so a burst of load does not hit one file only.
``--importtime`` adds, per file, the slowest imports it triggers beyond the trivial DAG's
(``python -X importtime``). Writes bench/results/dag_parse.json. The goal (under 0.2 s a file) is
reported, never asserted; that parsing imports none of pandas, torch, sklearn, mlflow is tested
structurally in tests/dags/test_dag_integrity.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.timing import load_average, machine, median, positive_int, project_env, say, write_report  # noqa: E402

GOAL_SECONDS = 0.2
# The least a DAG file can be: a DAG with no tasks.
TRIVIAL_DAG = '''\
from datetime import datetime

from airflow.sdk import DAG

with DAG(dag_id="trivial", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    pass
'''
# What is loaded before the DAG file runs. "fresh": a new interpreter with airflow.sdk only (the
# issue's measure). "processor": what Airflow's DAG processor has loaded when it forks the process
# that parses a file (its own modules, the ORM models among them), so the file pays only the rest.
PRELOADS = {
    "fresh": "import airflow.sdk",
    "processor": "import airflow.sdk, airflow.dag_processing.manager, airflow.dag_processing.processor",
}
# Runs in the fresh interpreter: the preload first, then the DAG file, timed.
PROBE = '''\
import runpy, sys, time
{preload}
print("--- dag file starts ---", file=sys.stderr, flush=True)
started = time.perf_counter()
runpy.run_path(sys.argv[1], run_name="dag_file")
print(time.perf_counter() - started)
'''


def measure(path: Path, env: dict[str, str], preload: str = "fresh", importtime: bool = False) -> tuple[float, str]:
    """Seconds to run one DAG file after the preload, in a new interpreter (and its import log)."""
    flags = ["-X", "importtime"] if importtime else []
    done = subprocess.run(
        [sys.executable, *flags, "-c", PROBE.format(preload=PRELOADS[preload]), str(path)], env=env, capture_output=True, text=True, cwd=REPO, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"{path.name} does not import:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1]), done.stderr


def slowest_imports(stderr: str, top: int = 8) -> list[tuple[str, float]]:
    """The top-level imports the DAG file triggered, slowest first: (module, cumulative seconds)."""
    lines = stderr.split("--- dag file starts ---", 1)[-1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        if depth == 0:
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda row: -row[1])[:top]


def run(dag_files: list[Path], repeats: int, importtime: bool) -> dict:
    where = machine()
    with tempfile.TemporaryDirectory(prefix="bench-dag-parse-") as home:
        env = project_env(AIRFLOW_HOME=home, AIRFLOW_CONFIG=str(REPO / "airflow.cfg"), AIRFLOW_PROJECT_DIR=str(REPO))
        trivial = Path(home) / "trivial_dag.py"
        trivial.write_text(TRIVIAL_DAG)
        files = {"(trivial)": trivial, **{path.name: path for path in dag_files}}
        samples = {preload: {name: [] for name in files} for preload in PRELOADS}
        loads = []
        for repeat in range(repeats):
            loads.append(load_average())
            for name, path in files.items():
                for preload in PRELOADS:
                    samples[preload][name].append(measure(path, env, preload)[0])
            say(f"repeat {repeat + 1}/{repeats} done")
        imports = {}
        if importtime:
            for name, path in files.items():
                imports[name] = slowest_imports(measure(path, env, importtime=True)[1])
    baseline = {preload: median(samples[preload]["(trivial)"]) for preload in PRELOADS}
    per_file = {}
    for name in files:
        if name == "(trivial)":
            continue
        row = {"slowest_imports_fresh": imports.get(name, [])}
        for preload in PRELOADS:
            raw = median(samples[preload][name])
            row[preload] = {
                "median_seconds": raw,
                "minus_trivial_seconds": raw - baseline[preload],
                "samples": samples[preload][name],
            }
        row["goal_met"] = row["fresh"]["minus_trivial_seconds"] < GOAL_SECONDS
        per_file[name] = row
    return {
        "machine": where,
        "repeats": repeats,
        "preloads": PRELOADS,
        "trivial_dag": TRIVIAL_DAG,
        "trivial_dag_median_seconds": baseline,
        "trivial_dag_samples": {preload: samples[preload]["(trivial)"] for preload in PRELOADS},
        "dags": per_file,
        "goal": {"target": f"< {GOAL_SECONDS} s per file (fresh interpreter)", "met": all(v["goal_met"] for v in per_file.values())},
        "load_average": loads,
        "load_average_at_end": load_average(),
    }


def render(report: dict) -> str:
    trivial = report["trivial_dag_median_seconds"]
    lines = [
        f"repeats: {report['repeats']}   load average: {report['load_average']} -> {report['load_average_at_end']}",
        f"trivial DAG (subtracted): {trivial['fresh'] * 1000:.0f} ms fresh, {trivial['processor'] * 1000:.0f} ms in the processor",
        "",
        "| DAG file | fresh: median ms | fresh: minus trivial ms | processor: minus trivial ms | goal < 200 ms (fresh) |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["dags"].items():
        lines.append(
            f"| {name} | {row['fresh']['median_seconds'] * 1000:.0f} | {row['fresh']['minus_trivial_seconds'] * 1000:.0f} "
            f"| {row['processor']['minus_trivial_seconds'] * 1000:.0f} | {'met' if row['goal_met'] else 'MISSED'} |"
        )
    for name, row in report["dags"].items():
        if row["slowest_imports_fresh"]:
            shown = ", ".join(f"{module} {seconds * 1000:.0f} ms" for module, seconds in row["slowest_imports_fresh"])
            lines.append(f"\n{name} slowest imports (fresh): {shown}")
    lines.append(f"\ngoal {report['goal']['target']}: {'MET' if report['goal']['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7, help="interpreters per DAG file (default 7)")
    parser.add_argument("--dags", nargs="+", type=Path, help="DAG files (default: every dags/*.py)")
    parser.add_argument("--importtime", action="store_true", help="list each file's slowest imports")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "dag_parse.json")
    args = parser.parse_args(argv)
    dag_files = args.dags or sorted((REPO / "dags").glob("*.py"))
    missing = [str(path) for path in dag_files if not path.is_file()]
    if missing:
        parser.error(f"not a file: {', '.join(missing)}")
    report = run([path.resolve() for path in dag_files], args.repeats, args.importtime)
    print(render(report))
    print(f"\nwritten: {write_report(report, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
