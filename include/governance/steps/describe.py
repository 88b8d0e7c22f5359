"""Describe: set a version's or a registered model's description; audited as ``described``."""

from __future__ import annotations

from datetime import datetime, timezone

from mlflow import MlflowClient

from include.governance import lifecycle as lc
from include.governance.audit import AuditContext, AuditEvent, AuditTrail, EventType, make_event
from include.governance.policy import GovernancePolicy
from include.governance.registry import require_model, require_version
from include.governance.steps.recording import record

# MLflow keeps descriptions in a 5000-character column on SQL stores.
MAX_DESCRIPTION = 5000


class DescriptionRefused(ValueError):
    """The description cannot be set as given; nothing was changed."""


def describe(
    client: MlflowClient,
    policy: GovernancePolicy | None,
    trail: AuditTrail | None,
    actor: AuditContext,
    model_name: str,
    version: str | int | None,
    *,
    text: str,
) -> str:
    """Set the description of ``model_name`` (``version`` None) or of one version; return the old one.

    :raises DescriptionRefused: empty or too long.
    :raises VersionNotFound: no such model or version.
    """
    # No threshold applies; the policy routes the described event's notification.
    text = (text or "").strip()
    where = f"{model_name} v{version}" if version is not None else f"model {model_name}"
    if not text:
        raise DescriptionRefused(f"the description of {where} must not be empty")
    if len(text) > MAX_DESCRIPTION:
        raise DescriptionRefused(f"the description of {where} is {len(text)} characters (at most {MAX_DESCRIPTION})")
    now = lc.utc_now_iso()
    if version is None:
        old = require_model(client, model_name).description or None
        client.update_registered_model(model_name, description=text)
        record(trail, _model_event(model_name, actor, text, old, now), policy=policy)
        return old
    old = require_version(client, model_name, version).description or None
    client.update_model_version(model_name, str(version), description=text)
    mv = require_version(client, model_name, version)
    record(trail, make_event(EventType.DESCRIBED, mv, actor, stamp=now, reason=text,
                             details={"previous": old}, metrics={}), policy=policy)
    return old


def _model_event(model_name: str, actor: AuditContext, text: str, old: str | None, now: str) -> AuditEvent:
    """A model-level row: version "" (it names no version) and no run."""
    return AuditEvent(
        event=EventType.DESCRIBED,
        model_name=model_name,
        version="",
        actor=actor.actor,
        occurred_at=datetime.fromisoformat(now).astimezone(timezone.utc),
        source=actor.source,
        reason=text,
        dag_id=actor.dag_id,
        dag_run_id=actor.dag_run_id,
        task_id=actor.task_id,
        details={"previous": old},
        dedup_key=f"{EventType.DESCRIBED.value}/{model_name}//{now}",
    )
