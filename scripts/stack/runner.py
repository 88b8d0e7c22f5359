"""Start the planned services in dependency order, keep their state, stop them.

``depends_on`` is honoured as Compose does: ``service_started`` (the process runs),
``service_healthy`` (its health check passed), ``service_completed_successfully`` (the one-shot
job exited 0). Independent services start together. Health checks run every couple of seconds
while something waits for them (Compose: every ``interval``), never after ``up`` returns.
The state (ports, processes, logs) is in ``<state dir>/stack.json``; secrets never are.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.stack import compose, plan, processes, standins
from scripts.stack.translate import PortTable

STATE_FILE = "stack.json"
CHECK_EVERY_SECONDS = 2.0
CHECK_TIMEOUT_SECONDS = 60.0


class StackError(RuntimeError):
    """A service failed to start or stop; the message names it and carries its log tail."""


@dataclass
class Running:
    local: plan.LocalService
    pid: int | None = None
    healthy: bool = False
    completed: bool = False
    last_check: float = 0.0
    last_output: str = ""
    process: Any = None
    check: Any = None


@dataclass
class Stack:
    """The compose stack of ``project_dir`` as local processes under ``state_dir``.

    :param env_file: the .env the compose file is resolved with.
    :param scale: replicas per service (``{"airflow-worker": 2}``), as ``up --scale``.
    :param use_published: keep the compose file's published ports (8080, 5000) where it has one.
    """

    project_dir: Path
    state_dir: Path
    env_file: Path
    profiles: list[str] = field(default_factory=list)
    scale: dict[str, int] = field(default_factory=dict)
    use_published: bool = True
    services: dict[str, plan.LocalService] = field(default_factory=dict)
    ports: PortTable = field(default_factory=PortTable)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def plan(self) -> None:
        """Resolve the compose file and build every local service (ports kept from an earlier up)."""
        resolved = compose.resolve(self.project_dir, self.env_file, self.profiles)["services"]
        saved = self._read_state()
        if saved and saved.get("ports"):
            for service, container_port, host_port in saved["ports"]:
                self.ports.add(service, int(container_port), int(host_port))
        else:
            self.ports = plan.assign_ports(resolved, self.scale, self.use_published)
        self.services = {}
        for name, service in resolved.items():
            for replica in plan.replica_names(name, self.scale):
                local = plan.build(name, replica, service, self.ports, self.state_dir)
                self.services[replica] = standins.adapt(local) if local.kind != "process" else local

    def up(self, timeout: float = 600.0) -> dict[str, Running]:
        """Start every service, dependencies first; return once all are up, healthy or done."""
        self.plan()
        running: dict[str, Running] = {}
        order: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                for name, local in self.services.items():
                    if name not in running and self._ready(local, running):
                        running[name] = self._start(local)
                        order.append(name)
                        self._write_state(running, order)
                self._advance(running)
                if len(running) == len(self.services) and all(r.healthy or r.completed for r in running.values()):
                    self._write_state(running, order)
                    return running
                if time.monotonic() > deadline:
                    waiting = [n for n in self.services if n not in running or not (running[n].healthy or running[n].completed)]
                    raise StackError(f"timed out after {timeout:.0f} s waiting for {', '.join(waiting)}\n"
                                     + self._diagnostics(waiting, running))
                time.sleep(0.5)
        finally:
            self._write_state(running, order)

    def kill(self, name: str) -> list[int]:
        """Crash one service: SIGKILL to every process of it (task processes too); return their pids."""
        state = self._read_state()
        if name not in state.get("services", {}):
            raise StackError(f"no service {name!r} in this stack: {', '.join(state.get('services', {}))}")
        leader = state["services"][name].get("pid")
        return processes.crash(leader) if leader and processes.alive(leader) else []

    def restart(self, name: str, timeout: float = 300.0, crash: bool = False) -> float:
        """Stop one long-running service (or crash it: SIGKILL) and start it again; return seconds."""
        started = time.monotonic()
        self.plan()
        state = self._read_state()
        entry = state["services"][name]
        if crash:
            self.kill(name)
        elif entry.get("pid"):
            processes.stop_group(entry["pid"], grace=20)
        running = {n: Running(self.services[n], pid=e.get("pid"), healthy=True, completed=True)
                   for n, e in state["services"].items() if n != name}
        restarted = self._start(self.services[name])
        running[name] = restarted
        deadline = time.monotonic() + timeout
        while not restarted.healthy:
            self._advance({name: restarted})
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not turn healthy again within {timeout:.0f} s\n" + self._diagnostics([name], running))
            time.sleep(0.5)
        self._write_state(running, state["order"])
        return time.monotonic() - started

    def down(self, grace: float = 30.0) -> list[str]:
        """Stop every process the stack started (as Compose: a service once those that depend on
        it have stopped, independent ones side by side); return what was killed hard."""
        state = self._read_state()
        if not state:
            return []
        # PostgreSQL's own children are left to pg_ctl: a signal to one of them makes the
        # postmaster restart it (crash recovery) instead of shutting down.
        groups = {name: entry["pid"] for name, entry in state["services"].items()
                  if entry.get("pid") and entry.get("kind") != "postgres"}
        family = processes.descendants(set(groups.values()))
        self.plan()
        forced = processes.stop_groups(groups, self._dependents(groups), grace)
        for name in state.get("order", []):
            if state["services"][name].get("kind") == "postgres":
                standins.postgres_cluster(self.services[name], self.state_dir).stop()
        forced += [f"pid {pid}" for pid in processes.kill_leftovers(family)]
        forced += [f"pid {pid}" for pid in processes.sweep(str(self.state_dir))]
        state["services"] = {n: {**e, "pid": None} for n, e in state["services"].items()}
        (self.state_dir / STATE_FILE).write_text(json.dumps({**state, "stopped": True}, indent=2))
        return forced

    def service_env(self, name: str) -> dict[str, str]:
        """The environment a service's processes get (for `exec`, as `docker compose exec`)."""
        self.plan()
        if name not in self.services:
            raise StackError(f"no service {name!r} in this stack: {', '.join(self.services)}")
        return dict(self.services[name].env)

    # ---- internals ------------------------------------------------------------------------

    def _dependents(self, names) -> dict[str, set[str]]:
        """For each of ``names``, those of ``names`` that depend on it, directly or through
        services not among ``names`` (a one-shot that never started, PostgreSQL)."""
        direct = {name: {other for other, local in self.services.items() if local.service != self.services[name].service
                         and self.services[name].service in local.depends_on} for name in self.services}
        found = {}
        for name in names:
            seen, todo = set(), [name]
            while todo:
                for other in direct.get(todo.pop(), set()) - seen:
                    seen.add(other)
                    todo.append(other)
            found[name] = seen & set(names)
        return found

    def _ready(self, local: plan.LocalService, running: dict[str, Running]) -> bool:
        for dependency, condition in local.depends_on.items():
            replicas = [n for n, s in self.services.items() if s.service == dependency]
            for replica in replicas:
                state = running.get(replica)
                if state is None:
                    return False
                if condition == "service_healthy" and not state.healthy:
                    return False
                if condition == "service_completed_successfully" and not state.completed:
                    return False
        return True

    def _start(self, local: plan.LocalService) -> Running:
        if local.kind == "postgres":
            cluster = standins.start_postgres(local, self.state_dir)
            pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
            return Running(local, pid=pid)
        process = processes.start(local.command, local.env, self.logs / f"{local.name}.log", local.cwd)
        return Running(local, pid=process.pid, process=process)

    def _advance(self, running: dict[str, Running]) -> None:
        """Collect finished one-shots, fail on a crashed service, run due health checks."""
        for name, state in running.items():
            if state.healthy or state.completed:
                continue
            local = state.local
            code = state.process.poll() if state.process is not None else None
            if local.one_shot:
                if code is None:
                    continue
                if code != 0:
                    raise StackError(f"{name} exited with code {code}\n{processes.tail(self.logs / f'{name}.log')}")
                state.completed = True
                continue
            if code is not None:
                raise StackError(f"{name} exited with code {code}\n{processes.tail(self.logs / f'{name}.log')}")
            if local.healthcheck is None:
                state.healthy = True
            else:
                self._check(state)

    def _check(self, state: Running) -> None:
        """Health checks run side by side (an `airflow jobs check` takes seconds of CPU)."""
        if state.check is not None:
            code = state.check.poll()
            if code is None and time.monotonic() - state.last_check < CHECK_TIMEOUT_SECONDS:
                return
            if code is None:
                processes.kill_group(state.check.pid, 9)
            output = state.check.stdout.read() if code is not None else "timed out"
            state.check.stdout.close()
            state.healthy, state.last_output, state.check = code == 0, output[-2000:], None
        elif time.monotonic() - state.last_check >= CHECK_EVERY_SECONDS:
            state.check = processes.start_check(state.local.healthcheck, state.local.env)
            state.last_check = time.monotonic()

    def _diagnostics(self, names: list[str], running: dict[str, Running]) -> str:
        parts = []
        for name in names:
            state = running.get(name)
            check = f"last health check: {state.last_output.strip()[-600:]}" if state and state.last_output else ""
            parts.append(f"--- {name} ({self.logs / (name + '.log')}) {check}\n{processes.tail(self.logs / f'{name}.log', 30)}")
        return "\n".join(parts)

    def _read_state(self) -> dict[str, Any]:
        path = self.state_dir / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, running: dict[str, Running], order: list[str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "env_file": str(self.env_file),
            "profiles": self.profiles,
            "scale": self.scale,
            "ports": self.ports.rows(),
            "order": order,
            "services": {
                name: {"kind": state.local.kind, "pid": state.pid, "one_shot": state.local.one_shot,
                       "log": str(self.logs / f"{name}.log"), "ports": state.local.ports,
                       "command": state.local.command if state.local.kind != "redis" else state.local.command[:1]}
                for name, state in running.items()
            },
        }
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
