"""Plots for docs/benchmarks.md from the timing benchmarks' JSON (sections 1 and 4).

Usage (from the repository root, after the benchmarks ran):

    .venv/bin/python bench/plot_timing.py

Reads bench/results/orchestration_overhead.json and bench/results/approval_latency.json (a
missing file is skipped with a note) and writes docs/img/orchestration_overhead.png and
docs/img/approval_latency.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
IMAGES = REPO / "docs" / "img"


def plot_overhead(report: dict, output: Path) -> None:
    """Two stacked bars, DAG and script: start-up, each step, gaps and exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dag, script, steps = report["dag"], report["script"], report["per_task"]
    parts = [("start-up", dag["startup_seconds_median"], script["startup_seconds_median"])]
    # The DAG's task order (the JSON keeps keys sorted).
    from bench.orchestration_overhead import STEPS

    parts += [(step, steps[step]["task_seconds"], steps[step]["script_seconds"]) for step in STEPS if step in steps]
    parts += [("gaps between tasks", dag["gap_seconds_median"], 0.0), ("exit", dag["tail_seconds_median"], 0.0)]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    colors = plt.get_cmap("tab20").colors
    left = {"airflow dags test": 0.0, "plain script": 0.0}
    for index, (name, dag_seconds, script_seconds) in enumerate(parts):
        for label, seconds in (("airflow dags test", dag_seconds), ("plain script", script_seconds)):
            if seconds and seconds > 0:
                ax.barh(label, seconds, left=left[label], color=colors[index % len(colors)],
                        label=name if label == "airflow dags test" else None, edgecolor="white", linewidth=0.5)
                left[label] += seconds
    ax.set_xlabel("seconds (medians of the parts; wall-time medians: "
                  f"{dag['wall_seconds_median']:.1f} vs {script['wall_seconds_median']:.1f}, ratio {report['ratio']:.2f})")
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    ax.set_title("Retrain DAG under airflow dags test vs the same steps as a script", fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def plot_latency(report: dict, output: Path) -> None:
    """Each configuration's approvals (dots), their median (bar), the 10 s goal (line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = report["configs"]
    labels = [f"{c['mode']}\npoke {c['poke_seconds']:g} s" for c in configs]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for x, config in enumerate(configs):
        latencies = [r["latency_seconds"] for r in config["runs"]]
        if config["latency_seconds_median"] is not None:
            ax.bar(x, config["latency_seconds_median"], color="#9ecae1", width=0.6)
        ax.scatter([x] * len(latencies), latencies, color="#08519c", zorder=3, s=18)
    ax.axhline(10, color="#d62728", linestyle="--", linewidth=1)
    ax.text(len(configs) - 0.5, 10.3, "goal 10 s", color="#d62728", ha="right", fontsize=8)
    ax.set_xticks(range(len(configs)), labels, fontsize=8)
    ax.set_ylabel("reviewer's tag -> @champion moved, s")
    ax.set_title("Approval latency under a real scheduler (bar: median; dots: repeats)", fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--images", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    args.images.mkdir(parents=True, exist_ok=True)
    for name, plot in (("orchestration_overhead", plot_overhead), ("approval_latency", plot_latency)):
        source = args.results / f"{name}.json"
        if not source.exists():
            print(f"skipped {name}: {source} does not exist (run bench/{name}.py first)", file=sys.stderr)
            continue
        output = args.images / f"{name}.png"
        plot(json.loads(source.read_text()), output)
        print(f"written: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
