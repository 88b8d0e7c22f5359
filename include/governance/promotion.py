"""Promotion: move ``@champion`` to an approved, validated challenger, and nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.approval import read_record, reviewer_problem
from include.governance.canary import canary_evidence_problem, canary_required
from include.governance.candidate import staleness_problem
from include.governance.lifecycle import ApprovalStatus
from include.governance.policy import ApprovalPolicy
from include.governance.registry import get_aliases, read_back_alias, require_version, set_alias, set_tags

log = logging.getLogger(__name__)


class PromotionRefused(RuntimeError):
    """The version may not become champion; the champion was not touched."""


@dataclass(frozen=True)
class PromotionResult:
    model_name: str
    version: str
    previous_champion: str | None
    changed: bool
    # The promotion's instant (the version's promotion_timestamp tag), also when nothing changed.
    promoted_at: str | None = None

    def as_xcom(self) -> dict:
        return {
            "model_name": self.model_name,
            "champion_version": self.version,
            "previous_champion_version": self.previous_champion,
            "changed": self.changed,
        }


def promotion_problem(tags: dict[str, str], aliases: dict[str, str], version: str, policy: ApprovalPolicy, where: str) -> str | None:
    """Why ``version`` may not be promoted now, or None. Reads only the registry's state."""
    if tags.get(lc.VALIDATION_STATUS) != lc.ValidationStatus.PASSED.value:
        return f"{where} is not validated ({lc.VALIDATION_STATUS}={tags.get(lc.VALIDATION_STATUS)!r})"
    try:
        record = read_record(tags, where=where)
    except ValueError as exc:
        # An unknown approval_status is no approval: refused (not retried) with the bad value.
        return str(exc)
    if record.status is not ApprovalStatus.APPROVED:
        status = record.status.value if record.status else None
        return f"{where} is not approved ({lc.APPROVAL_STATUS}={status!r})"
    problem = reviewer_problem(record, policy)
    if problem:
        return f"{where}: {problem}"
    if aliases.get(lc.CHAMPION) == version:
        return None
    problem = staleness_problem(tags, aliases, version)
    if problem is None and canary_required(policy, aliases, version):
        # Also for an approval recorded before the rule was switched on.
        problem = canary_evidence_problem(tags, policy)
    return f"{where}: {problem}" if problem else None


def promote(client: MlflowClient, model_name: str, version: str | int, policy: ApprovalPolicy) -> PromotionResult:
    """Make an approved challenger the champion, keeping the old one as ``@previous_champion``.

    Idempotent: promoting the current champion again changes nothing and confirms it.

    :raises PromotionRefused: not validated, not approved, approver not allowed, stale, or (when
        the policy requires it) without canary evidence.
    :raises ReadBackError: the alias did not read back as expected.
    """
    version = str(version)
    where = f"{model_name} v{version}"
    mv = require_version(client, model_name, version)
    aliases = get_aliases(client, model_name)
    problem = promotion_problem(mv.tags, aliases, version, policy, where)
    if problem:
        raise PromotionRefused(problem)

    old = aliases.get(lc.CHAMPION)
    if old == version and (aliases.get(lc.CHALLENGER) == version or lc.PROMOTION_TIMESTAMP not in mv.tags):
        # A try that failed after moving @champion (it still holds @challenger, or has no
        # promotion tags): finish that promotion. It set @previous_champion before the move.
        log.warning("%s is @%s but its promotion did not finish; completing it", where, lc.CHAMPION)
        return _finish_promotion(client, model_name, version, mv.tags, aliases.get(lc.PREVIOUS_CHAMPION))
    if old == version:
        log.info("%s is already @%s; nothing to change", where, lc.CHAMPION)
        _read_back(client, model_name, version)
        previous = mv.tags.get(lc.PREVIOUS_CHAMPION_VERSION)
        return PromotionResult(
            model_name,
            version,
            None if previous == lc.NO_BASELINE else previous,
            changed=False,
            promoted_at=mv.tags.get(lc.PROMOTION_TIMESTAMP),
        )

    now = lc.utc_now_iso()
    if old is not None:
        set_alias(client, model_name, lc.PREVIOUS_CHAMPION, old)
        set_tags(client, model_name, old, {lc.ARCHIVED_TIMESTAMP: now})
    set_alias(client, model_name, lc.CHAMPION, version)
    return _finish_promotion(client, model_name, version, mv.tags, old, now)


def _finish_promotion(
    client: MlflowClient, model_name: str, version: str, tags: dict[str, str], old: str | None, now: str | None = None
) -> PromotionResult:
    """The writes after @champion moved: promotion tags, @challenger removed, the read-back."""
    now = now or lc.utc_now_iso()
    set_tags(
        client,
        model_name,
        version,
        {
            lc.PROMOTION_TIMESTAMP: now,
            lc.PREVIOUS_CHAMPION_VERSION: old or lc.NO_BASELINE,
            lc.AUTO_PROMOTED: "false" if tags.get(lc.APPROVED_BY) else "true",
        },
    )
    if get_aliases(client, model_name).get(lc.CHALLENGER) == version:
        client.delete_registered_model_alias(model_name, lc.CHALLENGER)
    _read_back(client, model_name, version)
    log.info("%s v%s is now @%s (previous: %s)", model_name, version, lc.CHAMPION, old or "none")
    return PromotionResult(model_name, version, old, changed=True, promoted_at=now)


def _read_back(client: MlflowClient, model_name: str, version: str) -> None:
    read_back_alias(client, model_name, lc.CHAMPION, version)
