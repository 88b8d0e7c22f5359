"""The runner's ``down`` order on real processes (no stack): dependents first, the rest side by side."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from scripts.stack import processes

# Exits 1 s after SIGTERM, writing when the signal arrived.
SLOW_TO_STOP = "trap 'date +%s.%N > {out}; sleep 1; exit 0' TERM; while true; do sleep 0.1; done"


def start(tmp_path: Path, name: str, script: str = SLOW_TO_STOP) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", script.format(out=tmp_path / name)], start_new_session=True)


def terminated_at(tmp_path: Path, name: str) -> float:
    return float((tmp_path / name).read_text())


def test_a_service_is_stopped_after_its_dependents_and_independent_ones_together(tmp_path):
    started = {name: start(tmp_path, name) for name in ("apiserver", "scheduler", "triggerer")}
    time.sleep(0.5)  # the traps are set
    forced = processes.stop_groups({name: p.pid for name, p in started.items()},
                                   {"apiserver": {"scheduler", "triggerer"}}, grace=10)
    assert forced == []
    assert all(p.wait(timeout=5) == 0 for p in started.values())
    # The scheduler and the triggerer side by side (one after the other they would be signalled at
    # least 1 s apart), the api-server only once both had exited.
    assert abs(terminated_at(tmp_path, "scheduler") - terminated_at(tmp_path, "triggerer")) < 0.9
    assert terminated_at(tmp_path, "apiserver") >= terminated_at(tmp_path, "scheduler") + 1


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    stubborn = start(tmp_path, "stubborn", "trap '' TERM; sleep 60")
    gone = start(tmp_path, "gone", "exit 0")
    gone.wait(timeout=5)
    time.sleep(0.3)
    begun = time.monotonic()
    forced = processes.stop_groups({"stubborn": stubborn.pid, "gone": gone.pid}, {}, grace=1)
    assert forced == ["stubborn"]
    assert stubborn.wait(timeout=5) == -9
    # Not before the grace period (an upper bound would only measure how loaded the machine is).
    assert time.monotonic() - begun >= 1
