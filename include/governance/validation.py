"""Validate a registered version: gather its evidence, run the gates, record the verdict."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.artifact import probe_version
from include.governance.gates import PERFORMANCE_GATES, ArtifactEvidence, GateReport, evaluate_gates
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases, require_version, set_alias, set_tags
from include.governance.report_chart import write_comparison_chart

log = logging.getLogger(__name__)

# Metrics copied onto the version as validation_<metric> tags (the seed tags accuracy).
TAGGED_METRICS = lc.EVIDENCE_METRICS
# Latency measured on the registered artifact at validation time, tagged on the version.
INFERENCE_P50_TAG = "validation_inference_p50_ms"
INFERENCE_P95_TAG = "validation_inference_p95_ms"
REPORT_DIR = "validation"


@dataclass(frozen=True)
class ValidationOutcome:
    model_name: str
    version: str
    passed: bool
    summary: str
    baseline_version: str | None
    improvement: float | None
    report_path: str
    chart_path: str

    def as_xcom(self) -> dict[str, Any]:
        """A small JSON-able summary for XCom (identifiers and verdicts, never data)."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "passed": self.passed,
            "summary": self.summary,
            "baseline_version": self.baseline_version,
            "improvement": self.improvement,
        }


def validate_model_version(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    policy: GovernancePolicy,
) -> ValidationOutcome:
    """Run the policy's gates on a version, tag it, log the report, and set ``@challenger``.

    A version that passes becomes ``@challenger``; one that fails loses that alias if it held
    it. The current ``@champion`` is never touched here.

    :param version: the version to validate.
    :param policy: thresholds (with any per-run overrides already applied).
    """
    version = str(version)
    mv = require_version(client, model_name, version)
    run = client.get_run(mv.run_id)
    aliases = get_aliases(client, model_name)
    champion_version = aliases.get(lc.CHAMPION)
    champion_metrics, champion_tags = _champion_evidence(client, model_name, champion_version, version)

    artifact, report = _judge(client, mv, run, policy, champion_metrics, champion_version)

    timestamp = lc.utc_now_iso()
    report_path = f"{REPORT_DIR}/validation_report_v{version}.json"
    chart_path = f"{REPORT_DIR}/validation_chart_v{version}.png"
    document = _report_document(
        model_name, version, timestamp, policy, report, artifact, run.data.metrics, champion_metrics
    )
    client.log_text(mv.run_id, json.dumps(document, indent=2, default=str), report_path)
    _log_chart(client, mv.run_id, chart_path, model_name, version, policy, run.data.metrics,
               champion_metrics, champion_tags, champion_version, artifact)

    status = lc.ValidationStatus.PASSED if report.passed else lc.ValidationStatus.FAILED
    baseline = champion_version if champion_metrics is not None else lc.NO_BASELINE
    tags = _verdict_tags(status, timestamp, baseline, report, run.data.metrics, artifact, policy)
    set_tags(client, model_name, version, tags)

    _update_challenger(client, model_name, version, aliases, passed=report.passed)
    log.info("%s v%s validation %s: %s", model_name, version, status.value, report.summary())
    return ValidationOutcome(
        model_name=model_name,
        version=version,
        passed=report.passed,
        summary=report.summary(),
        baseline_version=report.baseline_version,
        improvement=report.improvement,
        report_path=report_path,
        chart_path=chart_path,
    )


def _judge(client: MlflowClient, mv, run, policy: GovernancePolicy, champion_metrics, champion_version):
    """Probe the registered artifact and run the gates on the run's evidence: (artifact, report)."""
    thresholds = policy.validation
    artifact = probe_version(
        client,
        mv,
        rows=thresholds.latency_probe_rows,
        runs=thresholds.latency_probe_runs,
        threads=thresholds.latency_probe_threads,
    )
    report = evaluate_gates(
        run.data.metrics,
        run.data.params,
        thresholds,
        artifact=artifact,
        champion_metrics=champion_metrics,
        champion_version=champion_version if champion_metrics is not None else None,
    )
    return artifact, report


def _update_challenger(client: MlflowClient, model_name: str, version: str, aliases: dict, *, passed: bool) -> None:
    """A pass makes the version ``@challenger``; a fail takes the alias away if it held it."""
    if passed:
        set_alias(client, model_name, lc.CHALLENGER, version)
    elif aliases.get(lc.CHALLENGER) == version:
        client.delete_registered_model_alias(model_name, lc.CHALLENGER)


