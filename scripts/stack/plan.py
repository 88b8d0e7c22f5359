"""Turn each resolved compose service into the local process that plays it.

A service becomes a ``LocalService``: its command (entrypoint + command, with the base image's
entrypoint rule), its environment (base image ENV, Dockerfile ENV, compose ``environment``),
its health check (compose's ``healthcheck.test``), all translated by ``translate``; or, for an
image that cannot run here, a stand-in kind with the same environment (``images.STANDINS``).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.stack import images
from scripts.stack.compose import Dockerfile, dockerfile_of, unescape
from scripts.stack.processes import STACK_MARKER
from scripts.stack.translate import LOOPBACK, PortTable, RootFs

# Ports the stand-ins listen on inside their containers.
STANDIN_PORTS = {"postgres": [5432], "s3": [9000], "redis": [6379], "bucket": []}
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class LocalService:
    """One process of the stack (a replica of a compose service, or the service itself)."""

    name: str
    service: str
    kind: str  # "process", or a stand-in: "postgres", "s3", "bucket", "redis"
    command: list[str]
    env: dict[str, str]
    cwd: Path
    one_shot: bool
    healthcheck: list[str] | None
    depends_on: dict[str, str]
    ports: dict[int, int] = field(default_factory=dict)
    rootfs: RootFs | None = None


def assign_ports(services: dict[str, Any], scale: dict[str, int], use_published: bool) -> PortTable:
    """Give every port a service listens on a port on 127.0.0.1 (published ones kept if asked)."""
    table = PortTable()
    for name, service in services.items():
        for replica in replica_names(name, scale):
            published = {int(p["target"]): int(p["published"]) for p in service.get("ports") or [] if p.get("published")}
            for port in sorted(container_ports(service)):
                keep = use_published and port in published and replica == name
                table.add(replica, port, published[port] if keep else free_port())
    return table


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(p["target"]) for p in service.get("ports") or []}
    kind = images.standin_of(service.get("image", ""))
    if kind:
        return ports | set(STANDIN_PORTS[kind])
    dockerfile = dockerfile_of(service)
    words = _command(service, dockerfile)
    base = images.base_image(dockerfile.base_image) if dockerfile else images.PYTHON_BASE
    for word in words[:2]:
        ports |= set(base.listens.get(word, {}))
    for option in _options(words, "--port"):
        ports.add(int(option))
    return ports


def replica_names(name: str, scale: dict[str, int]) -> list[str]:
    count = scale.get(name, 1)
    return [name] if count == 1 else [f"{name}-{n}" for n in range(1, count + 1)]


def build(name: str, replica: str, service: dict[str, Any], ports: PortTable, state_dir: Path) -> LocalService:
    """The local process for one replica of a compose service."""
    kind = images.standin_of(service.get("image", "")) or "process"
    dockerfile = dockerfile_of(service)
    base = images.base_image(dockerfile.base_image) if dockerfile else images.PYTHON_BASE
    rootfs = _rootfs(replica, service, dockerfile, base, state_dir)
    hostname = machine_hostname() if replica == name else f"{machine_hostname()}-{replica.rsplit('-', 1)[1]}"
    env = _environment(replica, service, dockerfile, base, rootfs, ports, state_dir, hostname)
    command = [ports.translate(rootfs.translate(unescape(word)), replica) for word in _command(service, dockerfile)]
    command = _listen_locally(command, ports.ports.get(replica, {}))
    if dockerfile and base.command_prefix and command and command[0] not in base.passthrough and not service.get("entrypoint"):
        command = [*base.command_prefix, *command]
    if command[:3] == ["airflow", "celery", "worker"]:
        # Docker names a worker celery@<container hostname>; replicas on one machine need that too.
        command += ["--celery-hostname", f"celery@{hostname}"]
    for word in command[1:3]:
        for container_port, setting in base.listens.get(word, {}).items():
            env[setting] = str(ports.host_port(replica, container_port))
    if command[:2] == ["airflow", "api-server"]:
        env["AIRFLOW__API__HOST"] = LOOPBACK
    return LocalService(
        name=replica,
        service=name,
        kind=kind,
        command=command,
        env=env,
        cwd=rootfs.path(dockerfile.workdir) if dockerfile and dockerfile.workdir else rootfs.root,
        one_shot=service.get("restart") == "no",
        healthcheck=_healthcheck(service, rootfs, ports, replica),
        depends_on={dep: spec.get("condition", "service_started") for dep, spec in (service.get("depends_on") or {}).items()},
        ports=dict(ports.ports.get(replica, {})),
        rootfs=rootfs,
    )


def _command(service: dict[str, Any], dockerfile: Dockerfile | None) -> list[str]:
    entrypoint = service.get("entrypoint") or (dockerfile.entrypoint if dockerfile else [])
    return [*entrypoint, *(service.get("command") or [])]


def _options(words: list[str], option: str) -> list[str]:
    found = []
    for index, word in enumerate(words):
        if word.startswith(option + "="):
            found.append(word.split("=", 1)[1])
        elif word == option and index + 1 < len(words):
            found.append(words[index + 1])
    return found


def _listen_locally(command: list[str], own_ports: dict[int, int]) -> list[str]:
    """``--host=0.0.0.0`` -> 127.0.0.1 and ``--port=<container port>`` -> its port here."""
    out = []
    for word in command:
        option, sep, value = word.partition("=")
        if sep and option == "--host" and value == "0.0.0.0":
            word = f"--host={LOOPBACK}"
        elif sep and option == "--port" and value.isdigit() and int(value) in own_ports:
            word = f"--port={own_ports[int(value)]}"
        out.append(word)
    return out


def _rootfs(replica: str, service: dict[str, Any], dockerfile: Dockerfile | None, base: images.BaseImage,
            state_dir: Path) -> RootFs:
    """Lay out the container paths the service uses: mounts as symlinks, copies as files."""
    rootfs = RootFs(state_dir / "rootfs" / replica)
    rootfs.root.mkdir(parents=True, exist_ok=True)
    for volume in service.get("volumes") or []:
        target = volume["target"]
        source = Path(volume["source"]) if volume["type"] == "bind" else state_dir / "volumes" / volume["source"]
        if volume["type"] != "bind":
            source.mkdir(parents=True, exist_ok=True)
        _link(rootfs.path(target), source)
        rootfs.prefixes.add(target)
    for target, source in (dockerfile.copies if dockerfile else {}).items():
        if not target.startswith("/tmp/"):
            _copy(source, rootfs.path(target))
            rootfs.prefixes.add(target)
    folders = [base.env.get("AIRFLOW_HOME"), base.env.get("AIRFLOW_USER_HOME_DIR"), dockerfile.workdir if dockerfile else None]
    for folder in filter(None, folders):
        rootfs.path(folder).mkdir(parents=True, exist_ok=True)
        rootfs.prefixes.add(folder)
    return rootfs


def _link(at: Path, to: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    if at.is_symlink() or at.exists():
        if at.is_symlink() and at.resolve() == to.resolve():
            return
        at.unlink() if at.is_symlink() or at.is_file() else shutil.rmtree(at)
    at.symlink_to(to)


def _copy(source: Path, target: Path) -> None:
    # Copied, not linked, as COPY does: the service sees the file as it was at `up`.
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def _environment(replica: str, service: dict[str, Any], dockerfile: Dockerfile | None, base: images.BaseImage,
                 rootfs: RootFs, ports: PortTable, state_dir: Path, hostname: str) -> dict[str, str]:
    declared = {**base.env, **(dockerfile.env if dockerfile else {}), **(service.get("environment") or {})}
    declared = {key: unescape(value if value is not None else "") for key, value in declared.items()}
    env = ports.translate_env({key: rootfs.translate(value) for key, value in declared.items()}, replica)
    home = env.get("AIRFLOW_USER_HOME_DIR") or (rootfs.root / "home")
    Path(home).mkdir(parents=True, exist_ok=True)
    # The venv's python, airflow, mlflow and docker-compose first, as the image has them on PATH.
    local_bins = [str(rootfs.path(d)) for d in ("/usr/local/bin",) if rootfs.path(d).is_dir()]
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), *local_bins, BASE_PATH]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HOSTNAME": hostname,
        "PYTHONUNBUFFERED": "1",
        STACK_MARKER: str(state_dir),
    })
    return env


def _healthcheck(service: dict[str, Any], rootfs: RootFs, ports: PortTable, replica: str) -> list[str] | None:
    test = (service.get("healthcheck") or {}).get("test")
    if not test or test[0] == "NONE":
        return None
    words = [ports.translate(rootfs.translate(unescape(word)), replica) for word in test[1:]]
    return ["sh", "-c", words[0]] if test[0] == "CMD-SHELL" else words


def machine_hostname() -> str:
    """The name Airflow records its jobs under (airflow.utils.net.getfqdn), which the compose
    health checks pass as $HOSTNAME: in a container that is the container's name."""
    name = socket.gethostname()
    try:
        addresses = socket.getaddrinfo(name, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return name
    return next((address[3] for address in addresses if address[3]), name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]
