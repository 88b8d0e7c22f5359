"""The seed design guide's registry reads, reimplemented as the baseline for bench/registry_scale.py.

Reproduces the call pattern of the seed's ``ModelApprovalWorkflow.get_pending_approvals``,
``ModelRegistryManager.get_latest_model_version`` and ``ModelValidator._compare_with_baseline``
through ``MlflowClient``. Differences from the seed, each stated where it is made:

- stages -> aliases: the seed reads ``version.current_stage``; here ``version.aliases`` (what the
  same search returns; no extra call). The seed's champion is "latest version in stage
  Production"; ``find_champion_scan`` finds ``@champion`` by the seed's own version listing
  (``get_model_versions``: every version of the model, newest first) and then reads versions one
  by one until the one holding the alias, because a search does not return aliases on a SQL
  store. ``find_champion_by_stage`` is the seed's literal call (``get_latest_versions``), for
  registries that also record the deprecated stage.
- ``search_registered_models`` is paged to the end (the seed takes only its first page of 100,
  which would silently miss models beyond it).
- errors propagate instead of being logged and turned into empty results.
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

CHAMPION_ALIAS = "champion"
SEED_MAX_DEGRADATION = 0.05  # the seed's "improvement < -0.05 fails"


def all_registered_models(client: MlflowClient) -> list:
    """Every registered model, paged with the client's default page size (100), as the seed lists them."""
    models, token = [], None
    while True:
        page = client.search_registered_models(page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return models


def seed_pending_approvals(client: MlflowClient) -> list[dict[str, Any]]:
    """The seed's get_pending_approvals: every model, every version, status read from its tags."""
    pending = []
    for model in all_registered_models(client):
        versions = client.search_model_versions(filter_string=f"name='{model.name}'")
        for version in versions:
            status = version.tags.get("approval_status", "unknown")
            if status in ["pending", "needs_review"]:
                pending.append({
                    "model_name": model.name,
                    "version": version.version,
                    "status": status,
                    "submission_time": version.tags.get("approval_timestamp", "unknown"),
                    "aliases": list(version.aliases),  # the seed: "current_stage"
                })
    return pending


def seed_model_versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """The seed's ModelRegistryManager.get_model_versions: all versions, newest first."""
    versions = client.search_model_versions(filter_string=f"name='{model_name}'")
    versions.sort(key=lambda mv: int(mv.version), reverse=True)
    return versions


def find_champion_scan(client: MlflowClient, model_name: str) -> tuple[ModelVersion | None, int]:
    """The champion by the seed's scan (aliases for the Production stage).

    :return: the version holding @champion (None when none does) and how many versions were read
        one by one before it was found.
    """
    read = 0
    for listed in seed_model_versions(client, model_name):
        version = client.get_model_version(model_name, listed.version)
        read += 1
        if CHAMPION_ALIAS in version.aliases:
            return version, read
    return None, read


def find_champion_by_stage(client: MlflowClient, model_name: str) -> ModelVersion | None:
    """The seed's literal get_latest_model_version(name, "Production") (stages are deprecated)."""
    found = client.get_latest_versions(name=model_name, stages=["Production"])
    return found[0] if found else None


def seed_validate_against_champion(client: MlflowClient, model_name: str, version: str) -> dict[str, Any]:
    """The seed's champion lookup and comparison in validate_model_version/_compare_with_baseline.

    Only the registry side: the candidate's run, the champion (scan), its run, the accuracy
    comparison. The seed's metric gates run on data already fetched and cost nothing here.
    """
    candidate = client.get_model_version(model_name, version)
    metrics = client.get_run(candidate.run_id).data.metrics
    champion, _ = find_champion_scan(client, model_name)
    if champion is None:
        return {"passed": True, "baseline": None}
    baseline = client.get_run(champion.run_id).data.metrics
    improvement = metrics["accuracy"] - baseline["accuracy"]
    return {"passed": improvement >= -SEED_MAX_DEGRADATION, "baseline": champion.version, "improvement": improvement}
