"""A version's lineage: where it came from, the aliases it holds, the champion succession around
it, and the evidence files (validation report, chart, audit mirror) with their artifact paths.

The run-side facts come from ``summary.model_lineage``; the succession from the audit trail's
``champion_history`` (every promotion and rollback, oldest first); the evidence from listing the
run's artifacts under the directories validation and the audit mirror write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlflow import MlflowClient

from include.governance.audit import ARTIFACT_DIR as AUDIT_DIR
from include.governance.audit import AuditEvent, AuditLog
from include.governance.summary import model_lineage
from include.governance.validation import REPORT_DIR

EVIDENCE_DIRS = (REPORT_DIR, AUDIT_DIR)


def version_lineage(client: MlflowClient, log: AuditLog | None, model_name: str, version: str | int) -> dict[str, Any]:
    """Everything ``lineage`` shows for one version (JSON-able).

    :param log: the audit table; None when there is none (the succession is then unknown).
    :raises VersionNotFound: through ``model_lineage`` when the version does not exist.
    """
    lineage = model_lineage(client, model_name, version)
    version = lineage["version"]
    aliases = client.get_registered_model(model_name).aliases or {}
    lineage["aliases"] = sorted(alias for alias, held in aliases.items() if str(held) == version)
    lineage["succession"] = None if log is None else champion_succession(log.champion_history(model_name), version)
    lineage["evidence"] = evidence_files(client, lineage["run_id"])
    return lineage


def champion_succession(history: Sequence[AuditEvent], version: str) -> list[dict[str, Any]]:
    """Each time version took ``@champion``: who held it before, who took it after, and when.

    :param history: the model's champion events, oldest first.
    """
    tenures = []
    for index, event in enumerate(history):
        if str(event.version) != version:
            continue
        before = history[index - 1] if index > 0 else None
        after = history[index + 1] if index + 1 < len(history) else None
        tenures.append({
            "took_at": event.occurred_at.isoformat(timespec="seconds"),
            "how": event.event.value,
            "by": event.actor,
            "reason": event.reason,
            "before": event.counterpart_version or (str(before.version) if before else None),
            "before_since": before.occurred_at.isoformat(timespec="seconds") if before else None,
            "after": str(after.version) if after else None,
            "after_at": after.occurred_at.isoformat(timespec="seconds") if after else None,
        })
    return tenures


def evidence_files(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """The run's files under the evidence directories: artifact path, full URI and size."""
    root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    files: list[dict[str, Any]] = []
    pending = list(EVIDENCE_DIRS)
    while pending:
        for item in client.list_artifacts(run_id, pending.pop(0)):
            if item.is_dir:
                pending.append(item.path)
            else:
                files.append({"path": item.path, "uri": f"{root}/{item.path}", "size": item.file_size})
    return sorted(files, key=lambda f: f["path"])


def lineage_rows(lineage: dict[str, Any]) -> list[tuple[str, str]]:
    """The text view's FIELD/VALUE rows."""
    rows = [
        ("model", f"{lineage['model_name']} v{lineage['version']}"),
        ("aliases", ", ".join(f"@{a}" for a in lineage["aliases"]) or "none"),
        ("run", f"{lineage['run_id']} ({lineage['run_name']}, {lineage['run_status']})"),
        ("experiment", f"{lineage['experiment_name']} (id {lineage['experiment_id']})"),
        ("source", lineage["source"]),
        ("data", lineage["data_fingerprint"]),
        ("dag", lineage["airflow_dag_id"]),
        ("dag run", lineage["airflow_run_id"]),
        ("submitted by", lineage["submitted_by"]),
    ]
    rows += [(name, value) for name, value in lineage["dataset_info"].items()]
    rows += _succession_rows(lineage["succession"], lineage["version"])
    rows += [("evidence", f"{f['path']}  ({f['uri']})") for f in lineage["evidence"]] or [("evidence", "none logged")]
    return rows


def _succession_rows(succession: list[dict[str, Any]] | None, version: str) -> list[tuple[str, str]]:
    if succession is None:
        return [("champion", "unknown (no audit trail)")]
    if not succession:
        return [("champion", f"v{version} never held @champion")]
    rows = []
    for tenure in succession:
        before = f"v{tenure['before']}" if tenure["before"] else "nobody"
        after = f"v{tenure['after']} at {tenure['after_at']}" if tenure["after"] else "still champion"
        rows.append(("champion", f"{tenure['how']} at {tenure['took_at']} by {tenure['by']}: "
                                 f"replaced {before}; then {after}"))
    return rows
