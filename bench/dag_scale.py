"""The whole retrain DAG at scale: each task's wall time and peak memory under `airflow dags test`.

Usage (from the repository root):

    .venv/bin/python bench/dag_scale.py --sizes 100836 1000000 --output bench/results/dag_scale_small.json
    nohup .venv/bin/python bench/dag_scale.py --sizes 32000204 --models hist_gradient_boosting \
        --output bench/results/dag_scale_32m_hgb.json > /tmp/logs/dag_scale_32m_hgb.log 2>&1 &
    .venv/bin/python bench/dag_scale.py --plot-from bench/results/dag_scale_*.json   # table + docs/img/dag_scale.png

For each size the data source is the DAG's own `synthetic:` source (the default `synthetic` at
100,836 ratings; bench/training_scale.py's scaling at 1M and 5M; ml-32m's shape, 200,948 users x
87,585 movies, at 32,000,204). For each model type one `airflow dags test
movie_recommender_retrain -c <conf>` runs in a fresh interpreter, with the Makefile's environment
pointing at a fresh MLflow SQLite store and audit file per run and a fresh Airflow home per size
(metadata database migrated once per size, not counted). The synthetic data cache is shared by
the runs of one size, so the first run of a size generates the data (in its train task) and the
others read the Parquet file, as later runs with the same spec do in a deployment.

Per task: wall time (start to end in the metadata database's task_instance), the peak RSS of the
`dags test` process tree while the task ran (psutil, polled every 0.2 s; tasks run inside that one
process, so RSS a task freed but the allocator kept counts towards later tasks: the RSS at the
task's start is recorded too), the load average range over the task, and swap (SwapFree lowest,
/proc/vmstat pswpout during the run). Writes JSON after every run (the figures so far survive an
interrupted 32M run). The issue's goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.orchestration_overhead import CUTOFF, DAG_ID, fresh_stores, task_windows  # noqa: E402
from bench.timing import load_average, machine, positive_int, project_env, say, write_report  # noqa: E402

ML_32M = {"n_users": 200_948, "n_movies": 87_585, "n_ratings": 32_000_204}
DEFAULT_SIZES = (100_836, 1_000_000, 5_000_000, ML_32M["n_ratings"])
# hist_gradient_boosting first: the default model and the slowest fit.
MODEL_TYPES = ("hist_gradient_boosting", "torch_ncf", "logistic_regression", "popularity")
TASKS = ("train", "log", "register", "validate", "approve", "review_in_airflow", "wait_for_approval", "promote")
POLL_SECONDS = 0.2
GIB = 1024**3
GOALS = {"worst_task_peak_gib": 16, "run_peak_gib": 24, "torch_ncf_train_seconds": 45 * 60,
         "hist_gradient_boosting_train_seconds": 20 * 60}


def source_for(n_ratings: int) -> str:
    """The DAG's data_source param for a size."""
    if n_ratings == 100_836:
        return "synthetic"
    if n_ratings == ML_32M["n_ratings"]:
        return "synthetic:" + ",".join(f"{key}={value}" for key, value in ML_32M.items())
    from bench.training_scale import source_for as scaled

    return scaled(n_ratings)


def conf_for(n_ratings: int, model_type: str) -> dict:
    """The run's conf. Gates relaxed where the benchmark, not the model, would fail them.

    popularity is the baseline and misses the accuracy gate by design; the latency gate times a
    100-row request, which a loaded 2-core machine stretches past 100 ms. Both would stop the run
    at validate, and the governance tasks after it would go unmeasured.
    """
    conf = {"model_type": model_type, "data_source": source_for(n_ratings), "data_cutoff": CUTOFF,
            "policy_overrides": {"max_inference_time_ms": 2000}}
    if model_type == "popularity":
        conf["min_accuracy"] = 0.6
        conf["min_precision"] = 0.6
    return conf


