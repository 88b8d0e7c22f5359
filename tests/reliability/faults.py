"""Fault injection at the client's HTTP layer: a fault at an exact moment of a given request.

The only mock of the package: urllib3's one-request-on-a-connection function is wrapped, so a
crash can land exactly between the server doing its work and the client reading the answer.
Everything else (the client's own retries, the server's commit, the kill, the restart) is real.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from urllib3.connectionpool import HTTPConnectionPool


@dataclass
class Injection:
    """What the wrapper saw: the requests it matched and the errors of background work."""

    fired: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def join(self, timeout: float = 300) -> None:
        """Wait for background work (a restart) and re-raise its error, if any."""
        for thread in self.threads:
            thread.join(timeout)
            if thread.is_alive():
                raise AssertionError(f"background fault work {thread.name} still running after {timeout:.0f} s")
        if self.errors:
            raise self.errors[0]

    def in_background(self, name: str, work: Callable[[], object]) -> None:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the test by join()
                self.errors.append(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()


BEFORE = "before"  # the fault, then the request
AFTER = "after"  # the request and its answer, then the fault
LOSE_RESPONSE = "lose_response"  # the request does its work, the fault, the answer never arrives
BEFORE_NEXT = "before_next"  # the answer arrives; the fault strikes before the client's next request


def inject(
    monkeypatch,
    endpoint: str,
    fault: Callable[[Injection], None],
    *,
    moment: str,
    nth: int = 1,
    method: str = "POST",
) -> Injection:
    """Run ``fault`` once, at ``moment`` of the ``nth`` request to ``endpoint``.

    :param endpoint: the end of the request path, e.g. ``model-versions/create``.
    :param fault: kills, stops or restarts something (maybe in the background).
    :param moment: BEFORE, AFTER, LOSE_RESPONSE (drop the server's answer and raise what urllib3
        raises when a server dies before answering) or BEFORE_NEXT.
    """
    if moment not in (BEFORE, AFTER, LOSE_RESPONSE, BEFORE_NEXT):
        raise ValueError(f"unknown moment {moment!r}")
    original = HTTPConnectionPool._make_request
    injection = Injection()
    seen = []
    fault_before_next = []

    def make_request(self, conn, request_method, url, *args, **kwargs):
        if fault_before_next:
            fault_before_next.clear()
            fault(injection)
        matches = not injection.fired and request_method == method and url.split("?")[0].endswith(endpoint)
        if matches:
            seen.append(url)
        if not matches or len(seen) != nth:
            return original(self, conn, request_method, url, *args, **kwargs)
        injection.fired.append(f"{moment} {request_method} {url}")
        if moment == BEFORE:
            fault(injection)
        response = original(self, conn, request_method, url, *args, **kwargs)
        if moment == AFTER:
            fault(injection)
        elif moment == BEFORE_NEXT:
            fault_before_next.append(True)
        elif moment == LOSE_RESPONSE:
            conn.close()
            fault(injection)
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        return response

    monkeypatch.setattr(HTTPConnectionPool, "_make_request", make_request)
    return injection
