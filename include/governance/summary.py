"""A readable summary of one model version: evidence, decisions and where the champion is."""

from __future__ import annotations

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases, require_version

KEY_METRICS = ("accuracy", "precision", "recall", "f1_score", "roc_auc")


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
        "validation_summary": mv.tags.get("validation_summary"),
        "approval_status": mv.tags.get(lc.APPROVAL_STATUS),
        "approval_reason": mv.tags.get(lc.APPROVAL_REASON),
        "approved_by": mv.tags.get(lc.APPROVED_BY),
        "champion_version": aliases.get(lc.CHAMPION),
        "previous_champion_version": aliases.get(lc.PREVIOUS_CHAMPION),
        "aliases": sorted(alias for alias, v in aliases.items() if v == str(mv.version)),
    }


def format_summary(summary: dict) -> str:
    """Render ``version_summary`` as aligned lines for a terminal."""
    metrics = "  ".join(f"{name}={value:.4f}" for name, value in summary["metrics"].items()) or "none logged"
    approval = summary["approval_status"] or "none"
    if summary["approval_reason"]:
        approval += f" ({summary['approval_reason']})"
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
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
