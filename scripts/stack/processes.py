"""Start, check and stop the stack's processes.

Each service runs in a session of its own (its own process group), logging to a file, with the
marker variable ``MOVIE_RECOMMENDER_STACK=<state dir>`` in its environment. Stopping sends
SIGTERM to the group, SIGKILL after the grace period, then to every process that descended from
the service before the stop (task processes start sessions of their own), and sweeps every
process that still carries the marker. Descendants are found by parent pid, not by the marker:
setproctitle (Celery, Airflow's task runner) overwrites a process's environment area.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

STACK_MARKER = "MOVIE_RECOMMENDER_STACK"


def start(command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
    """Start ``command`` in a new session, stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_group(pgid: int, grace: float) -> bool:
    """SIGTERM to the group, SIGKILL once ``grace`` seconds passed; return whether it was forced."""
    if not kill_group(pgid, signal.SIGTERM):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return False
        time.sleep(0.2)
    kill_group(pgid, signal.SIGKILL)
    return True


def stop_groups(groups: dict[str, int], dependents: dict[str, set[str]], grace: float) -> list[str]:
    """Stop services as Compose's ``down`` does: each once every service depending on it has
    stopped, independent ones side by side (SIGTERM, SIGKILL after ``grace`` seconds each).

    :param groups: service name -> its process group.
    :param dependents: service name -> the names in ``groups`` that depend on it.
    :return: the services that had to be killed hard.
    """
    waiting, stopping, forced = dict(groups), {}, []
    while waiting or stopping:
        ready = [n for n in waiting if not dependents.get(n, set()) & (waiting.keys() | stopping.keys())]
        for name in ready or ([] if stopping else list(waiting)):  # (a cycle: all the rest at once)
            pgid = waiting.pop(name)
            if kill_group(pgid, signal.SIGTERM):
                stopping[name] = (pgid, time.monotonic() + grace)
        alive_groups = {_pgid_of(pid) for pid in _pids()} if stopping else set()
        for name, (pgid, deadline) in list(stopping.items()):
            if pgid not in alive_groups:
                del stopping[name]
            elif time.monotonic() >= deadline:
                kill_group(pgid, signal.SIGKILL)
                forced.append(name)
                del stopping[name]
        if stopping:
            time.sleep(0.2)
    return forced


def group_alive(pgid: int) -> bool:
    return any(_pgid_of(pid) == pgid for pid in _pids())


def sweep(marker_value: str, grace: float = 10.0) -> list[int]:
    """Stop every process whose environment carries the stack marker; return those killed hard."""
    marker = f"{STACK_MARKER}={marker_value}".encode()
    pids = marked(marker)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = [pid for pid in pids if alive(pid)]
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return pids


def crash(leader: int) -> list[int]:
    """SIGKILL a service's leader and every process below it, as when its container dies."""
    family = [leader, *descendants({leader})]
    for pid in family:
        _signal(pid, signal.SIGKILL)
    return family


def descendants(roots: set[int]) -> dict[int, int]:
    """The live processes below ``roots``: pid -> start time (a reused pid is never mistaken)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, int] = {}
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    return found


def with_start_times(pids: set[int]) -> dict[int, int]:
    """pid -> start time for the live ones among ``pids`` (to compare with ``still_alive`` later)."""
    table = _process_table()
    return {pid: table[pid][1] for pid in pids if pid in table}


def still_alive(family: dict[int, int]) -> list[int]:
    """The processes of ``family`` alive now: same pid and same start time (not a reused pid)."""
    table = _process_table()
    return [pid for pid, started in family.items() if pid in table and table[pid][1] == started]


def kill_leftovers(family: dict[int, int], grace: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL, to the processes of ``family`` (from ``descendants``) still alive."""
    def alive_ones() -> list[int]:
        return still_alive(family)

    remaining = alive_ones()
    for pid in remaining:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while remaining and time.monotonic() < deadline:
        time.sleep(0.2)
        remaining = alive_ones()
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    return remaining


def _process_table() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, start time in clock ticks); zombies left out."""
    table = {}
    for pid in _pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[pid] = (int(fields[1]), int(fields[19]))
    return table


def marked(marker: bytes) -> list[int]:
    """Processes (not zombies) whose environment holds ``marker``, this one left out."""
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if marker in environ.split(b"\0") and alive(pid):
            found.append(pid)
    return found


def start_check(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a health check in its own session, output captured."""
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[2])


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
