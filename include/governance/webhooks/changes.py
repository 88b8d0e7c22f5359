"""What an MLflow webhook delivery says changed in the registry.

The body is MLflow 3's envelope (``mlflow.webhooks.delivery``): ``{"entity", "action",
"timestamp", "data"}``, where ``data`` is the event's payload (``mlflow.webhooks.types``):

- ``model_version.created``: name, version, source, run_id, tags, description;
- ``model_version_tag.set``: name, version, key, value; ``.deleted``: name, version, key;
- ``model_version_alias.created``: name, alias, version; ``.deleted``: name, alias (no version).

Other events (prompts, registered models) are kept as received but change nothing here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VERSION_CREATED = "model_version.created"
TAG_SET = "model_version_tag.set"
TAG_DELETED = "model_version_tag.deleted"
ALIAS_CREATED = "model_version_alias.created"
ALIAS_DELETED = "model_version_alias.deleted"
# The events mlflow-init subscribes the project's webhook to.
SUBSCRIBED_EVENTS = (VERSION_CREATED, TAG_SET, TAG_DELETED, ALIAS_CREATED, ALIAS_DELETED)
_REQUIRED = {
    VERSION_CREATED: ("name", "version"),
    TAG_SET: ("name", "version", "key"),
    TAG_DELETED: ("name", "version", "key"),
    ALIAS_CREATED: ("name", "alias", "version"),
    ALIAS_DELETED: ("name", "alias"),
}


class InvalidPayload(ValueError):
    """The body is not an MLflow webhook payload; the message says what is missing."""


@dataclass(frozen=True)
class RegistryChange:
    """One change a delivery reports.

    :param event: ``<entity>.<action>``, e.g. ``model_version_alias.created``.
    :param model_name: the registered model (None for events about something else).
    :param version: the version (None where the event names none: an alias deleted).
    :param alias: the alias created or deleted.
    :param key: the tag set or deleted.
    :param value: the tag's new value (a tag set).
    :param tags: the tags a version was created with.
    """

    event: str
    model_name: str | None = None
    version: str | None = None
    alias: str | None = None
    key: str | None = None
    value: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        what = {
            VERSION_CREATED: f"v{self.version} created",
            TAG_SET: f"v{self.version} tag {self.key}={self.value!r} set",
            TAG_DELETED: f"v{self.version} tag {self.key} deleted",
            ALIAS_CREATED: f"@{self.alias} set to v{self.version}",
            ALIAS_DELETED: f"@{self.alias} deleted",
        }.get(self.event, self.event)
        return f"{self.model_name} {what}" if self.model_name else what


def parse_body(body: bytes) -> tuple[RegistryChange, dict[str, Any]]:
    """The change a delivery reports and the decoded body; raise ``InvalidPayload`` when malformed."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayload(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidPayload("the body is not a JSON object")
    entity, action, data = document.get("entity"), document.get("action"), document.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not isinstance(data, dict):
        raise InvalidPayload("the body lacks the envelope's 'entity', 'action' (strings) and 'data' (an object)")
    event = f"{entity}.{action}"
    if event not in _REQUIRED:
        return RegistryChange(event=event), document
    missing = [name for name in _REQUIRED[event] if not isinstance(data.get(name), (str, int)) or str(data[name]) == ""]
    if missing:
        raise InvalidPayload(f"{event}: data lacks {', '.join(missing)}")
    tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
    change = RegistryChange(
        event=event,
        model_name=str(data["name"]),
        version=str(data["version"]) if data.get("version") not in (None, "") else None,
        alias=data.get("alias"),
        key=data.get("key"),
        value=None if data.get("value") is None else str(data["value"]),
        tags={str(k): str(v) for k, v in tags.items()},
    )
    return change, document
