"""Where the audit table lives: one rule set for the Airflow tasks and the reviewer CLI.

In order:

1. a location given explicitly (the CLI's ``--audit-db``: a SQLAlchemy URL or a SQLite file);
2. the Airflow connection ``audit_db`` (type postgres), found where Airflow keeps connections:
   the environment variable ``AIRFLOW_CONN_AUDIT_DB``, a configured secrets backend, the
   metastore. Tasks ask the task SDK (``mlflow_governance.audit``); the CLI asks Airflow's
   secrets backends (``find_airflow_connection``), or, without Airflow installed, reads
   ``AIRFLOW_CONN_AUDIT_DB`` itself;
3. the environment variable ``MOVIE_RECOMMENDER_AUDIT_DB`` (a URL or a SQLite file);
4. else the SQLite file ``$AIRFLOW_HOME/governance_audit.db`` (``~/airflow`` when unset).

Only the last rule is a fallback. A location that is configured but unusable (unreachable, of
the wrong type, or a lookup that failed) is an error, never a reason to audit somewhere else.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from include.governance.audit.errors import AuditError

AUDIT_CONN_ID = "audit_db"
AUDIT_DB_ENV = "MOVIE_RECOMMENDER_AUDIT_DB"
DEFAULT_AUDIT_FILE = "governance_audit.db"
DEFAULT_SETTING = f"the default file $AIRFLOW_HOME/{DEFAULT_AUDIT_FILE}"
_POSTGRES_TYPES = ("postgres", "postgresql")


@dataclass(frozen=True)
class AuditLocation:
    """The audit database and the setting that chose it (named in every error about it).

    :param url: its SQLAlchemy URL (may hold a password: never shown).
    :param setting: what configured it, e.g. ``Airflow connection 'audit_db'``.
    :param conn_id: the Airflow connection, when one configured it.
    """

    url: str = field(repr=False)
    setting: str
    conn_id: str | None = None

    @property
    def configured(self) -> bool:
        """False only for the default file, the one location nobody asked for."""
        return self.setting != DEFAULT_SETTING

    def describe(self) -> str:
        """The setting and the URL without its password."""
        return f"{self.setting} ({sa.engine.make_url(self.url).render_as_string(hide_password=True)})"


@dataclass(frozen=True)
class ConnectionFields:
    """The fields of an Airflow connection this module reads (Airflow's own objects have them too)."""

    conn_type: str | None
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None


def resolve_audit_location(
    explicit: str | None = None,
    *,
    connection: Any | None = None,
    conn_id: str = AUDIT_CONN_ID,
    environ: Mapping[str, str] | None = None,
    explicit_setting: str = "--audit-db",
) -> AuditLocation:
    """Apply the rules above to what the caller found.

    :param explicit: a location given on the command line.
    :param connection: the Airflow connection ``conn_id`` as looked up by the caller (None: not defined).
    :param conn_id: its id (named in messages).
    :param environ: the environment (``os.environ`` when None).
    :param explicit_setting: how the explicit location was given, for messages.
    """
    if explicit:
        return AuditLocation(_url_or_path(explicit), explicit_setting)
    if connection is not None:
        return AuditLocation(connection_url(connection, conn_id), f"Airflow connection {conn_id!r}", conn_id)
    return local_audit_location(environ)


def local_audit_location(environ: Mapping[str, str] | None = None) -> AuditLocation:
    """The audit database when no Airflow connection names one: the variable, else the default file."""
    environ = os.environ if environ is None else environ
    configured = environ.get(AUDIT_DB_ENV)
    if configured:
        return AuditLocation(_url_or_path(configured), AUDIT_DB_ENV)
    home = Path(environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()
    return AuditLocation(f"sqlite:///{(home / DEFAULT_AUDIT_FILE).resolve()}", DEFAULT_SETTING)


def _url_or_path(value: str) -> str:
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def connection_url(connection: Any, conn_id: str = AUDIT_CONN_ID) -> str:
    """The SQLAlchemy URL of an Airflow connection of type postgres.

    :param connection: an Airflow ``Connection`` (or ``ConnectionFields``).
    :param conn_id: its id, for the error message.
    """
    if connection.conn_type not in _POSTGRES_TYPES:
        raise AuditError(
            f"Airflow connection {conn_id!r} is of type {connection.conn_type!r}; the audit table needs a "
            f"postgres connection (or none: then {AUDIT_DB_ENV}, else {DEFAULT_SETTING})"
        )
    return sa.engine.URL.create(
        "postgresql",
        username=connection.login or None,
        password=connection.password or None,
        host=connection.host or None,
        port=int(connection.port) if connection.port else None,
        database=connection.schema or None,
    ).render_as_string(hide_password=False)


def connection_from_environment(conn_id: str = AUDIT_CONN_ID, environ: Mapping[str, str] | None = None) -> ConnectionFields | None:
    """The connection ``AIRFLOW_CONN_<ID>`` holds (URI or JSON, as Airflow reads it), or None.

    :param conn_id: the connection id.
    :param environ: the environment (``os.environ`` when None).
    """
    environ = os.environ if environ is None else environ
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = environ.get(name)
    if not value:
        return None
    if value.lstrip().startswith("{"):
        try:
            fields = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AuditError(f"{name} is not valid JSON: {exc}") from None
        return ConnectionFields(
            conn_type=fields.get("conn_type"),
            host=fields.get("host"),
            port=int(fields["port"]) if fields.get("port") else None,
            login=fields.get("login"),
            password=fields.get("password"),
            schema=fields.get("schema"),
        )
    split = urlsplit(value)
    return ConnectionFields(
        conn_type=split.scheme.replace("-", "_"),
        host=unquote(split.hostname) if split.hostname else None,
        port=split.port,
        login=unquote(split.username) if split.username else None,
        password=unquote(split.password) if split.password else None,
        schema=unquote(split.path.lstrip("/")) or None,
    )


def find_airflow_connection(conn_id: str = AUDIT_CONN_ID) -> Any | None:
    """The Airflow connection ``conn_id`` as Airflow finds it outside a task; None when undefined.

    Asks the secrets backends Airflow's ``Connection.get_connection_from_secrets`` asks, in its
    order (a configured backend, the environment, the metastore), but a backend that fails is an
    error, not skipped: Airflow would then answer "not defined" and the caller would audit into
    the fallback file. A metastore that was never migrated holds no connection ("not defined").
    Without Airflow installed, only ``AIRFLOW_CONN_<ID>`` is read.

    :param conn_id: the connection id.
    """
    if importlib.util.find_spec("airflow") is None:
        return connection_from_environment(conn_id)
    from airflow.configuration import ensure_secrets_loaded

    for backend in ensure_secrets_loaded():
        try:
            connection = backend.get_connection(conn_id=conn_id)
        except Exception as exc:  # noqa: BLE001 - any failure means "unknown", reported below
            if _is_unmigrated_metastore(backend):
                continue
            raise AuditError(
                f"cannot tell whether Airflow connection {conn_id!r} is defined: {type(backend).__name__} "
                f"failed ({_first_line(exc)}); check {_backend_setting(backend)}"
            ) from exc
        if connection is not None:
            return connection
    return None


def _is_unmigrated_metastore(backend: Any) -> bool:
    from airflow.secrets.metastore import MetastoreBackend

    if not isinstance(backend, MetastoreBackend):
        return False
    from airflow import settings

    try:
        return not sa.inspect(settings.get_engine()).has_table("connection")
    except Exception:  # noqa: BLE001 - an unreachable metastore is not an unmigrated one
        return False


def _backend_setting(backend: Any) -> str:
    from airflow.secrets.metastore import MetastoreBackend

    if isinstance(backend, MetastoreBackend):
        return "[database] sql_alchemy_conn"
    return f"the secrets backend ([secrets] backend = {type(backend).__module__}.{type(backend).__name__})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
