"""Which MLflow account a call runs as: per thread and per asyncio task, never per process.

MLflow's client sends basic-auth credentials from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``
(process-wide, so one task's login would reach every other task sharing the process, such as
the triggerer's) or from request-header providers, which ``mlflow.utils.rest_utils.http_request``
asks on every request: the REST API, fluent API and the server's proxied ``mlflow-artifacts:/``
store alike. This module registers one provider, at its import, that sends the identity held in
a ``ContextVar``. A ContextVar is private to a thread and to an asyncio task, and
``asyncio.to_thread`` runs its function in a copy of the caller's context, so concurrent triggers
cannot see each other's identity, and an identity ends with the block that set it.

MLflow's artifact repositories upload and download through their own thread pools, whose threads
start with an empty context; this module makes those pools run each job in the submitter's
context, so downloads carry the identity too.

Imported lazily (it imports MLflow): DAG files must not pay for MLflow at parse time.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider

log = logging.getLogger(__name__)

# Ambient credentials MLflow puts on a request after the header providers' (rest_utils.http_request
# overwrites Authorization with them): with any set, a connection's login would be ignored.
AMBIENT_CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH")


class AmbientCredentialsError(RuntimeError):
    """Process-wide MLflow credentials would override a connection's login."""


@dataclass(frozen=True)
class MlflowIdentity:
    """An MLflow account: the connection it comes from, its login and password.

    :param source: what configured it (a connection id), for messages and logs.
    :param username: the MLflow user; None means no login (a server without auth).
    :param password: its password (never shown in repr).
    """

    source: str
    username: str | None = None
    password: str = field(default="", repr=False)

    def authorization(self) -> str | None:
        """The ``Authorization`` header value, or None without a login."""
        if not self.username:
            return None
        token = base64.standard_b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


_current: contextvars.ContextVar[MlflowIdentity | None] = contextvars.ContextVar("mlflow_identity", default=None)


def current_identity() -> MlflowIdentity | None:
    """The identity MLflow calls in this thread or asyncio task run as (None: no login)."""
    return _current.get()


@contextmanager
def acting_as(identity: MlflowIdentity | None) -> Iterator[None]:
    """Run the MLflow calls of the block as ``identity``, then restore the previous one.

    An identity without a login also shadows an outer one: the block sends no credentials.

    :param identity: the account, or None for no login.
    """
    if identity is not None and identity.username:
        _refuse_ambient_credentials(identity)
    token = _current.set(identity)
    try:
        yield
    finally:
        _current.reset(token)


def _refuse_ambient_credentials(identity: MlflowIdentity) -> None:
    from mlflow.utils.credentials import read_mlflow_creds

    found = [name for name in AMBIENT_CREDENTIAL_VARIABLES if os.environ.get(name)]
    if not found and read_mlflow_creds().username:
        found = ["~/.mlflow/credentials"]
    if found:
        raise AmbientCredentialsError(
            f"{', '.join(found)} set for this whole process: MLflow would send those credentials instead of "
            f"the login of {identity.source!r}; remove them (each task logs in with its Airflow connection)"
        )


class IdentityHeaderProvider(RequestHeaderProvider):
    """Sends the current identity's basic-auth header with every MLflow request."""

    def in_context(self) -> bool:
        identity = _current.get()
        return identity is not None and bool(identity.username)

    def request_headers(self) -> dict[str, str]:
        identity = _current.get()
        header = identity.authorization() if identity else None
        return {"Authorization": header} if header else {}


class IdentityClient(MlflowClient):
    """An ``MlflowClient`` whose every public method runs as one identity.

    The identity is set for the duration of each call, in the calling thread or task, so the
    client acts as its connection wherever it is used (a worker thread of the triggerer too) and
    leaves nothing behind.

    :param identity: the account the calls run as.
    """

    def __init__(self, identity: MlflowIdentity, **kwargs: Any) -> None:
        with acting_as(identity):
            super().__init__(**kwargs)
        self._identity = identity

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name.startswith("_") or not inspect.ismethod(attribute):
            return attribute
        return _bound_to(super().__getattribute__("_identity"), attribute)


def _bound_to(identity: MlflowIdentity, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def as_identity(*args: Any, **kwargs: Any) -> Any:
        with acting_as(identity):
            return method(*args, **kwargs)

    return as_identity


class ContextCopyingThreadPool(ThreadPoolExecutor):
    """A thread pool that runs each job in a copy of the submitting thread's context."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def _register_header_provider() -> None:
    # MLflow's registry is the one its http_request asks; the entry-point alternative needs an
    # installed distribution, which plugins/ is not.
    from mlflow.tracking.request_header import registry

    providers = registry._request_header_provider_registry
    if not any(isinstance(provider, IdentityHeaderProvider) for provider in providers):
        providers.register(IdentityHeaderProvider)


def _propagate_context_to_artifact_threads() -> None:
    # Every artifact repository builds its pools with ArtifactRepository._create_thread_pool
    # (mlflow/store/artifact/artifact_repo.py); a download's requests are made in those threads.
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    if not hasattr(ArtifactRepository, "_create_thread_pool"):
        log.warning(
            "mlflow.store.artifact.artifact_repo.ArtifactRepository has no _create_thread_pool in this MLflow "
            "version: artifact downloads may run without the connection's login"
        )
        return

    def _create_thread_pool(self):
        return ContextCopyingThreadPool(
            max_workers=self.max_workers, thread_name_prefix=f"Mlflow{type(self).__name__}"
        )

    ArtifactRepository._create_thread_pool = _create_thread_pool


_register_header_provider()
_propagate_context_to_artifact_threads()
