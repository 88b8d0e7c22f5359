"""Retention: keep the last N archived versions of a model, delete older ones through the guard.

Archived means the version carries ``archived_timestamp`` (a champion that was replaced) and no
governance alias now: ``@previous_champion`` and a champion restored by a rollback keep their
tag but serve or may serve again, so they are protected, listed and never counted. The rest are
ordered by when they were archived, newest first; the first ``keep`` stay, the others go one by
one through ``steps.delete_version`` (never forced), so every deletion is audited with its
evidence and a version the guard refuses is reported, not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditTrail
from include.governance.names import check_model_name
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases
from include.governance.steps.delete import PROTECTED_ALIASES, DeleteRefused, delete_version

_PAGE_SIZE = 1000


@dataclass(frozen=True)
class RetentionPlan:
    """Which archived versions stay and which go (versions as strings, newest archived first)."""

    model_name: str
    keep: int
    kept: list[str]
    to_delete: list[str]
    protected: list[str]

    def as_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "keep": self.keep,
            "kept": self.kept,
            "to_delete": self.to_delete,
            "protected": self.protected,
        }


@dataclass(frozen=True)
class RetentionResult:
    plan: RetentionPlan
    deleted: list[str] = field(default_factory=list)
    # version -> the guard's message, for versions it refused.
    refused: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**self.plan.as_dict(), "deleted": self.deleted, "refused": self.refused}


def plan_retention(client: MlflowClient, model_name: str, keep: int) -> RetentionPlan:
    """Read the archived versions (one paged search) and split them; changes nothing.

    :raises ValueError: ``keep`` is negative or the model name is invalid.
    """
    check_model_name(model_name)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep={keep!r}: the number of archived versions to keep must be an integer >= 0")
    archived = _archived_versions(client, model_name)
    aliased = {str(v) for alias, v in get_aliases(client, model_name).items() if alias in PROTECTED_ALIASES}
    protected = [version for version, _ in archived if version in aliased]
    candidates = [version for version, _ in archived if version not in aliased]
    return RetentionPlan(model_name, keep, candidates[:keep], candidates[keep:], protected)


def _archived_versions(client: MlflowClient, model_name: str) -> list[tuple[str, str]]:
    """``(version, archived_timestamp)`` of every archived version, newest archived first."""
    query = f"name = '{model_name}' AND tags.{lc.ARCHIVED_TIMESTAMP} LIKE '%'"
    found, token = [], None
    while True:
        page = client.search_model_versions(
            filter_string=query, max_results=_PAGE_SIZE, order_by=["version_number DESC"], page_token=token
        )
        found += [(str(mv.version), mv.tags.get(lc.ARCHIVED_TIMESTAMP, "")) for mv in page]
        token = page.token
        if not token:
            break
    # ISO 8601 UTC stamps sort as text; the version breaks ties (same promotion instant).
    return sorted(found, key=lambda item: (item[1], int(item[0])), reverse=True)


def apply_retention(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    plan: RetentionPlan,
) -> RetentionResult:
    """Delete the plan's ``to_delete`` versions through the guarded delete step."""
    reason = f"retention: keep the last {plan.keep} archived versions of {plan.model_name}"
    deleted, refused = [], {}
    for version in plan.to_delete:
        try:
            delete_version(client, policy, trail, actor, plan.model_name, version, reason=reason)
        except DeleteRefused as exc:
            refused[version] = str(exc)
            continue
        deleted.append(version)
    return RetentionResult(plan, deleted, refused)
