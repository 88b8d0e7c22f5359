"""Out-of-band changes: the registry compared with what the audit trail says it should be.

Replaying a model's audit events in order gives the state the project left behind: where
``@champion``, ``@challenger`` and ``@previous_champion`` point, which versions exist, and each
version's ``approval_status``, ``approved_by`` and ``validation_status``. Any difference with the
registry is a change no governed step made (an admin in the MLflow UI, a script). Each finding
says what differs, the audit event it was last right at, and the command that restores the
audited state. ``expected_state`` and ``compare`` are pure; ``verify`` does the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from include.governance import lifecycle as lc
from include.governance.audit import AuditEvent, AuditLog, EventType
from include.governance.registry import is_not_found

GOVERNED_ALIASES = (lc.CHAMPION, lc.CHALLENGER, lc.PREVIOUS_CHAMPION)
GOVERNED_TAGS = (lc.APPROVAL_STATUS, lc.APPROVED_BY, lc.VALIDATION_STATUS)
_CLI = "python -m include.governance"
_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Audited:
    """A value as the audit last set it, and the event that set it (None: never set)."""

    value: str | None
    event: AuditEvent | None


@dataclass
class ExpectedState:
    """A model as its audit events leave it."""

    aliases: dict[str, Audited] = field(default_factory=dict)
    # version -> tag -> audited value
    tags: dict[str, dict[str, Audited]] = field(default_factory=dict)
    last_event: dict[str, AuditEvent] = field(default_factory=dict)
    deleted: dict[str, AuditEvent] = field(default_factory=dict)
    run_ids: dict[str, str | None] = field(default_factory=dict)
    sources: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Drift:
    """One difference between the registry and the audit trail."""

    model_name: str
    kind: str  # alias_moved, version_deleted, tag_changed, deletion_incomplete
    subject: str  # "@champion", "v7", "v7 approval_status"
    expected: str | None
    actual: str | None
    last_right_at: datetime | None
    last_event: str | None
    restore: str

    def describe(self) -> str:
        return f"{self.model_name} {self.subject}: audited {self.expected or 'unset'}, registry {self.actual or 'unset'}"

    def as_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "kind": self.kind,
            "subject": self.subject,
            "expected": self.expected,
            "actual": self.actual,
            "last_right_at": self.last_right_at.isoformat(timespec="seconds") if self.last_right_at else None,
            "last_event": self.last_event,
            "restore": self.restore,
        }


def expected_state(events: Iterable[AuditEvent]) -> ExpectedState:
    """Replay a model's events (oldest first) into the state they leave behind."""
    state = ExpectedState()
    for event in events:
        version = str(event.version)
        if not version:
            continue  # a model-level event (a description) names no version
        state.last_event[version] = event
        state.run_ids.setdefault(version, event.run_id)
        if event.event is EventType.REGISTERED:
            state.sources[version] = event.details.get("source")
            # Audited from birth: a governance tag no later event set must be absent.
            state.tags[version] = {tag: Audited(None, event) for tag in GOVERNED_TAGS}
        _apply_aliases(state, event, version)
        for tag, value in _tag_changes(event).items():
            state.tags.setdefault(version, {})[tag] = Audited(value, event)
        if event.event is EventType.DELETED:
            state.deleted[version] = event
    return state


def _apply_aliases(state: ExpectedState, event: AuditEvent, version: str) -> None:
    challenger = state.aliases.get(lc.CHALLENGER)
    if event.event is EventType.VALIDATED and event.to_alias != lc.CHALLENGER:
        if challenger and challenger.value == version:
            state.aliases[lc.CHALLENGER] = Audited(None, event)  # a failed validation drops it
        return
    if event.event is EventType.PROMOTED and challenger and challenger.value == version:
        state.aliases[lc.CHALLENGER] = Audited(None, event)
    if event.to_alias in GOVERNED_ALIASES:
        state.aliases[event.to_alias] = Audited(version, event)


def _tag_changes(event: AuditEvent) -> dict[str, str | None]:
    """The governance tags an event's step wrote on its version."""
    kind, details = event.event, event.details
    if kind is EventType.VALIDATED:
        return {lc.VALIDATION_STATUS: details.get("status")}
    if kind is EventType.APPROVAL_REQUESTED:
        return {lc.APPROVAL_STATUS: details.get("status")}
    if kind in (EventType.APPROVED, EventType.REJECTED):
        status = lc.ApprovalStatus.APPROVED if kind is EventType.APPROVED else lc.ApprovalStatus.REJECTED
        person = None if event.actor == "policy" else event.actor
        return {lc.APPROVAL_STATUS: status.value, lc.APPROVED_BY: person}
    if kind is EventType.EXPIRED:
        return {lc.APPROVAL_STATUS: lc.ApprovalStatus.EXPIRED.value}
    return {}


