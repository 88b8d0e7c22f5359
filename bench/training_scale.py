"""Training at scale: wall time and peak memory of the DAG's train, log and validate steps.

Usage (from the repository root):

    .venv/bin/python bench/training_scale.py                         # 1M and 5M ratings, every model type
    .venv/bin/python bench/training_scale.py --sizes 1000000 --models torch_ncf popularity
    .venv/bin/python bench/training_scale.py --sizes 50000 --output /tmp/t.json --plot /tmp/t.png   # smoke

For each size the data source is the DAG's own synthetic source string
(``synthetic:n_users=...,n_movies=...,n_ratings=...``, users and movies scaled with the ratings),
so every step loads its data as the DAG's tasks do (generation included). For each model type
three steps run one after another, each in its own subprocess, calling the functions the DAG
tasks call: train (include.recommender.training.train_and_log), log
(include.recommender.evaluation.evaluate_and_log) and validate
(include.governance.registry.register_version + include.governance.validation.validate_model_version
with the packaged policy). The MLflow store is a fresh local SQLite file per size.

Per step: wall time, peak RSS of the subprocess (os.wait4's ru_maxrss, and the process tree's
summed RSS polled every 0.2 s with psutil), swap used (SwapFree before, lowest during, and
pswpout of /proc/vmstat), and the 1-minute load average before the step. A "generate" step
measures data generation alone. Prints a table and writes JSON (bench/results/training_scale.json)
and a plot (docs/img/training_scale.png). The issue's goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL_TYPES = ("hist_gradient_boosting", "logistic_regression", "torch_ncf", "popularity")
STEPS = ("train", "log", "validate")
GOAL_MEMORY_GIB = 24
GOAL_TORCH_SECONDS = 15 * 60
# ml-latest-small's 165 ratings per user; movies grow slower than users, as in MovieLens
# releases (ml-1m: 3.7k movies, ml-10m: 10.7k, ml-25m: 62k).
RATINGS_PER_USER = 100_836 / 610
POLL_SECONDS = 0.2
EXPERIMENT = "training_scale"
MODEL_NAME = "training_scale"


def source_for(n_ratings: int) -> str:
    """The DAG's synthetic data source for a size: users scaled with ratings, movies with ratings**0.35."""
    n_users = max(610, round(n_ratings / RATINGS_PER_USER))
    n_movies = max(9_742, round(9_742 * (n_ratings / 100_836) ** 0.35))
    return f"synthetic:n_users={n_users},n_movies={n_movies},n_ratings={n_ratings}"


# ---- the steps, each run in a child process ------------------------------------------------------


def child(step: str, source: str, model_type: str, tracking_uri: str, state_path: Path) -> None:
    """Run one step as the DAG task does and write what the next step needs to state_path."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from include.recommender.loading import load_movielens

    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    started = time.perf_counter()
    data = load_movielens(source)
    state["load_seconds"] = time.perf_counter() - started
    if step == "generate":
        state["n_ratings"], state["n_users"], state["n_movies"] = (
            len(data.ratings), int(data.ratings["userId"].nunique()), len(data.movies))
        if state.get("write_to"):
            from include.recommender.synthetic import write_movielens

            write_movielens(data, state["write_to"])
    elif step == "train":
        from include.recommender.training import train_and_log

        result = train_and_log(
            data=data, model_type=model_type, hyperparameters={}, experiment_name=EXPERIMENT,
            tracking_uri=tracking_uri, cutoff=None,
            run_tags={"submitted_by": "training_scale", "airflow_dag_id": "bench", "airflow_run_id": model_type},
        )
        state.update(run_id=result.run_id, model_uri=result.model_uri, training_seconds=result.training_seconds)
    elif step == "log":
        from include.recommender.evaluation import evaluate_and_log

        metrics = evaluate_and_log(run_id=state["run_id"], data=data, cutoff=None, tracking_uri=tracking_uri)
        state["metrics"] = {k: metrics[k] for k in ("accuracy", "roc_auc", "ndcg_at_10") if k in metrics}
    elif step == "validate":
        from mlflow import MlflowClient

        from include.governance.policy import GovernancePolicy
        from include.governance.registry import register_version
        from include.governance.validation import validate_model_version

        client = MlflowClient(tracking_uri=tracking_uri)
        version, _ = register_version(client, model_name=f"{MODEL_NAME}_{model_type}", model_uri=state["model_uri"],
                                      run_id=state["run_id"], tags={"submitted_by": "training_scale"})
        outcome = validate_model_version(client, version.name, version.version, GovernancePolicy.load())
        state.update(version=version.version, validation_passed=outcome.passed, validation_summary=outcome.summary)
    else:
        raise ValueError(f"unknown step {step!r}")
    state_path.write_text(json.dumps(state, default=str))


# ---- measuring a child --------------------------------------------------------------------------


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0]) * 1024
    return values


def _pswpout() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("pswpout "):
            return int(line.split()[1])
    return 0


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def run_step(step: str, source: str, model_type: str, tracking_uri: str, state_path: Path,
             threads: int, timeout: float) -> dict[str, Any]:
    """Run one step in a subprocess; return its wall time, peak memory, swap and load."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
           "GIT_PYTHON_REFRESH": "quiet", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", step, "--source", source,
               "--model-type", model_type, "--tracking-uri", tracking_uri, "--state", str(state_path)]
    load = os.getloadavg()[0]
    swap_total = _meminfo().get("SwapTotal", 0)
    swap_free_before = _meminfo().get("SwapFree", 0)
    swap_free_min = swap_free_before
    pswpout_before = _pswpout()
    started = time.perf_counter()
    log = state_path.with_suffix(f".{step}.log")
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    handle = psutil.Process(process.pid)
    tree_peak = 0
    rusage = None
    try:
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            tree_peak = max(tree_peak, _tree_rss(handle))
            swap_free_min = min(swap_free_min, _meminfo().get("SwapFree", 0))
            if time.perf_counter() - started > timeout:
                os.killpg(process.pid, signal.SIGKILL)
                os.wait4(process.pid, 0)
                raise TimeoutError(f"{step} of {model_type} on {source} exceeded {timeout:.0f} s; log: {log}")
            time.sleep(POLL_SECONDS)
    except BaseException:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        raise
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{step} of {model_type} on {source} failed ({process.returncode}):\n{tail}")
    state = json.loads(state_path.read_text())
    return {
        "wall_seconds": wall,
        "load_seconds": state.get("load_seconds"),
        "peak_rss_bytes": rusage.ru_maxrss * 1024,  # Linux reports KiB
        "tree_peak_rss_bytes": tree_peak,
        "swap_total_bytes": swap_total,
        "swap_used_during_bytes": max(0, swap_free_before - swap_free_min),
        "pages_swapped_out": _pswpout() - pswpout_before,
        "load_1min_before": round(load, 2),
    }