# --- sampling the process tree ------------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Every POLL_SECONDS: (seconds since start, summed RSS of the tree, 1-minute load, SwapFree)."""

    def __init__(self, pid: int, started: float):
        super().__init__(daemon=True)
        self.pid, self.started = pid, started
        self.samples: list[tuple[float, int, float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stopped.wait(POLL_SECONDS):
            rss = _tree_rss(root)
            if rss is None:
                return
            self.samples.append((time.perf_counter() - self.started, rss, os.getloadavg()[0], swap_free()))


def _tree_rss(root) -> int | None:
    """Summed RSS of a process and its children; None once the process is gone."""
    import psutil

    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:  # a child that ended between listing and reading
            continue
    return total


def swap_free() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SwapFree:"):
            return int(line.split()[1]) * 1024
    return 0


def pages_swapped_out() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("pswpout "):
            return int(line.split()[1])
    return 0


# --- one run --------------------------------------------------------------------------------------


def airflow_env(home: Path, stores: dict[str, str], cache: Path, threads: int) -> dict[str, str]:
    """The Makefile's environment, pointed at this run's stores and the size's data cache."""
    return project_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONFIG=str(REPO / "airflow.cfg"),
        AIRFLOW_PROJECT_DIR=str(REPO),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_MLFLOW_DEFAULT=json.dumps(
            {"conn_type": "generic", "host": stores["tracking_uri"], "extra": {"artifact_location": stores["artifact_location"]}}
        ),
        MOVIE_RECOMMENDER_AUDIT_DB=stores["audit_db"],
        MOVIE_RECOMMENDER_DATA_CACHE=str(cache),
        MOVIE_RECOMMENDER_APPROVAL_POKE_SECONDS="5",
        MLFLOW_DISABLE_TELEMETRY="true",
        OMP_NUM_THREADS=str(threads),
    )


def prepare_airflow_home(root: Path, cache: Path) -> Path:
    """A migrated SQLite metadata database with the promotion pool (one-off set-up, not counted)."""
    home = root / "airflow-home"
    home.mkdir()
    env = airflow_env(home, fresh_stores(root, "setup"), cache, 1)
    for args in (["db", "migrate"], ["pools", "set", "model_promotion", "1", "One move of @champion at a time"]):
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return home


def run_dag(home: Path, stores: dict[str, str], cache: Path, conf: dict, threads: int, timeout: float) -> dict:
    """One `airflow dags test`, sampled; its wall time, exit, and per-task figures."""
    log_path = Path(stores["folder"]) / "dags-test.log"
    swapped_before, started_at, started = pages_swapped_out(), datetime.now(timezone.utc), time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", json.dumps(conf)],
            env=airflow_env(home, stores, cache, threads), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        sampler = TreeSampler(process.pid, started)
        sampler.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = f"killed after {timeout:.0f} s"
            process.wait()
        finally:
            sampler.stopped.set()
            sampler.join()
    wall = time.perf_counter() - started
    windows, state = task_windows(home / "airflow.db", started_at)
    return {
        "conf": conf, "exit": code, "run_state": state, "wall_seconds": wall, "log": str(log_path),
        "log_tail": _tail(log_path) if state != "success" else None,
        "peak_rss_gib": max((s[1] for s in sampler.samples), default=0) / GIB,
        "pages_swapped_out": pages_swapped_out() - swapped_before,
        "swap_free_lowest_gib": min((s[3] for s in sampler.samples), default=swap_free()) / GIB,
        "load_average_range": _range(s[2] for s in sampler.samples),
        "tasks": {task_id: task_figures(window, sampler.samples) for task_id, window in windows.items()},
    }


def task_figures(window: dict[str, float], samples: list[tuple[float, int, float, int]]) -> dict:
    """A task's wall time, peak and starting RSS, and load range from the samples in its window."""
    inside = [s for s in samples if window["start"] <= s[0] <= window["end"]]
    before = [s for s in samples if s[0] <= window["start"]]
    return {
        "seconds": window["end"] - window["start"],
        "peak_rss_gib": max((s[1] for s in inside), default=0) / GIB if inside else None,
        "rss_at_start_gib": before[-1][1] / GIB if before else None,
        "load_average_range": _range(s[2] for s in inside) if inside else None,
        "samples": len(inside),
    }


def _range(values) -> list[float] | None:
    values = list(values)
    return [round(min(values), 2), round(max(values), 2)] if values else None


def _tail(path: Path, lines: int = 60) -> str:
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])


# --- the sizes and models -----------------------------------------------------------------------


