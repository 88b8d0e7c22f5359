"""MLflow's requirement-vs-interpreter check, answered at once for exact pins.

Logging or loading a model, MLflow checks each of its pip requirements against the running
interpreter (a mismatch is a logged warning, never an error): logging a pyfunc model runs the
check twice (saving it, then loading it to validate the input example), and every
``mlflow.pyfunc.load_model`` once more. The check's first call in a process maps every installed
distribution to its modules (``importlib_metadata.packages_distributions``), which takes ~2 s
with this project's ~280 distributions: most of what logging the model costs.

For a ``name==version`` pin, as ``training.pip_requirements`` writes them, the installed version
(``importlib.metadata.version``, local label dropped as the pins drop it) answers the same
question without that map. ``pins_checked_cheaply`` answers those pins so and hands every other
requirement, and any pin that does not match, to MLflow's own check: the same warnings, at once.
MLflow has no switch for this (``MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK`` skips another check, pip's
resolver; ``load_model(suppress_warnings=True)`` would drop the warning itself), so its
module-level function is replaced for the block, and left alone when a newer MLflow no longer
has it.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The replaced function is one per process: one block at a time restores what it replaced.
_LOCK = threading.RLock()


@contextmanager
def pins_checked_cheaply() -> Iterator[None]:
    """Inside the block, MLflow's requirement check answers exact pins from installed versions."""
    from mlflow.utils import requirements_utils

    with _LOCK:
        original = getattr(requirements_utils, "_check_requirement_satisfied", None)
        if original is None:
            yield
            return

        def check(requirement: str) -> Any:
            name, pinned, version = requirement.partition("==")
            if pinned and installed_version(name.strip()) == version.strip():
                return None  # what MLflow's check returns for a satisfied requirement
            return original(requirement)

        requirements_utils._check_requirement_satisfied = check
        try:
            yield
        finally:
            requirements_utils._check_requirement_satisfied = original


def installed_version(package: str) -> str | None:
    """The installed version of package without its local label ("+cpu"), or None when the
    name is not an installed distribution's (or not a name at all, e.g. "mlflow[gateway]").

    :param package: a distribution name.
    """
    try:
        return importlib.metadata.version(package).split("+")[0]
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
