"""Which registry changes are governance decisions, reserved for approvers.

MLflow's permissions are per registered model (READ, EDIT, MANAGE), and EDIT, which a training
account needs to register versions, also allows setting any tag and moving any alias. These
rules name the changes that EDIT must not be enough for: the approval record, the validation
verdict the policy's auto-approval trusts, the promotion record, and the aliases that say what
serves. The names mirror include/governance/lifecycle.py (a test keeps them in step); this
package runs inside the MLflow image, where the project's code is not installed.

Settings (all optional) come from the ``[governance]`` section of the basic-auth ini file
(``MLFLOW_AUTH_CONFIG_PATH``)::

    [governance]
    protected_tags = approval_status, approved_by, ...
    protected_tag_prefixes = validation_, serving_
    protected_aliases = champion, previous_champion, challenger
    model_creator_permission = EDIT
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SECTION = "governance"

DEFAULT_PROTECTED_TAGS = frozenset(
    {
        # approval record
        "approval_status",
        "approval_reason",
        "approval_timestamp",
        "approved_by",
        "approval_notes",
        "manual_approval_timestamp",
        # promotion record
        "auto_promoted",
        "promotion_timestamp",
        "previous_champion_version",
        "archived_timestamp",
    }
)
# The validation verdict and its evidence (validation_status, validation_accuracy, ...): the
# policy auto-approves on them, so forging them would be approving.
# serving_: the canary evidence a promotion may require (policy require_canary_evidence).
DEFAULT_PROTECTED_TAG_PREFIXES = ("validation_", "serving_")
DEFAULT_PROTECTED_ALIASES = frozenset({"champion", "previous_champion", "challenger"})
# MLflow makes whoever creates a registered model its MANAGE holder; that would let a training
# account approve the models it creates, so a non-admin creator keeps this permission instead.
DEFAULT_MODEL_CREATOR_PERMISSION = "EDIT"
_PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE")


class GovernanceConfigError(ValueError):
    """A [governance] setting is invalid; the message names it."""


@dataclass(frozen=True)
class GovernanceRules:
    """What is reserved for approvers (users with MANAGE on the registered model, or admins)."""

    protected_tags: frozenset[str] = DEFAULT_PROTECTED_TAGS
    protected_tag_prefixes: tuple[str, ...] = DEFAULT_PROTECTED_TAG_PREFIXES
    protected_aliases: frozenset[str] = DEFAULT_PROTECTED_ALIASES
    model_creator_permission: str = DEFAULT_MODEL_CREATOR_PERMISSION

    @classmethod
    def from_ini(cls, path: str | None) -> "GovernanceRules":
        """Read the ``[governance]`` section of an ini file; defaults for what it leaves out.

        :param path: the basic-auth ini file (None or a file without the section: defaults).
        """
        parser = configparser.ConfigParser()
        if path:
            parser.read(path)
        if not parser.has_section(SECTION):
            return cls()
        section = parser[SECTION]
        unknown = set(section) - {
            "protected_tags",
            "protected_tag_prefixes",
            "protected_aliases",
            "model_creator_permission",
        }
        if unknown:
            raise GovernanceConfigError(f"{path}: unknown setting(s) in [{SECTION}]: {', '.join(sorted(unknown))}")
        creator = section.get("model_creator_permission", DEFAULT_MODEL_CREATOR_PERMISSION).strip().upper()
        if creator not in _PERMISSIONS:
            raise GovernanceConfigError(
                f"{path}: [{SECTION}] model_creator_permission={creator!r} is not one of {', '.join(_PERMISSIONS)}"
            )
        return cls(
            protected_tags=_names(section.get("protected_tags"), DEFAULT_PROTECTED_TAGS),
            protected_tag_prefixes=tuple(_names(section.get("protected_tag_prefixes"), DEFAULT_PROTECTED_TAG_PREFIXES)),
            protected_aliases=_names(section.get("protected_aliases"), DEFAULT_PROTECTED_ALIASES),
            model_creator_permission=creator,
        )

    def is_protected_tag(self, key: str) -> bool:
        # Keys are compared case-insensitively: refusing a look-alike costs nothing.
        folded = (key or "").strip().lower()
        return folded in self.protected_tags or folded.startswith(self.protected_tag_prefixes)

    def is_protected_alias(self, alias: str) -> bool:
        return (alias or "").strip().lower() in self.protected_aliases

    def reserved_changes(self, request_name: str, message: Any) -> list[str]:
        """What a registry request would change that only an approver may, as phrases for the error.

        :param request_name: the protobuf request type, e.g. ``SetModelVersionTag``.
        :param message: the parsed request (fields ``name``, ``version``, ``key``, ``alias``, ...).
        """
        if request_name in ("SetModelVersionTag", "DeleteModelVersionTag"):
            verb = "set" if request_name == "SetModelVersionTag" else "delete"
            if self.is_protected_tag(message.key):
                return [f"{verb} model version tag '{message.key}'"]
        elif request_name == "CreateModelVersion":
            return [
                f"create a version with tag '{tag.key}'" for tag in message.tags if self.is_protected_tag(tag.key)
            ]
        elif request_name in ("SetRegisteredModelAlias", "DeleteRegisteredModelAlias"):
            verb = "move" if request_name == "SetRegisteredModelAlias" else "delete"
            if self.is_protected_alias(message.alias):
                return [f"{verb} alias '@{message.alias}'"]
        elif request_name == "TransitionModelVersionStage":
            # Stages are deprecated; a stage is still a claim about what serves.
            return [f"move version {message.version} to stage '{message.stage}'"]
        elif request_name == "RenameRegisteredModel":
            # Renaming takes @champion away from the name consumers load.
            return [f"rename the registered model to '{message.new_name}'"]
        return []


GOVERNED_REQUESTS = (
    "SetModelVersionTag",
    "DeleteModelVersionTag",
    "CreateModelVersion",
    "SetRegisteredModelAlias",
    "DeleteRegisteredModelAlias",
    "TransitionModelVersionStage",
    "RenameRegisteredModel",
)


def _names(raw: str | None, default: Iterable[str]) -> frozenset[str]:
    if raw is None:
        return frozenset(default)
    return frozenset(item.strip().lower() for item in raw.replace("\n", ",").split(",") if item.strip())
