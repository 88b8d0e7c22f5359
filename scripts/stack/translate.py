"""From container terms to this machine's: service host names, container ports, container paths.

In Compose every service is a host of its own (``postgres:5432``, ``mlflow:5000``) with its own
filesystem. Here every service is a process on 127.0.0.1 with a port of its own, and each
container path (a volume's target, a file a Dockerfile copies, the image's home) lives under
the service's folder in the stack's state directory (``rootfs/<service>/...``), where bind
mounts are symlinks to the project's files and named volumes are folders of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass
class PortTable:
    """(service, container port) -> port on 127.0.0.1: the one table of where things are."""

    ports: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, service: str, container_port: int, host_port: int) -> None:
        self.ports.setdefault(service, {})[container_port] = host_port

    def host_port(self, service: str, container_port: int) -> int:
        try:
            return self.ports[service][container_port]
        except KeyError:
            raise KeyError(f"service {service!r} has no port {container_port} in the stack's port table") from None

    def rows(self) -> list[tuple[str, int, int]]:
        return [(s, c, h) for s, table in sorted(self.ports.items()) for c, h in sorted(table.items())]

    def translate(self, text: str, own_service: str | None = None) -> str:
        """Replace ``service:port`` (and ``localhost:port`` of ``own_service``) by 127.0.0.1 ports."""
        for service, table in self.ports.items():
            for container_port, host_port in table.items():
                text = re.sub(rf"(?<![\w.-]){re.escape(service)}:{container_port}(?!\d)", f"{LOOPBACK}:{host_port}", text)
        if own_service in self.ports:
            for container_port, host_port in self.ports[own_service].items():
                text = re.sub(rf"(?<![\w.-])(localhost|127\.0\.0\.1):{container_port}(?!\d)", f"{LOOPBACK}:{host_port}", text)
        return text

    def translate_env(self, env: dict[str, str], own_service: str | None = None) -> dict[str, str]:
        """Translate every value; ``X_HOST=<service>`` with ``X_PORT=<its container port>`` too."""
        out = {key: self.translate(value, own_service) for key, value in env.items()}
        for key, value in env.items():
            if key.endswith("_HOST") and value in self.ports:
                out[key] = LOOPBACK
                port_key = key[: -len("_HOST")] + "_PORT"
                if port_key in env and env[port_key].isdigit() and int(env[port_key]) in self.ports[value]:
                    out[port_key] = str(self.ports[value][int(env[port_key])])
        return out


@dataclass
class RootFs:
    """One service's container filesystem, as far as the service's processes need it.

    :param root: ``<state>/rootfs/<service>``.
    :param prefixes: the container paths it holds (mount targets, copied files, image folders).
    """

    root: Path
    prefixes: set[str] = field(default_factory=set)

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def translate(self, text: str) -> str:
        """Prefix every absolute container path under a known prefix with this root."""
        if not self.prefixes:
            return text
        pattern = "|".join(re.escape(prefix) for prefix in sorted(self.prefixes, key=len, reverse=True))
        # A path starts a word (not inside a URL such as s3://bucket/opt/...) and ends at a
        # separator, so /opt/airflowx is not /opt/airflow.
        return re.sub(rf"(?<![\w/.-])({pattern})(?=[/\s:;,'\"]|$)", lambda m: str(self.path(m.group(1))), text)
