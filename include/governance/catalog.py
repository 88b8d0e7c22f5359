"""Listing and searching model versions: one paged registry search, filters in the search.

Status filters (approval, validation, arbitrary tags) go into the search's filter string.
MLflow's version search compares tags as strings only (``=``, ``!=``, ``LIKE``, ``ILIKE``), so a
metric threshold (``validation_accuracy >= 0.8``) cannot be pushed down as a number: the search
only asks that the ``validation_<metric>`` tag exists, and the threshold is applied to the rows of
each page. A page may therefore hold fewer rows than its size; ``limit`` reads on until enough
rows match. Aliases come from one ``get_registered_model`` per model in the result (the search
returns none on SQL stores).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from include.governance import lifecycle as lc
from include.governance.audit import evidence_metrics
from include.governance.names import check_model_name
from include.governance.registry import is_not_found

DEFAULT_PAGE_SIZE = 100
# A safety bound on how many registry rows one ``limit`` query reads (metric filters are client-side).
MAX_SCANNED = 200_000


class CatalogQueryError(ValueError):
    """A filter that cannot be searched; the message names the bad value."""


@dataclass(frozen=True)
class VersionFilter:
    """What to keep: statuses and tags in the registry search, metric minimums on each page.

    :param approval_status: only versions with this ``approval_status`` tag.
    :param validation_status: only versions with this ``validation_status`` tag.
    :param min_metrics: ``{metric: minimum}`` on the ``validation_<metric>`` tags.
    :param tags: ``{tag: value}`` equalities.
    """

    approval_status: str | None = None
    validation_status: str | None = None
    min_metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("approval status", self.approval_status, [s.value for s in lc.ApprovalStatus])
        _check_choice("validation status", self.validation_status, [s.value for s in lc.ValidationStatus])
        for metric in self.min_metrics:
            _check_choice("metric", metric, list(lc.EVIDENCE_METRICS))
        for key, value in self.tags.items():
            _check_literal(f"tag name {key!r}", key)
            _check_literal(f"value of tag {key!r}", value)

    def registry_filter(self, model_name: str | None) -> str:
        """The search's filter string (empty for every version of every model)."""
        clauses = [f"name = '{check_model_name(model_name)}'"] if model_name else []
        if self.approval_status:
            clauses.append(f"tags.{lc.APPROVAL_STATUS} = '{self.approval_status}'")
        if self.validation_status:
            clauses.append(f"tags.{lc.VALIDATION_STATUS} = '{self.validation_status}'")
        clauses += [f"tags.`{key}` = '{value}'" for key, value in sorted(self.tags.items())]
        # The tag must exist; its numeric threshold is checked on the page (see the module doc).
        clauses += [f"tags.{lc.VALIDATION_METRIC_PREFIX}{m} LIKE '%'" for m in sorted(self.min_metrics)]
        return " AND ".join(clauses)

    def accepts(self, metrics: Mapping[str, float]) -> bool:
        """Whether a version's validation metrics meet every minimum."""
        return all(metrics.get(name, float("-inf")) >= floor for name, floor in self.min_metrics.items())


def _check_choice(what: str, value: str | None, allowed: list[str]) -> None:
    if value is not None and value not in allowed:
        raise CatalogQueryError(f"unknown {what} {value!r} (expected one of: {', '.join(allowed)})")


def _check_literal(what: str, value: str) -> None:
    if not value or any(c in value for c in "'\"`\\"):
        raise CatalogQueryError(f"{what} must be non-empty and hold no quotes or backslashes")


@dataclass(frozen=True)
class VersionRow:
    """One version as listed: lineage, statuses, evidence, aliases."""

    model_name: str
    version: str
    aliases: tuple[str, ...]
    validation_status: str | None
    approval_status: str | None
    metrics: dict[str, float]
    submitted_by: str | None
    created_at: datetime | None
    run_id: str | None
    description: str | None

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.created_at is None:
            return None
        return ((now or datetime.now(timezone.utc)) - self.created_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "aliases": list(self.aliases),
            "validation_status": self.validation_status,
            "approval_status": self.approval_status,
            "metrics": dict(self.metrics),
            "submitted_by": self.submitted_by,
            "created_at": self.created_at.isoformat(timespec="seconds") if self.created_at else None,
            "age_seconds": self.age_seconds(),
            "run_id": self.run_id,
            "description": self.description,
        }