def compare(
    model_name: str,
    state: ExpectedState,
    aliases: Mapping[str, str],
    versions: Mapping[str, Mapping[str, str]],
) -> list[Drift]:
    """Every difference between the audited state and the registry's.

    :param aliases: the model's aliases now (``{alias: version}``).
    :param versions: every version that exists now, with its tags.
    """
    found = [_alias_drift(model_name, alias, audited, aliases.get(alias)) for alias, audited in state.aliases.items()]
    for version in sorted(state.last_event, key=int):
        if version in state.deleted:
            if version in versions:
                found.append(_incomplete_deletion(model_name, version, state.deleted[version]))
            continue
        if version not in versions:
            found.append(_deleted_drift(model_name, version, state))
            continue
        for tag, audited in state.tags.get(version, {}).items():
            found.append(_tag_drift(model_name, version, tag, audited, versions[version].get(tag)))
    return [drift for drift in found if drift is not None]


def _alias_drift(model_name: str, alias: str, audited: Audited, actual: str | None) -> Drift | None:
    if audited.value == actual:
        return None
    if audited.value is None:
        restore = f"MlflowClient().delete_registered_model_alias('{model_name}', '{alias}')"
    else:
        restore = f"MlflowClient().set_registered_model_alias('{model_name}', '{alias}', '{audited.value}')"
    if alias == lc.CHAMPION and audited.value and actual:
        restore += (f"  (or, audited: {_CLI} rollback {model_name} --to {audited.value} "
                    f"--actor YOU --reason 'restore the audited champion')")
    return Drift(model_name, "alias_moved", f"@{alias}", audited.value, actual, _at(audited.event),
                 _label(audited.event), restore)


def _deleted_drift(model_name: str, version: str, state: ExpectedState) -> Drift:
    last = state.last_event[version]
    run_id = state.run_ids.get(version)
    source = state.sources.get(version) or f"runs:/{run_id}/{lc.MODEL_ARTIFACT_NAME}"
    restore = (f"MlflowClient().create_model_version('{model_name}', '{source}', run_id='{run_id}') "
               "(re-registers the run's model under a new version number)")
    return Drift(model_name, "version_deleted", f"v{version}", "exists", None, _at(last), _label(last), restore)


def _incomplete_deletion(model_name: str, version: str, event: AuditEvent) -> Drift:
    restore = f"{_CLI} delete {model_name} {version} --actor YOU --reason '{event.reason}'"
    return Drift(model_name, "deletion_incomplete", f"v{version}", "deleted", "exists", _at(event), _label(event), restore)


def _tag_drift(model_name: str, version: str, tag: str, audited: Audited, actual: str | None) -> Drift | None:
    seen = actual.strip().lower() if actual is not None and tag != lc.APPROVED_BY else actual
    if seen == audited.value:
        return None
    if audited.value is None:
        restore = f"MlflowClient().delete_model_version_tag('{model_name}', '{version}', '{tag}')"
    else:
        restore = f"MlflowClient().set_model_version_tag('{model_name}', '{version}', '{tag}', '{audited.value}')"
    return Drift(model_name, "tag_changed", f"v{version} {tag}", audited.value, actual, _at(audited.event),
                 _label(audited.event), restore)


def _at(event: AuditEvent | None) -> datetime | None:
    return event.occurred_at if event else None


def _label(event: AuditEvent | None) -> str | None:
    return f"#{event.id} {event.event.value} v{event.version} by {event.actor}" if event else None


def verify(client: MlflowClient, log: AuditLog, model_name: str | None = None) -> list[Drift]:
    """Drift of one model, or of every model the audit trail knows, oldest model name first."""
    events = log.events(model_name=model_name)
    by_model: dict[str, list[AuditEvent]] = {}
    for event in events:
        by_model.setdefault(event.model_name, []).append(event)
    found: list[Drift] = []
    for name in sorted(by_model):
        aliases, versions = _registry_state(client, name)
        found += compare(name, expected_state(by_model[name]), aliases, versions)
    return found


def _registry_state(client: MlflowClient, model_name: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The model's aliases and every version's tags (nothing when the model is gone)."""
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if is_not_found(exc):
            return {}, {}
        raise
    versions, token = {}, None
    while True:
        page = client.search_model_versions(
            filter_string=f"name = '{model_name}'", max_results=_PAGE_SIZE, page_token=token
        )
        versions.update({str(mv.version): dict(mv.tags or {}) for mv in page})
        token = page.token
        if not token:
            break
    return {alias: str(v) for alias, v in (model.aliases or {}).items()}, versions