# ---- the benchmark ---------------------------------------------------------------------------------


def benchmark(sizes: list[int], models: list[str], threads: int, timeout: float, workdir: Path,
              from_files: bool, on_row: Any = lambda rows: None) -> list[dict]:
    """Run every step; ``on_row(rows)`` after each, so a long run leaves its figures if stopped.

    :param from_files: generate once, write MovieLens CSV files, and let the steps load that
        directory (a data source the DAG also takes) instead of regenerating in every step.
    """
    rows = []
    for n_ratings in sizes:
        source = source_for(n_ratings)
        store = workdir / f"ratings_{n_ratings}"
        store.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
        state = store / "generate.json"
        files = store / "movielens"
        state.write_text(json.dumps({"write_to": str(files)} if from_files else {}))
        figures = run_step("generate", source, "-", tracking_uri, state, threads, timeout)
        info = json.loads(state.read_text())
        print(f"{n_ratings:>9,} ratings ({info['n_users']:,} users, {info['n_movies']:,} movies): generate "
              f"{figures['wall_seconds']:.1f} s, peak {figures['peak_rss_bytes'] / 2**30:.2f} GiB "
              f"(load {figures['load_1min_before']})", flush=True)
        rows.append({"n_ratings": n_ratings, "source": source, "model_type": "-", "step": "generate", **figures})
        on_row(rows)
        step_source = str(files) if from_files else source
        for model_type in models:
            state = store / f"{model_type}.json"
            state.unlink(missing_ok=True)
            for step in STEPS:
                figures = run_step(step, step_source, model_type, tracking_uri, state, threads, timeout)
                detail = json.loads(state.read_text())
                row = {"n_ratings": n_ratings, "source": source, "model_type": model_type, "step": step,
                       "data_loaded_from": "files" if from_files else "generator", **figures}
                if step == "train":
                    row["training_seconds"] = detail["training_seconds"]
                if step == "log":
                    row["metrics"] = detail["metrics"]
                if step == "validate":
                    row["validation_passed"] = detail["validation_passed"]
                rows.append(row)
                on_row(rows)
                print(f"{n_ratings:>9,} {model_type:<24} {step:<9} {figures['wall_seconds']:8.1f} s  "
                      f"peak {figures['peak_rss_bytes'] / 2**30:5.2f} GiB (tree {figures['tree_peak_rss_bytes'] / 2**30:5.2f})  "
                      f"swap out {figures['pages_swapped_out']} pages  load {figures['load_1min_before']}", flush=True)
    return rows


