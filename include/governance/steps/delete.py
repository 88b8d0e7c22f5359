"""Delete: a model version removed from the registry under guard, its evidence kept in the audit.

Never a version that holds ``@champion``, ``@challenger`` or ``@previous_champion`` (move the
alias first: promote, roll back); never a version awaiting a decision (``pending``,
``needs_review``, or an unreadable status) unless an approver forces it with a reason. The
``deleted`` row is written before the version goes, because afterwards its tags, source and run
are no longer in the registry to record; it is keyed by the version's creation, so a retry after
a failed delete writes no second row and then deletes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditTrail, EventType, make_event
from include.governance.policy import GovernancePolicy
from include.governance.registry import get_aliases, is_not_found, require_version
from include.governance.steps.recording import record
from include.governance.steps.review import policy_of_run

PROTECTED_ALIASES = (lc.CHAMPION, lc.CHALLENGER, lc.PREVIOUS_CHAMPION)


class DeleteRefused(RuntimeError):
    """The version may not be deleted; nothing was changed. ``rule`` names the rule."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class DeletedVersion:
    model_name: str
    version: str
    run_id: str | None
    source: str | None
    forced: bool

    def as_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "forced": self.forced,
        }


def delete_problem(
    tags: dict[str, str], aliases: dict[str, str], model_name: str, version: str, policy: GovernancePolicy,
    actor: str, force: bool,
) -> tuple[str, str] | None:
    """``(rule, message)`` saying why the version must stay, or None. Reads only the state given."""
    where = f"{model_name} v{version}"
    held = [alias for alias in PROTECTED_ALIASES if aliases.get(alias) == version]
    if held:
        return "alias", (
            f"{where} is @{', @'.join(held)}; a version holding a governance alias is never deleted "
            "(move the alias first: promote another version or roll back)"
        )
    raw = tags.get(lc.APPROVAL_STATUS)
    try:
        status = lc.ApprovalStatus.parse(raw, where=where)
        awaiting = status in lc.AWAITING_DECISION
    except ValueError:
        awaiting = True  # an unreadable status may block a waiting run: treat as awaiting
    if not awaiting:
        return None
    if not force:
        return "awaiting_decision", (
            f"{where} awaits a decision ({lc.APPROVAL_STATUS}={raw!r}); only an approver may delete it, "
            "with --force and a reason"
        )
    approvers = policy.approval.approvers
    if approvers and actor not in approvers:
        return "approver", (
            f"{where} awaits a decision and {actor} is not an allowed approver ({', '.join(approvers)}), "
            "so may not force its deletion"
        )
    return None


def delete_version(
    client: MlflowClient,
    policy: GovernancePolicy,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int,
    *,
    reason: str,
    force: bool = False,
) -> DeletedVersion:
    """Delete the version when every rule allows it; ``deleted`` (with its evidence) is audited.

    :param reason: why; required.
    :param force: an approver's override for a version awaiting a decision (never for aliases).
    :raises DeleteRefused: no reason, a governance alias, or awaiting a decision unforced.
    :raises VersionNotFound: the version does not exist.
    """
    version = str(version)
    where = f"{model_name} v{version}"
    if not reason or not reason.strip():
        raise DeleteRefused(f"deleting {where} needs a reason", "reason")
    mv = require_version(client, model_name, version)
    run_policy = policy_of_run(policy, mv.tags)
    problem = delete_problem(mv.tags, get_aliases(client, model_name), model_name, version, run_policy, actor.actor, force)
    if problem:
        raise DeleteRefused(problem[1], problem[0])
    forced = force and _awaiting(mv.tags)
    record(trail, _deleted_event(client, mv, actor, reason.strip(), forced), policy=policy)
    try:
        client.delete_model_version(model_name, version)
    except MlflowException as exc:
        if not is_not_found(exc):  # gone meanwhile (a concurrent retry): the goal is reached
            raise
    return DeletedVersion(model_name, version, mv.run_id, mv.source, forced)


def _awaiting(tags: dict[str, str]) -> bool:
    try:
        return lc.ApprovalStatus.parse(tags.get(lc.APPROVAL_STATUS), where="version") in lc.AWAITING_DECISION
    except ValueError:
        return True


def _deleted_event(client: MlflowClient, mv, actor: AuditContext, reason: str, forced: bool):
    """The ``deleted`` row: who, why, and everything the registry knew of the version."""
    run_metrics = {}
    if mv.run_id:
        try:
            run_metrics = dict(client.get_run(mv.run_id).data.metrics)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise
    return make_event(
        EventType.DELETED,
        mv,
        actor,
        stamp=f"created-{mv.creation_timestamp}",
        reason=reason,
        details={
            "tags": dict(mv.tags),
            "run_metrics": run_metrics,
            "source": mv.source,
            "run_id": mv.run_id,
            "description": mv.description or None,
            "created_at_ms": mv.creation_timestamp,
            "forced": forced,
        },
    )
