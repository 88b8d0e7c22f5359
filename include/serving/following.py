"""Following the registry: read the aliases every poll interval, load what moved, swap atomically.

One background thread does all the work; request handlers only read ``slots`` (one attribute
read at the start of a request: a request finishes on the versions it started with, while a
swap replaces the whole ``Slots`` object for the requests that start after it). A new version
is loaded and checked before the swap (``loading.py``), so a version that fails is never
served: the old one keeps serving, and the failure is reported (``failures.py``). A failed
version is retried after a back-off (a registry or storage hiccup heals), not every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from include.governance import lifecycle as lc
from include.governance.registry import get_aliases
from include.serving.failures import FailureReporter
from include.serving.loading import LoadFailed, ServedModel, load_version
from include.serving.metrics import ServingMetrics
from include.serving.routing import Slots
from include.serving.settings import ServingSettings

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 30.0
RETRY_MAX_SECONDS = 600.0

Loader = Callable[[str, str, "str | None", int], ServedModel]


@dataclass
class _Failure:
    attempts: int
    retry_at: float


class RegistryFollower:
    """Keeps ``slots`` in step with the registry's ``@champion`` (and ``@challenger`` if used).

    :param client: MLflow client of the registry.
    :param settings: the server's settings.
    :param metrics: the server's metrics.
    :param reporter: reports failed loads.
    :param loader: loads one version (``loading.load_version``; tests inject faults here).
    """

    def __init__(
        self,
        client: MlflowClient,
        settings: ServingSettings,
        metrics: ServingMetrics,
        reporter: FailureReporter,
        loader: Loader = load_version,
    ) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.reporter = reporter
        self.loader = loader
        self.slots = Slots()
        self.last_poll_at: str | None = None
        self._failures: dict[str, _Failure] = {}
        self._champion_missing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def aliases(self) -> tuple[str, ...]:
        """The aliases followed."""
        return (lc.CHAMPION, lc.CHALLENGER) if self.settings.follows_challenger else (lc.CHAMPION,)

    def start(self) -> None:
        """Start polling in a daemon thread (the first poll runs at once)."""
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling (a load in progress finishes first, up to timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the thread must outlive any one poll; logged with the cause
                log.exception("serving: poll of %s failed; serving what is loaded", self.settings.model_name)
            self._stop.wait(self.settings.poll_seconds)

    def poll_once(self) -> None:
        """Read the aliases once and bring every followed slot in line with them."""
        try:
            targets = get_aliases(self.client, self.settings.model_name)
        except MlflowException as exc:
            self.metrics.registry_errors.labels(self.settings.model_name).inc()
            log.warning("serving: cannot read the aliases of %s (%s); serving what is loaded",
                        self.settings.model_name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        self.last_poll_at = lc.utc_now_iso()
        for alias in self.aliases:
            self._follow(alias, targets.get(alias))

    def _follow(self, alias: str, target: str | None) -> None:
        current = self.slots.get(alias)
        self._note_missing(alias, target is None)
        if target is None:
            if alias == lc.CHALLENGER and current is not None:
                self._swap(alias, None)
            # No @champion: keep the last one (if any) rather than fail every request.
            return
        if current is not None and current.version == target:
            return
        other = self.slots.get(lc.CHALLENGER if alias == lc.CHAMPION else lc.CHAMPION)
        if other is not None and other.version == target:
            self._swap(alias, other)  # already loaded for the other alias (e.g. a promoted canary)
            return
        failure = self._failures.get(target)
        if failure is not None and time.monotonic() < failure.retry_at:
            return
        self._load(alias, target)

    def _note_missing(self, alias: str, missing: bool) -> None:
        """Log once when @champion goes missing (or is missing at start), and once when it is back."""
        if alias != lc.CHAMPION or missing == self._champion_missing:
            return
        self._champion_missing = missing
        serving = self.slots.champion
        if missing:
            log.warning("serving: %s has no @%s; %s", self.settings.model_name, alias,
                        f"still serving v{serving.version}" if serving else "waiting for one (/health answers 503)")
        else:
            log.info("serving: %s has a @%s again", self.settings.model_name, alias)

    def _load(self, alias: str, version: str) -> None:
        try:
            run_id = self.client.get_model_version(self.settings.model_name, version).run_id
            depth = min(self.settings.precomputed_k, self.settings.max_k)
            served = self.loader(self.settings.model_name, version, run_id, depth)
        except (LoadFailed, MlflowException) as exc:
            failure = exc if isinstance(exc, LoadFailed) else LoadFailed(version, "load", str(exc).splitlines()[0])
            self._record_failure(alias, failure)
            return
        self._failures.pop(version, None)
        self._swap(alias, served)

    def _record_failure(self, alias: str, failure: LoadFailed) -> None:
        previous = self._failures.get(failure.version)
        attempts = previous.attempts + 1 if previous else 1
        delay = min(RETRY_FIRST_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS)
        self._failures[failure.version] = _Failure(attempts, time.monotonic() + delay)
        serving = self.slots.get(alias)
        self.reporter.report(alias, failure, serving=serving.version if serving else None, attempt=attempts)

    def _swap(self, alias: str, served: ServedModel | None) -> None:
        old = self.slots.get(alias)
        self.slots = replace(self.slots, **{alias: served})  # one assignment: the swap
        self.metrics.set_loaded(self.settings.model_name, alias, served.version if served else None)
        log.info(
            "serving: %s @%s is now %s (was %s)%s",
            self.settings.model_name, alias,
            f"v{served.version}" if served else "not loaded", f"v{old.version}" if old else "nothing",
            f", loaded in {served.load_seconds:.1f} s" if served else "",
        )
