"""MlflowHook: the one place an MlflowClient is built from an Airflow connection.

Two MLflow identities: ``mlflow_default`` (the training account: logs runs, registers versions)
and ``mlflow_governance`` (the approver account: records validation verdicts and approval
decisions, moves aliases). With MLflow's governance-auth app (docker/mlflow/governance-auth)
only the second may write approval tags or move ``@champion``. Where ``mlflow_governance`` is not
defined (the embedded default) the governance steps use ``mlflow_default``.

A task's MLflow calls run as its connection's account without touching the process environment
(``mlflow_governance.identity``): the client from ``get_conn()`` acts as the connection on every
call, and ``with hook.identity():`` covers the rest (the fluent API, ``mlflow.artifacts``, the
core's artifact checks). Operators get that block around ``execute`` from
``runs_as_connection_identity``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

GOVERNANCE_CONN_ID = "mlflow_governance"
# A connection that may be left undefined, and the one used instead.
FALLBACK_CONN_IDS = {GOVERNANCE_CONN_ID: "mlflow_default"}

if TYPE_CHECKING:
    from mlflow_governance.identity import IdentityClient, MlflowIdentity

_Method = TypeVar("_Method", bound=Callable[..., Any])


class MlflowHook(BaseHook):
    """Build an ``MlflowClient`` from the ``mlflow_default`` connection.

    The connection's host is the tracking URI (``http://mlflow:5000``, ``sqlite:////abs/mlflow.db``);
    a host without a scheme is completed from the connection's schema (default ``http``) and port.
    Login and password are MLflow's basic auth, sent only by this hook's calls. Extras: ``registry_uri`` and
    ``artifact_location`` (where new experiments keep their artifacts). Without the connection the
    hook uses its fallback (``mlflow_governance`` -> ``mlflow_default``), else the
    ``MLFLOW_TRACKING_URI`` environment variable. Credentials belong in login and password, never
    in the host: the tracking URI is logged and passed between tasks.

    :param mlflow_conn_id: the Airflow connection id.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "generic"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        # The connection actually used (the id, or its fallback), once resolved.
        self.used_conn_id: str | None = None

    def _conn_chain(self) -> list[str]:
        chain, conn_id = [], self.mlflow_conn_id
        while conn_id:
            chain.append(conn_id)
            conn_id = FALLBACK_CONN_IDS.get(conn_id)
        return chain

    def _find_connection(self) -> Any | None:
        """The first defined connection of this hook's id and its fallbacks; None when none is."""
        conn_id = self.mlflow_conn_id
        while conn_id:
            try:
                conn = self.get_connection(conn_id)
            except AirflowNotFoundException:
                conn_id = FALLBACK_CONN_IDS.get(conn_id)
                continue
            self.used_conn_id = conn_id
            return conn
        return None

    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self._find_connection()
        if conn is None:
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                tried = " or ".join(repr(c) for c in self._conn_chain())
                raise AirflowException(
                    f"No Airflow connection {tried} and MLFLOW_TRACKING_URI is not "
                    "set: tell the project where MLflow is"
                ) from None
            return {"tracking_uri": uri, "registry_uri": None, "artifact_location": None, "login": None, "password": None}
        host = (conn.host or "").strip()
        if not host:
            raise AirflowException(f"Airflow connection {self.used_conn_id!r} has no host (the tracking URI)")
        if "@" in host.split("://", 1)[-1].split("/", 1)[0]:
            # The tracking URI is logged and handed to other tasks: a password in it would leak.
            raise AirflowException(
                f"Airflow connection {self.used_conn_id!r}: put the MLflow user and password in the "
                "connection's login and password fields, not in the host"
            )
        if "://" not in host:
            port = f":{conn.port}" if conn.port else ""
            host = f"{conn.schema or 'http'}://{host}{port}"
        extra = conn.extra_dejson or {}
        return {
            "tracking_uri": host,
            "registry_uri": extra.get("registry_uri"),
            "artifact_location": extra.get("artifact_location"),
            "login": conn.login,
            "password": conn.password,
        }

    @property
    def tracking_uri(self) -> str:
        return self._settings["tracking_uri"]

    @property
    def artifact_location(self) -> str | None:
        return self._settings["artifact_location"]

    @property
    def mlflow_identity(self) -> "MlflowIdentity":
        """The MLflow account of the connection (no login when it has none)."""
        from mlflow_governance.identity import MlflowIdentity

        settings = self._settings
        return MlflowIdentity(
            source=self.used_conn_id or "MLFLOW_TRACKING_URI",
            username=settings["login"] or None,
            password=settings["password"] or "",
        )

    @contextmanager
    def identity(self) -> Iterator[None]:
        """Run every MLflow call of the block (fluent API included) as the connection's account.

        Scoped to the calling thread or asyncio task and to the block: nothing is left in the
        process environment for another task to inherit.
        """
        from mlflow_governance.identity import acting_as

        with acting_as(self.mlflow_identity):
            yield

    def get_conn(self) -> "IdentityClient":
        """Return an MlflowClient for the connection whose every call runs as its account."""
        from mlflow_governance.identity import IdentityClient

        settings = self._settings
        return IdentityClient(
            self.mlflow_identity, tracking_uri=settings["tracking_uri"], registry_uri=settings["registry_uri"]
        )


def runs_as_connection_identity(method: _Method) -> _Method:
    """Run an operator method inside ``self.hook.identity()``.

    For the MLflow calls a step makes besides its client's, e.g. the artifact listing and
    downloads of registration and validation (``mlflow.artifacts`` with the client's URI).
    """

    @functools.wraps(method)
    def as_connection_identity(self, *args: Any, **kwargs: Any) -> Any:
        with self.hook.identity():
            return method(self, *args, **kwargs)

    return as_connection_identity  # type: ignore[return-value]
