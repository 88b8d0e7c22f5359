"""An .env for the stack with every .env.example placeholder replaced by a generated secret.

For a user without an .env of their own (``make stack``) and for the tests: every value that
holds ``change-me`` gets a random one (letters, digits, '-' and '_', safe inside URIs), the
Fernet keys real Fernet keys; ``overrides`` set anything else (the executor, profiles).
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

PLACEHOLDER = "change-me"


def generate(example: Path, target: Path, overrides: dict[str, str] | None = None) -> Path:
    """Write ``target`` from ``example`` (mode 0600); return it."""
    overrides = dict(overrides or {})
    lines = []
    for line in example.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            key = key.strip()
            if key in overrides:
                value = overrides.pop(key)
            elif PLACEHOLDER in value:
                value = _secret(key)
            line = f"{key}={value}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items()]
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return target


# Values that must be Fernet keys (32 random bytes, URL-safe base64), not just random text.
FERNET_KEYS = frozenset({"AIRFLOW_FERNET_KEY", "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"})


def _secret(key: str) -> str:
    if key in FERNET_KEYS:
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    # token_urlsafe may start with '-', which some CLIs read as an option.
    return "s" + secrets.token_urlsafe(24)