@dataclass(frozen=True)
class VersionPage:
    """Rows of one query and the token of the next registry page (None at the end)."""

    rows: list[VersionRow]
    next_page_token: str | None
    scanned: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "versions": [row.as_dict() for row in self.rows],
            "next_page_token": self.next_page_token,
            "scanned": self.scanned,
        }


def list_versions(
    client: MlflowClient,
    model_name: str | None,
    query: VersionFilter,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: str | None = None,
    limit: int | None = None,
) -> VersionPage:
    """Versions newest first (by model name, then version, across models when no model is given).

    Without ``limit``: one registry page from ``page_token``. With ``limit``: pages are read from
    the start until ``limit`` rows match; no next token is returned when the last page was cut.

    :raises CatalogQueryError: a bad filter, or both ``limit`` and ``page_token``.
    """
    if limit is not None and page_token:
        raise CatalogQueryError("give either a limit or a page token, not both")
    if page_size < 1:
        raise CatalogQueryError(f"page size {page_size} must be at least 1")
    filter_string = query.registry_filter(model_name)
    order_by = ["version_number DESC"] if model_name else ["name ASC", "version_number DESC"]
    matched, scanned, token = [], 0, page_token
    while True:
        page = client.search_model_versions(
            filter_string=filter_string, max_results=page_size, order_by=order_by, page_token=token
        )
        scanned += len(page)
        matched += [mv for mv in page if query.accepts(evidence_metrics(mv.tags))]
        token = _text(page.token)
        if limit is None or not token or len(matched) >= limit or scanned >= MAX_SCANNED:
            break
    if limit is not None and len(matched) > limit:
        matched, token = matched[:limit], None
    aliases = _aliases_by_model(client, sorted({mv.name for mv in matched}))
    return VersionPage([_row(mv, aliases[mv.name]) for mv in matched], token, scanned)


def _text(token: str | bytes | None) -> str | None:
    """The page token as text (the SQL store hands out bytes), None at the end."""
    if isinstance(token, bytes):
        token = token.decode("ascii")
    return token or None


def _aliases_by_model(client: MlflowClient, model_names: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per model, ``{version: [alias, ...]}`` from one ``get_registered_model`` each."""
    found: dict[str, dict[str, list[str]]] = {}
    for name in model_names:
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if not is_not_found(exc):
                raise
            found[name] = {}  # deleted since the search
            continue
        by_version: dict[str, list[str]] = {}
        for alias, version in sorted((model.aliases or {}).items()):
            by_version.setdefault(str(version), []).append(alias)
        found[name] = by_version
    return found


def _row(mv: Any, aliases: Mapping[str, list[str]]) -> VersionRow:
    tags = mv.tags or {}
    created = getattr(mv, "creation_timestamp", None)
    return VersionRow(
        model_name=mv.name,
        version=str(mv.version),
        aliases=tuple(aliases.get(str(mv.version), ())),
        validation_status=tags.get(lc.VALIDATION_STATUS),
        approval_status=tags.get(lc.APPROVAL_STATUS),
        metrics={k: v for k, v in evidence_metrics(tags).items() if k in lc.EVIDENCE_METRICS},
        submitted_by=tags.get(lc.SUBMITTED_BY),
        created_at=datetime.fromtimestamp(created / 1000, tz=timezone.utc) if created else None,
        run_id=mv.run_id,
        description=mv.description or None,
    )


def format_age(seconds: float | None) -> str:
    """``3d 4h``, ``5h 2m``, ``7m``: how long ago, to the two largest units."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"