def goals(rows: list[dict]) -> dict[str, Any]:
    biggest = max(r["n_ratings"] for r in rows)
    at_biggest = [r for r in rows if r["n_ratings"] == biggest]
    peak = max(max(r["peak_rss_bytes"], r["tree_peak_rss_bytes"]) for r in at_biggest)
    swapped = sum(r["pages_swapped_out"] for r in at_biggest)
    torch_train = [r for r in at_biggest if r["model_type"] == "torch_ncf" and r["step"] == "train"]
    result = {
        "size": biggest,
        "peak_rss_gib": peak / 2**30,
        "within_24_gib": peak < GOAL_MEMORY_GIB * 2**30,
        "pages_swapped_out": swapped,
        "no_swapping": swapped == 0,
    }
    if torch_train:
        result["torch_train_seconds"] = torch_train[0]["wall_seconds"]
        result["torch_within_15_min"] = torch_train[0]["wall_seconds"] < GOAL_TORCH_SECONDS
    return result


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["n_ratings"] for r in rows})
    models = [m for m in MODEL_TYPES if any(r["model_type"] == m for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"train": "#2b8cbe", "log": "#7bccc4", "validate": "#bae4bc"}
    labels = [f"{m}\n{n / 1e6:g}M" for n in sizes for m in models]
    for i, (n, m) in enumerate((n, m) for n in sizes for m in models):
        bottom = 0.0
        for step in STEPS:
            r = next((r for r in rows if r["n_ratings"] == n and r["model_type"] == m and r["step"] == step), None)
            if r is None:
                continue
            axes[0].bar(i, r["wall_seconds"] / 60, bottom=bottom, color=colors[step], label=step if i == 0 else None)
            bottom += r["wall_seconds"] / 60
        peak = max((max(r["peak_rss_bytes"], r["tree_peak_rss_bytes"]) for r in rows
                    if r["n_ratings"] == n and r["model_type"] == m), default=0)
        axes[1].bar(i, peak / 2**30, color="#636363")
    axes[0].axhline(GOAL_TORCH_SECONDS / 60, color="red", ls="--", lw=1, label="15 min (torch train goal)")
    axes[0].set_ylabel("wall time, minutes")
    axes[0].set_title("train + log + validate, each a subprocess")
    axes[0].legend(fontsize=8)
    axes[1].axhline(GOAL_MEMORY_GIB, color="red", ls="--", lw=1, label="24 GiB")
    axes[1].set_ylabel("peak RSS of the worst step, GiB")
    axes[1].set_title("peak memory")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=60)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--models", nargs="+", choices=MODEL_TYPES, default=list(MODEL_TYPES))
    parser.add_argument("--threads", type=int, default=2, help="native threads per step (the machine's 2 cores)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a step is killed")
    parser.add_argument("--workdir", type=Path, help="where the MLflow stores go (default: a temporary directory)")
    parser.add_argument("--output", type=Path, default=REPO / "bench/results/training_scale.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/training_scale.png")
    parser.add_argument("--include", type=Path, action="append", default=[], metavar="JSON",
                        help="rows of an earlier run (its JSON) to report and plot with this run's, "
                             "e.g. 1M measured earlier and 5M now")
    parser.add_argument("--from-files", action="store_true",
                        help="generate once and let every step load the written MovieLens CSV directory "
                             "(default: every step regenerates from the synthetic source string, as the DAG does)")
    # Internal: one step in a child process.
    parser.add_argument("--child", choices=("generate", *STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--model-type", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plot-from", type=Path, nargs="+", metavar="JSON",
                        help="only redraw the plot from the rows of earlier runs' JSON")
    args = parser.parse_args(argv)
    if args.plot_from:
        plot([r for path in args.plot_from for r in json.loads(path.read_text())["rows"]], args.plot)
        return 0
    if args.child:
        child(args.child, args.source, args.model_type, args.tracking_uri, args.state)
        return 0
    # A terminated benchmark stops its step too (each step runs in its own process group).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if any(n < 1000 for n in args.sizes):
        parser.error("--sizes: each size must be at least 1000 ratings")
    if args.threads < 1:
        parser.error("--threads must be at least 1")

    def build_report(rows: list[dict]) -> dict[str, Any]:
        for earlier in args.include:
            rows = [r for r in json.loads(earlier.read_text())["rows"] if r["n_ratings"] not in args.sizes] + rows
        return {
            "benchmark": "training_scale",
            "config": {"sizes": args.sizes, "models": args.models, "threads": args.threads, "from_files": args.from_files,
                       "included": [str(p) for p in args.include]},
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "memory_gib": round(_meminfo()["MemTotal"] / 2**30, 1),
                        "swap_total_gib": round(_meminfo().get("SwapTotal", 0) / 2**30, 1)},
            "rows": rows,
            "goals": goals(rows),
        }

    def write(rows: list[dict]) -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(build_report(rows), indent=2, default=str) + "\n")

    with tempfile.TemporaryDirectory(prefix="training-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        rows = benchmark(args.sizes, args.models, args.threads, args.timeout, workdir, args.from_files, on_row=write)
    write(rows)
    report = build_report(rows)
    g = report["goals"]
    print(f"goal at {g['size']:,} ratings: peak {g['peak_rss_gib']:.2f} GiB "
          f"({'within' if g['within_24_gib'] else 'OVER'} 24 GiB), swapped out {g['pages_swapped_out']} pages"
          + (f"; torch train {g['torch_train_seconds'] / 60:.1f} min "
             f"({'within' if g['torch_within_15_min'] else 'OVER'} 15 min)" if "torch_train_seconds" in g else ""))
    plot(report["rows"], args.plot)
    print(f"wrote {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
