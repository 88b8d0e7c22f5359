"""Registered-model names and aliases, checked before any MLflow call so the refusal is ours.

MLflow rejects a name that is blank, holds '/' or ':', or changes under path normalisation
('.', '..'), and an alias outside ``[A-Za-z0-9_-]``, 'latest' or a version-like 'v3'. Its
messages name neither our parameter nor what to do; and a quote or backslash in a name would
break the registry filter strings built in ``registry.py``. Refusing here also means a bad name
never reaches a half-finished registration.
"""

from __future__ import annotations

import re

from include.governance.lifecycle import MODEL_NAME_PATTERN

# The project's rule (lifecycle.MODEL_NAME_PATTERN, also the DAG params' JSON Schema): stricter
# than MLflow's, so every channel accepts the same names.
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
MAX_MODEL_NAME_LENGTH = 128
MAX_ALIAS_LENGTH = 255
# Characters MLflow refuses in a name, plus the ones that would break a filter string.
_FORBIDDEN_IN_NAME = ("/", ":", "'", '"', "\\")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
_VERSION_LIKE_ALIAS = re.compile(r"^[vV]\d+$")


class InvalidName(ValueError):
    """A model name or alias the registry would refuse; the message names it and the rule."""


def check_model_name(name: object) -> str:
    """Return ``name`` when the registry accepts it as a registered-model name, else raise.

    :param name: the registered model name.
    :raises InvalidName: naming the value and the rule it breaks.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidName(f"model name {name!r} is empty; a registered model needs a name")
    if name != name.strip():
        raise InvalidName(f"model name {name!r} starts or ends with whitespace")
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidName(f"model name {name[:40]!r}... is {len(name)} characters long (at most {MAX_MODEL_NAME_LENGTH})")
    bad = sorted({c for c in name if c in _FORBIDDEN_IN_NAME or not c.isprintable()})
    if bad:
        raise InvalidName(
            f"model name {name!r} contains {', '.join(map(repr, bad))}; "
            "names may not contain / : quotes, backslashes or control characters"
        )
    if name in (".", ".."):
        raise InvalidName(f"model name {name!r} is a path component, not a name")
    if not _MODEL_NAME.match(name):
        raise InvalidName(
            f"model name {name!r} must start with a letter and hold only letters, digits, '.', '_' and '-'"
        )
    return name


def check_alias(alias: object) -> str:
    """Return ``alias`` when the registry accepts it as a model alias, else raise.

    :param alias: the alias name (without the '@').
    :raises InvalidName: naming the value and the rule it breaks.
    """
    if not isinstance(alias, str) or not alias:
        raise InvalidName(f"alias {alias!r} is empty")
    if len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidName(f"alias {alias[:40]!r}... is {len(alias)} characters long (at most {MAX_ALIAS_LENGTH})")
    if not _ALIAS.match(alias):
        raise InvalidName(f"alias {alias!r} may only contain letters, digits, '_' and '-'")
    if alias.lower() == "latest" or _VERSION_LIKE_ALIAS.match(alias):
        raise InvalidName(f"alias {alias!r} is reserved by MLflow ('latest' and v<number> name versions)")
    return alias
