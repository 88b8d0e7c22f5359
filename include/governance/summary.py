"""A readable summary of one model version: evidence, decisions and where the champion is."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases, require_version
from include.governance.serving_figures import figures_from_tags

KEY_METRICS = lc.EVIDENCE_METRICS


def version_summary(client: MlflowClient, model_name: str, version: str | int) -> dict:
    """Collect what a person asks first about a version, from the registry alone."""
    mv = require_version(client, model_name, version)
    run = client.get_run(mv.run_id)
    aliases = get_aliases(client, model_name)
    return {
        "model_name": model_name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "metrics": {m: run.data.metrics[m] for m in KEY_METRICS if m in run.data.metrics},
        "training_seconds": run.data.metrics.get("training_time_seconds"),
        "validation_status": mv.tags.get(lc.VALIDATION_STATUS),
        "validation_summary": mv.tags.get(lc.VALIDATION_SUMMARY),
        "approval_status": mv.tags.get(lc.APPROVAL_STATUS),
        "approval_reason": mv.tags.get(lc.APPROVAL_REASON),
        "approved_by": mv.tags.get(lc.APPROVED_BY),
        "champion_version": aliases.get(lc.CHAMPION),
        "previous_champion_version": aliases.get(lc.PREVIOUS_CHAMPION),
        "aliases": sorted(alias for alias, v in aliases.items() if v == str(mv.version)),
        "submitted_by": mv.tags.get(lc.SUBMITTED_BY),
        "approval_notes": mv.tags.get(lc.APPROVAL_NOTES),
        "validation_timestamp": mv.tags.get(lc.VALIDATION_TIMESTAMP),
        "validation_baseline_version": mv.tags.get(lc.VALIDATION_BASELINE_VERSION),
        "promotion_timestamp": mv.tags.get(lc.PROMOTION_TIMESTAMP),
        "data_fingerprint": mv.tags.get(lc.DATA_FINGERPRINT),
        "airflow_dag_id": mv.tags.get(lc.AIRFLOW_DAG_ID),
        "airflow_run_id": mv.tags.get(lc.AIRFLOW_RUN_ID),
        "serving": serving_summary(mv.tags),
    }


def serving_summary(tags: dict[str, str]) -> dict | None:
    """How the version served (the serving figures task's tags), or None when it never has."""
    figures = figures_from_tags(tags)
    if not figures:
        return None
    share = tags.get(lc.SERVING_CANARY_SHARE)
    return {
        "variants": figures,
        "canary_share": float(share) if share is not None else None,
        "recorded_at": tags.get(lc.SERVING_RECORDED_AT),
        "run_id": tags.get(lc.SERVING_RUN_ID),
    }


def serving_rows(serving: dict | None) -> list[tuple[str, str]]:
    """``serving_summary`` as (label, text) lines: one per variant served, then when recorded."""
    if not serving:
        return []
    rows = []
    for variant, figures in serving["variants"].items():
        text = f"{figures.get('requests', 0):.0f} requests, {figures.get('errors', 0):.0f} errors"
        if figures.get("error_rate") is not None:
            text += f" ({figures['error_rate']:.2%})"
        text += "".join(f", {p} {figures[f'{p}_ms']:.1f} ms" for p in ("p50", "p95") if f"{p}_ms" in figures)
        if variant == "canary" and serving["canary_share"] is not None:
            text += f", {serving['canary_share']:.1%} of the model's requests"
        rows.append((f"serving {variant}", text))
    rows.append(("serving as of", f"{serving['recorded_at']} (run {serving['run_id']})"))
    return rows


def format_summary(summary: dict) -> str:
    """Render ``version_summary`` as aligned lines for a terminal."""
    metrics = "  ".join(f"{name}={value:.4f}" for name, value in summary["metrics"].items()) or "none logged"
    approval = summary["approval_status"] or "none"
    if summary["approval_reason"]:
        approval += f" ({summary['approval_reason']})"
    if summary.get("approved_by"):
        approval += f", by {summary['approved_by']}"
    validation = summary["validation_status"] or "not validated"
    if summary["validation_summary"]:
        validation += f" ({summary['validation_summary']})"
    rows = [
        ("model", f"{summary['model_name']} v{summary['version']}  (run {summary['run_id']})"),
        ("metrics", metrics),
        ("validation", validation),
        ("approval", approval),
        ("champion", f"v{summary['champion_version']}" if summary["champion_version"] else "none"),
        ("aliases", ", ".join(f"@{a}" for a in summary["aliases"]) or "none"),
    ]
    if summary["training_seconds"] is not None:
        rows.append(("training time", f"{summary['training_seconds']:.1f} s"))
    optional = (
        ("submitted by", "submitted_by"),
        ("notes", "approval_notes"),
        ("promoted at", "promotion_timestamp"),
        ("data", "data_fingerprint"),
        ("dag run", "airflow_run_id"),
    )
    rows.extend((label, str(summary[key])) for label, key in optional if summary.get(key))
    rows.extend(serving_rows(summary.get("serving")))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def compare_versions(client: MlflowClient, model_name: str, version_a: str | int, version_b: str | int) -> dict:
    """Metrics and params of two versions side by side (the seed's ``compare_model_versions``).

    :return: ``version1``/``version2`` (version, aliases, metrics, params, creation time),
        ``metrics`` and ``params`` as rows ``{name, a, b}`` (metrics also ``diff`` = b - a), and
        the seed's ``performance_diff`` on accuracy when both have it.
    """
    aliases = get_aliases(client, model_name)
    sides = []
    for version in (version_a, version_b):
        mv = require_version(client, model_name, version)
        run = client.get_run(mv.run_id)
        sides.append(
            {
                "version": str(mv.version),
                "aliases": sorted(alias for alias, v in aliases.items() if v == str(mv.version)),
                "run_id": mv.run_id,
                "metrics": dict(run.data.metrics),
                "params": dict(run.data.params),
                "creation_time": mv.creation_timestamp,
                "approval_status": mv.tags.get(lc.APPROVAL_STATUS),
                "validation_status": mv.tags.get(lc.VALIDATION_STATUS),
                "serving": serving_summary(mv.tags),
            }
        )
    a, b = sides
    metric_rows = []
    for name in sorted(set(a["metrics"]) | set(b["metrics"])):
        va, vb = a["metrics"].get(name), b["metrics"].get(name)
        diff = vb - va if va is not None and vb is not None else None
        metric_rows.append({"name": name, "a": va, "b": vb, "diff": diff})
    param_rows = [
        {"name": name, "a": a["params"].get(name), "b": b["params"].get(name),
         "differs": a["params"].get(name) != b["params"].get(name)}
        for name in sorted(set(a["params"]) | set(b["params"]))
    ]
    comparison = {
        "model_name": model_name,
        "version1": a,
        "version2": b,
        "metrics": metric_rows,
        "params": param_rows,
        "serving": serving_comparison(a["serving"], b["serving"]),
    }
    if "accuracy" in a["metrics"] and "accuracy" in b["metrics"]:
        improvement = b["metrics"]["accuracy"] - a["metrics"]["accuracy"]
        comparison["performance_diff"] = {
            "accuracy_improvement": improvement,
            "better_model": b["version"] if improvement > 0 else a["version"],
        }
    return comparison


def serving_comparison(a: dict | None, b: dict | None) -> list[dict]:
    """Serving figures of two versions as rows ``{name, a, b, diff}`` (e.g. ``canary p95_ms``).

    Empty when neither version has served; a figure only one side has compares with None.
    """
    sides = [(side or {}).get("variants", {}) for side in (a, b)]
    rows = []
    for variant in lc.SERVING_VARIANTS:
        for figure in lc.SERVING_FIGURES:
            va, vb = (side.get(variant, {}).get(figure) for side in sides)
            if va is None and vb is None:
                continue
            diff = vb - va if va is not None and vb is not None else None
            rows.append({"name": f"{variant} {figure}", "a": va, "b": vb, "diff": diff})
    return rows


def model_lineage(client: MlflowClient, model_name: str, version: str | int) -> dict:
    """Where a version came from: run, experiment, data and DAG run (the seed's ``get_model_lineage``)."""
    mv = require_version(client, model_name, version)
    run = client.get_run(mv.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    params = dict(run.data.params)
    return {
        "model_name": model_name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "run_name": run.info.run_name,
        "run_status": run.info.status,
        "experiment_id": run.info.experiment_id,
        "experiment_name": experiment.name,
        "creation_time": mv.creation_timestamp,
        "source": mv.source,
        "model_id": getattr(mv, "model_id", None),
        "data_fingerprint": mv.tags.get(lc.DATA_FINGERPRINT) or params.get("dataset_fingerprint"),
        "dataset_info": {k: v for k, v in sorted(params.items()) if k.startswith("dataset_")},
        "airflow_dag_id": mv.tags.get(lc.AIRFLOW_DAG_ID) or run.data.tags.get(lc.AIRFLOW_DAG_ID),
        "airflow_run_id": mv.tags.get(lc.AIRFLOW_RUN_ID) or run.data.tags.get(lc.AIRFLOW_RUN_ID),
        "submitted_by": mv.tags.get(lc.SUBMITTED_BY),
        "tags": dict(mv.tags),
        "metrics": dict(run.data.metrics),
        "parameters": params,
    }