def run_size(n_ratings: int, models: list[str], args: argparse.Namespace, report: dict) -> None:
    """Every model type at one size, each run written to the report as soon as it ends."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-dag-scale-{n_ratings}-"))
    # A kept cache lets a later invocation (another model type at 32M) skip the generation.
    cache = args.data_cache / str(n_ratings) if args.data_cache else root / "data-cache"
    try:
        say(f"{n_ratings:,} ratings: migrating a fresh Airflow metadata database under {root}")
        home = prepare_airflow_home(root, cache)
        for model_type in models:
            stores = fresh_stores(root, model_type)
            say(f"{n_ratings:,} ratings, {model_type}: airflow dags test (load {load_average()}, "
                f"{_available_gib():.1f} GiB available)")
            cached = sorted(p.name for p in cache.glob("*.parquet")) if cache.is_dir() else []
            result = run_dag(home, stores, cache, conf_for(n_ratings, model_type), args.threads,
                             args.timeout_minutes * 60)
            result.update(n_ratings=n_ratings, model_type=model_type, threads=args.threads,
                          data_cache_files_before=cached)
            report["runs"] = [r for r in report["runs"] if (r["n_ratings"], r["model_type"]) != (n_ratings, model_type)]
            report["runs"].append(result)
            write_report(report, args.output)
            say(f"{n_ratings:,} ratings, {model_type}: {result['run_state']} in {result['wall_seconds']:.0f} s, "
                f"peak {result['peak_rss_gib']:.2f} GiB; " + _task_line(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _task_line(result: dict) -> str:
    return ", ".join(f"{task} {figures['seconds']:.0f} s" for task, figures in result["tasks"].items())


def load_reports(paths: list[Path]) -> list[dict]:
    """Every run of the given JSON files; a later file's run replaces an earlier one's for the same size and model."""
    runs: dict[tuple[int, str], dict] = {}
    for path in paths:
        for run in json.loads(path.read_text())["runs"]:
            runs[(run["n_ratings"], run["model_type"])] = run
    return sorted(runs.values(), key=lambda r: (r["n_ratings"], MODEL_TYPES.index(r["model_type"])))


# --- the table, the goals and the plot ----------------------------------------------------------


def render(runs: list[dict]) -> str:
    """A markdown table: per run, the big tasks' wall time and peak RSS, the rest summed."""
    lines = [
        "| ratings | model | state | train s (peak GiB) | log s (peak GiB) | validate s (peak GiB) "
        "| other 5 tasks s | run wall s | run peak GiB | load | swap out |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for run in runs:
        tasks = run["tasks"]
        others = sum(f["seconds"] for task, f in tasks.items() if task not in ("train", "log", "validate"))
        cells = [_task_cell(tasks.get(task)) for task in ("train", "log", "validate")]
        load = run["load_average_range"] or ["-", "-"]
        lines.append(
            f"| {run['n_ratings']:,} | {run['model_type']} | {run['run_state']} | {' | '.join(cells)} | {others:.1f} "
            f"| {run['wall_seconds']:.0f} | {run['peak_rss_gib']:.2f} | {load[0]}-{load[1]} | {run['pages_swapped_out']} |"
        )
    return "\n".join(lines)


def _task_cell(figures: dict | None) -> str:
    if figures is None:
        return "-"
    peak = figures["peak_rss_gib"]
    return f"{figures['seconds']:.0f} ({peak:.2f})" if peak is not None else f"{figures['seconds']:.0f}"


def goals(runs: list[dict]) -> list[str]:
    """The issue's goals for each run at the largest size measured (reported, never asserted)."""
    largest = max((r["n_ratings"] for r in runs), default=0)
    lines = []
    for run in (r for r in runs if r["n_ratings"] == largest):
        worst = max((f["peak_rss_gib"] or 0 for f in run["tasks"].values()), default=0)
        train = run["tasks"].get("train", {}).get("seconds")
        verdicts = [f"completed: {run['run_state'] == 'success'}",
                    f"run peak {run['peak_rss_gib']:.2f} GiB < {GOALS['run_peak_gib']}",
                    f"worst task {worst:.2f} GiB < {GOALS['worst_task_peak_gib']}"]
        limit = GOALS.get(f"{run['model_type']}_train_seconds")
        if limit and train is not None:
            verdicts.append(f"train {train / 60:.1f} min < {limit / 60:.0f} min: {'met' if train < limit else 'missed'}")
        lines.append(f"{largest:,} {run['model_type']}: " + "; ".join(verdicts))
    return lines


def plot(runs: list[dict], path: Path) -> Path:
    """Wall time and peak RSS of train, log and validate against the ratings, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for column, task in enumerate(("train", "log", "validate")):
        for model_type in MODEL_TYPES:
            points = [(r["n_ratings"], r["tasks"][task]) for r in runs
                      if r["model_type"] == model_type and task in r["tasks"]]
            if not points:
                continue
            sizes = [n for n, _ in points]
            axes[0][column].plot(sizes, [f["seconds"] for _, f in points], marker="o", label=model_type)
            axes[1][column].plot(sizes, [f["peak_rss_gib"] or 0 for _, f in points], marker="o", label=model_type)
        axes[0][column].set_title(f"task {task}")
        axes[0][column].set_ylabel("wall time, s")
        axes[1][column].set_ylabel("peak RSS of the process, GiB")
        axes[1][column].set_xlabel("ratings")
        for row in (0, 1):
            axes[row][column].set_xscale("log")
            axes[row][column].set_yscale("log")
            axes[row][column].grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Retrain DAG under `airflow dags test` by size (2 cores, shared; load in the JSON)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=list(DEFAULT_SIZES), help="ratings per size")
    parser.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    parser.add_argument("--threads", type=positive_int, default=2, help="OMP_NUM_THREADS of the run (default 2)")
    parser.add_argument("--timeout-minutes", type=positive_int, default=240, help="per run (default 240)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "dag_scale.json")
    parser.add_argument("--plot-from", type=Path, nargs="+", help="only render the table and plot from these JSON files")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "dag_scale.png")
    parser.add_argument("--data-cache", type=Path, help="keep the synthetic data cache here, one folder per size "
                        "(default: a fresh one per invocation, so the first run of a size generates)")
    args = parser.parse_args(argv)
    if args.plot_from:
        runs = load_reports(args.plot_from)
        print(render(runs), *goals(runs), sep="\n")
        print(f"\nwritten: {plot(runs, args.plot)}")
        return 0
    report = {"machine": machine(), "goals": GOALS, "runs": []}
    for n_ratings in args.sizes:
        run_size(n_ratings, args.models, args, report)
    report["load_average_at_end"] = load_average()
    write_report(report, args.output)
    print(render(load_reports([args.output])), *goals(load_reports([args.output])), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