def _champion_evidence(client: MlflowClient, model_name: str, champion_version: str | None, version: str):
    """The champion's run metrics and tags to compare with (None, None without another champion)."""
    if champion_version is None or champion_version == version:
        return None, None
    champion = require_version(client, model_name, champion_version)
    return client.get_run(champion.run_id).data.metrics, champion.tags


def _verdict_tags(
    status: lc.ValidationStatus,
    timestamp: str,
    baseline: str,
    report: GateReport,
    metrics: dict[str, float],
    artifact,
    policy: GovernancePolicy,
) -> dict[str, str]:
    """The tags that record a validation on the version: verdict, evidence, baseline, overrides."""
    tags = {
        lc.VALIDATION_STATUS: status.value,
        lc.VALIDATION_TIMESTAMP: timestamp,
        lc.VALIDATION_BASELINE_VERSION: baseline,
        lc.VALIDATION_SUMMARY: report.summary()[:4000],
    }
    for metric in TAGGED_METRICS:
        if metric in metrics:
            tags[f"{lc.VALIDATION_METRIC_PREFIX}{metric}"] = f"{metrics[metric]:.6f}"
    if artifact.inference_p95_ms is not None:
        tags[INFERENCE_P50_TAG] = f"{artifact.inference_p50_ms:.4f}"
        tags[INFERENCE_P95_TAG] = f"{artifact.inference_p95_ms:.4f}"
    if report.improvement is not None:
        tags[lc.VALIDATION_IMPROVEMENT] = f"{report.improvement:+.6f}"
    if policy.overrides:
        tags[lc.VALIDATION_POLICY_OVERRIDES] = policy.overrides_json()
    return tags


def _report_document(
    model_name: str,
    version: str,
    timestamp: str,
    policy: GovernancePolicy,
    report: GateReport,
    artifact: ArtifactEvidence,
    metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
) -> dict[str, Any]:
    """The JSON report: checks (value, threshold, verdict), warnings, policy, overrides, metrics."""
    return {
        "model_name": model_name,
        "version": version,
        "validation_timestamp": timestamp,
        "validation_status": (lc.ValidationStatus.PASSED if report.passed else lc.ValidationStatus.FAILED).value,
        "summary": report.summary(),
        "policy_version": policy.policy_version,
        "policy_overrides": dict(policy.overrides),
        "policy": asdict(policy.validation),
        **report.to_dict(),
        "artifact_probe": asdict(artifact),
        "metrics": _json_metrics(metrics),
        "champion_metrics": None if champion_metrics is None else _json_metrics(champion_metrics),
    }


def _json_metrics(metrics: Mapping[str, float]) -> dict[str, Any]:
    """The tagged metrics for strict JSON: a non-finite value is written as its text ("nan")."""
    return {
        name: (value if value is None or math.isfinite(value) else str(value))
        for name, value in ((name, metrics.get(name)) for name in TAGGED_METRICS)
    }


def _log_chart(
    client: MlflowClient,
    run_id: str,
    artifact_path: str,
    model_name: str,
    version: str,
    policy: GovernancePolicy,
    metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    champion_tags: Mapping[str, str] | None,
    champion_version: str | None,
    artifact: ArtifactEvidence,
) -> None:
    """Draw the challenger-vs-champion chart and log it next to the JSON report."""
    thresholds = policy.validation
    latency = {f"v{version}": artifact.inference_p95_ms}
    if champion_tags is not None:
        latency[f"champion v{champion_version}"] = champion_tags.get(INFERENCE_P95_TAG)
    directory, name = artifact_path.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="validation-chart-") as tmp:
        path = write_comparison_chart(
            Path(tmp) / name,
            title=f"{model_name} v{version} vs " + (f"champion v{champion_version}" if champion_metrics else "gates (no champion)"),
            challenger=metrics,
            champion=champion_metrics,
            minimums={metric: getattr(thresholds, attribute) for metric, attribute in PERFORMANCE_GATES.items()},
            latency_ms=latency,
            max_latency_ms=thresholds.max_inference_time_ms,
        )
        client.log_artifact(run_id, str(path), artifact_path=directory)
