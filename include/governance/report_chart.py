"""The validation chart: challenger vs champion metrics, the gates, and the measured latency.

Drawn with matplotlib's Figure API on its default Agg canvas: no pyplot global state, no display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from include.governance import lifecycle as lc

CHART_METRICS = lc.EVIDENCE_METRICS


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def write_comparison_chart(
    path: str | Path,
    *,
    title: str,
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    minimums: Mapping[str, float],
    latency_ms: Mapping[str, float | None],
    max_latency_ms: float,
) -> Path:
    """Write a PNG: grouped metric bars (challenger, champion) with gate marks, and latency bars.

    A metric that is missing or not finite is drawn as an empty slot labelled "n/a".

    :param path: the PNG file to write.
    :param title: the chart title (model and version).
    :param challenger: the version's metrics.
    :param champion: the current champion's metrics, None when there is none.
    :param minimums: metric -> the gate's minimum, drawn as a tick over the metric.
    :param latency_ms: label -> p95 latency in ms (None when not measured).
    :param max_latency_ms: the latency gate, drawn as a line.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5))
    # Fixed margins: the constrained layout engine costs more than the rest of the drawing.
    metrics_axes, latency_axes = figure.subplots(
        1, 2, width_ratios=[3, 1], gridspec_kw={"left": 0.06, "right": 0.98, "bottom": 0.1, "top": 0.9, "wspace": 0.25}
    )
    _draw_metrics(metrics_axes, title, challenger, champion, minimums)
    _draw_latency(latency_axes, latency_ms, max_latency_ms)

    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def _draw_metrics(metrics_axes: Any, title: str, challenger: Mapping[str, Any], champion: Mapping[str, Any] | None,
                  minimums: Mapping[str, float]) -> None:
    """Grouped bars per metric (challenger, champion), each gate's minimum as a dashed tick."""
    series = [("challenger", challenger, "tab:blue")]
    if champion is not None:
        series.append(("champion", champion, "tab:grey"))
    width = 0.8 / len(series)
    for offset, (label, values, colour) in enumerate(series):
        xs = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(CHART_METRICS))]
        heights = [_number(values.get(metric)) for metric in CHART_METRICS]
        bars = metrics_axes.bar(xs, [h or 0.0 for h in heights], width, label=label, color=colour)
        for bar, height in zip(bars, heights):
            text = "n/a" if height is None else f"{height:.3f}"
            metrics_axes.annotate(
                text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center", va="bottom", fontsize=7,
            )
    for i, metric in enumerate(CHART_METRICS):
        if metric in minimums:
            metrics_axes.hlines(
                minimums[metric], i - 0.45, i + 0.45, colors="tab:red", linestyles="--", zorder=3,
                label="gate minimum" if i == 0 else None,
            )
    metrics_axes.set_xticks(range(len(CHART_METRICS)), CHART_METRICS)
    metrics_axes.set_ylim(0, 1.12)
    metrics_axes.set_ylabel("holdout metric")
    metrics_axes.legend(loc="upper center", ncol=3, fontsize=8)
    metrics_axes.set_title(title)


def _draw_latency(latency_axes: Any, latency_ms: Mapping[str, float | None], max_latency_ms: float) -> None:
    """The measured p95 latencies as bars, the gate as a dashed line."""
    labels = list(latency_ms)
    heights = [_number(latency_ms[label]) for label in labels]
    bars = latency_axes.bar(labels, [h or 0.0 for h in heights], color="tab:blue")
    for bar, height in zip(bars, heights):
        text = "n/a" if height is None else f"{height:.2f}"
        latency_axes.annotate(
            text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7
        )
    latency_axes.axhline(max_latency_ms, color="tab:red", linestyle="--", label=f"max {max_latency_ms:g} ms")
    latency_axes.set_ylabel("p95 ms per request")
    latency_axes.set_title("Inference latency")
    latency_axes.legend(fontsize=8)
