"""Validate a registered version: gather its evidence, run the gates, record the verdict."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.gates import Check, GateReport, evaluate_gates
from include.governance.policy import GovernancePolicy
from include.governance.registry import (
    RegistryError,
    get_aliases,
    model_artifact_problem,
    require_version,
    set_tags,
)

log = logging.getLogger(__name__)

# Metrics copied onto the version as validation_<metric> tags (the seed tags accuracy).
TAGGED_METRICS = ("accuracy", "precision", "recall", "f1_score", "roc_auc")


@dataclass(frozen=True)
class ValidationOutcome:
    model_name: str
    version: str
    passed: bool
    summary: str
    baseline_version: str | None
    improvement: float | None
    report_path: str

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

    champion_metrics = None
    if champion_version is not None and champion_version != version:
        champion = require_version(client, model_name, champion_version)
        champion_metrics = client.get_run(champion.run_id).data.metrics

    report = evaluate_gates(
        run.data.metrics,
        run.data.params,
        policy.validation,
        champion_metrics=champion_metrics,
        champion_version=champion_version if champion_metrics is not None else None,
    )
    report.checks.insert(0, _loadability_check(client, mv))

    timestamp = lc.utc_now_iso()
    report_path = f"validation/validation_report_v{version}.json"
    client.log_text(mv.run_id, _report_json(model_name, version, timestamp, policy, report), report_path)

    status = lc.ValidationStatus.PASSED if report.passed else lc.ValidationStatus.FAILED
    tags = {
        lc.VALIDATION_STATUS: status.value,
        lc.VALIDATION_TIMESTAMP: timestamp,
        lc.VALIDATION_BASELINE_VERSION: champion_version if champion_metrics is not None else lc.NO_BASELINE,
        "validation_summary": report.summary()[:4000],
    }
    for metric in TAGGED_METRICS:
        if metric in run.data.metrics:
            tags[f"{lc.VALIDATION_METRIC_PREFIX}{metric}"] = f"{run.data.metrics[metric]:.6f}"
    if report.improvement is not None:
        tags["validation_improvement"] = f"{report.improvement:+.6f}"
    if policy.overrides:
        tags["validation_policy_overrides"] = policy.overrides_json()
    set_tags(client, model_name, version, tags)

    if report.passed:
        client.set_registered_model_alias(model_name, lc.CHALLENGER, version)
    elif aliases.get(lc.CHALLENGER) == version:
        client.delete_registered_model_alias(model_name, lc.CHALLENGER)

    log.info("%s v%s validation %s: %s", model_name, version, status.value, report.summary())
    return ValidationOutcome(
        model_name=model_name,
        version=version,
        passed=report.passed,
        summary=report.summary(),
        baseline_version=report.baseline_version,
        improvement=report.improvement,
        report_path=report_path,
    )


def _loadability_check(client: MlflowClient, mv) -> Check:
    if mv.status != "READY":
        return Check("loadability", "loadability", None, None, False, f"version status is {mv.status}, not READY")
    try:
        problem = model_artifact_problem(client, mv)
    except RegistryError as exc:
        problem = str(exc)
    if problem:
        return Check("loadability", "loadability", None, None, False, problem)
    return Check("loadability", "loadability", None, None, True, "READY and the MLmodel artifact is present")


def _report_json(
    model_name: str, version: str, timestamp: str, policy: GovernancePolicy, report: GateReport
) -> str:
    document = {
        "model_name": model_name,
        "version": version,
        "validation_timestamp": timestamp,
        "policy_version": policy.policy_version,
        "policy_overrides": dict(policy.overrides),
        **report.to_dict(),
    }
    return json.dumps(document, indent=2, default=str)
