"""Rollback: move ``@champion`` back to a version that once served, and nothing else.

A version qualifies when it passed validation, was approved, and had been champion before
(it carries ``promotion_timestamp``), and its model artifact is still there. The champion it
replaces becomes ``@previous_champion``, so a rollback can itself be undone the same way.

A rollback is planned (target and current champion resolved) and then executed against that
plan: a retried execution finds the move already made and changes nothing, instead of
resolving ``@previous_champion`` again, which by then points at the version rolled back from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditEvent, EventType, make_event
from include.governance.lifecycle import ApprovalStatus
from include.governance.registry import (
    get_aliases,
    model_artifact_problem,
    read_back_alias,
    require_model,
    require_version,
    set_alias,
    set_tags,
)

log = logging.getLogger(__name__)

# Tags a rollback writes on the version it restores (the names live in the lifecycle contract).
ROLLBACK_TIMESTAMP = lc.ROLLBACK_TIMESTAMP
ROLLED_BACK_FROM = lc.ROLLED_BACK_FROM_VERSION
ROLLED_BACK_BY = lc.ROLLED_BACK_BY
ROLLBACK_REASON = lc.ROLLBACK_REASON


class RollbackRefused(RuntimeError):
    """The rollback may not happen; ``@champion`` was not touched. The message says why."""


@dataclass(frozen=True)
class RollbackPlan:
    model_name: str
    target: str
    current_champion: str
    # The alias the target held when planned (``previous_champion``), if any.
    from_alias: str | None = None

    def as_xcom(self) -> dict:
        return {
            "model_name": self.model_name,
            "target": self.target,
            "current_champion": self.current_champion,
            "from_alias": self.from_alias,
        }


@dataclass(frozen=True)
class RollbackResult:
    model_name: str
    champion: str
    rolled_back_from: str
    changed: bool
    rolled_back_at: str
    from_alias: str | None = None

    def as_xcom(self) -> dict:
        return {
            "model_name": self.model_name,
            "champion_version": self.champion,
            "rolled_back_from": self.rolled_back_from,
            "changed": self.changed,
        }


def eligibility_problem(mv) -> str | None:
    """Why a version may not serve again, from its tags alone, or None."""
    tags = mv.tags
    where = f"{mv.name} v{mv.version}"
    if tags.get(lc.VALIDATION_STATUS) != lc.ValidationStatus.PASSED.value:
        return f"{where} never passed validation ({lc.VALIDATION_STATUS}={tags.get(lc.VALIDATION_STATUS)!r})"
    status = tags.get(lc.APPROVAL_STATUS)
    try:
        approved = ApprovalStatus.parse(status, where=where) is ApprovalStatus.APPROVED
    except ValueError as exc:
        return str(exc)
    if not approved:
        return f"{where} was never approved ({lc.APPROVAL_STATUS}={status!r})"
    if not tags.get(lc.PROMOTION_TIMESTAMP):
        return f"{where} has never been {lc.CHAMPION} (no {lc.PROMOTION_TIMESTAMP} tag)"
    return None


def plan_rollback(client: MlflowClient, model_name: str, to_version: str | int | None = None) -> RollbackPlan:
    """Resolve and check a rollback without changing anything.

    :param to_version: the version to restore; ``@previous_champion`` when None.
    :raises VersionNotFound: the model or the target version does not exist.
    :raises RollbackRefused: no champion, no target, or the target does not qualify.
    """
    model = require_model(client, model_name)
    aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
    current = aliases.get(lc.CHAMPION)
    if to_version is None or to_version == "":
        target = aliases.get(lc.PREVIOUS_CHAMPION)
        if target is None:
            raise RollbackRefused(
                f"{model_name} has no @{lc.PREVIOUS_CHAMPION} to roll back to; name a version to restore"
            )
    else:
        target = str(to_version)
    mv = require_version(client, model_name, target)
    if current is None:
        raise RollbackRefused(f"{model_name} has no @{lc.CHAMPION}: there is nothing to roll back")
    if current == target:
        raise RollbackRefused(f"{model_name} v{target} is already @{lc.CHAMPION}")
    problem = eligibility_problem(mv)
    if problem:
        raise RollbackRefused(f"{problem}; only a version that passed validation and approval and served before can be restored")
    problem = model_artifact_problem(client, mv)
    if problem:
        raise RollbackRefused(problem)
    from_alias = lc.PREVIOUS_CHAMPION if aliases.get(lc.PREVIOUS_CHAMPION) == target else None
    return RollbackPlan(model_name, target, current, from_alias)


def execute_rollback(
    client: MlflowClient,
    plan: RollbackPlan,
    *,
    actor: str,
    reason: str,
) -> RollbackResult:
    """Carry out a planned rollback and read the alias back.

    Idempotent: when the champion is already the target and the target records a rollback from
    the planned champion, nothing changes (a retry after the move).

    :param actor: who rolls back (recorded on the version and in the audit trail).
    :param reason: why (required: an operator's rollback is always explained).
    :raises RollbackRefused: the champion moved since the plan, or actor/reason missing.
    """
    if not actor or not actor.strip():
        raise RollbackRefused("a rollback needs an actor (who rolls back)")
    if not reason or not reason.strip():
        raise RollbackRefused("a rollback needs a reason")
    model_name, target, planned = plan.model_name, plan.target, plan.current_champion
    mv = require_version(client, model_name, target)
    current = get_aliases(client, model_name).get(lc.CHAMPION)
    if current == target and mv.tags.get(ROLLED_BACK_FROM) == planned:
        log.info("%s v%s is already @%s (rolled back from v%s); nothing to change", model_name, target, lc.CHAMPION, planned)
        return RollbackResult(
            model_name, target, planned, changed=False,
            rolled_back_at=mv.tags.get(ROLLBACK_TIMESTAMP, ""), from_alias=plan.from_alias,
        )
    if current != planned:
        raise RollbackRefused(
            f"@{lc.CHAMPION} of {model_name} is v{current or 'unset'}, not v{planned} as when the rollback "
            "was planned; plan it again"
        )
    problem = eligibility_problem(mv)
    if problem:
        raise RollbackRefused(problem)

    now = _move_champion(client, model_name, target, planned, actor=actor, reason=reason)
    log.info("%s rolled back from v%s to v%s by %s: %s", model_name, planned, target, actor, reason)
    return RollbackResult(model_name, target, planned, changed=True, rolled_back_at=now, from_alias=plan.from_alias)


def _move_champion(client: MlflowClient, model_name: str, target: str, planned: str, *, actor: str, reason: str) -> str:
    """The rollback's writes: both aliases, both versions' tags, then the read-back; its instant."""
    now = lc.utc_now_iso()
    set_alias(client, model_name, lc.CHAMPION, target)
    set_alias(client, model_name, lc.PREVIOUS_CHAMPION, planned)
    set_tags(client, model_name, planned, {lc.ARCHIVED_TIMESTAMP: now})
    set_tags(
        client,
        model_name,
        target,
        {ROLLBACK_TIMESTAMP: now, ROLLED_BACK_FROM: planned, ROLLED_BACK_BY: actor, ROLLBACK_REASON: reason[:4000]},
    )
    read_back_alias(client, model_name, lc.CHAMPION, target)
    return now


def rollback(
    client: MlflowClient,
    model_name: str,
    to_version: str | int | None = None,
    *,
    actor: str,
    reason: str,
) -> RollbackResult:
    """Plan and execute a rollback in one go (the CLI's path).

    :param to_version: the version to restore; ``@previous_champion`` when None.
    :param actor: who rolls back.
    :param reason: why.
    """
    return execute_rollback(client, plan_rollback(client, model_name, to_version), actor=actor, reason=reason)


def rollback_events(client: MlflowClient, result: RollbackResult, context: AuditContext) -> list[AuditEvent]:
    """``rolled_back`` for the restored champion and ``archived`` for the one it replaced.

    :param context: who and where; the actor is the one recorded on the version.
    """
    restored = require_version(client, result.model_name, result.champion)
    replaced = require_version(client, result.model_name, result.rolled_back_from)
    actor = restored.tags.get(ROLLED_BACK_BY) or context.actor
    reason = restored.tags.get(ROLLBACK_REASON)
    stamp = result.rolled_back_at or restored.tags.get(ROLLBACK_TIMESTAMP)
    return [
        make_event(
            EventType.ROLLED_BACK,
            restored,
            context,
            stamp=stamp,
            actor=actor,
            reason=reason,
            from_alias=result.from_alias,
            to_alias=lc.CHAMPION,
            counterpart_version=str(replaced.version),
            details={"first_promoted_at": restored.tags.get(lc.PROMOTION_TIMESTAMP)},
        ),
        make_event(
            EventType.ARCHIVED,
            replaced,
            context,
            stamp=stamp,
            actor=actor,
            reason=f"Rolled back to v{restored.version}: {reason}",
            from_alias=lc.CHAMPION,
            to_alias=lc.PREVIOUS_CHAMPION,
            counterpart_version=str(restored.version),
        ),
    ]

