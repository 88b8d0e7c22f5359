"""Everyday registry work in the reviewer CLI: list and search versions, describe, delete,
retain, and ``audit verify`` (changes made outside the project).

``include.governance.cli`` registers these parsers and commands; the helpers they share with
its other commands (client, audit trail, output, exit codes) are imported from it when a
command runs, so importing this module costs nothing at start-up.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable

from include.governance import lifecycle as lc

METRIC_FILTER_HELP = (
    "metric thresholds are applied to each page after the registry search (MLflow compares tags "
    "only as text), so a page may show fewer rows than --page-size; --limit reads on until enough match"
)


def _metric_minimum(value: str) -> tuple[str, float]:
    name, sep, number = value.partition("=")
    if not sep or name not in lc.EVIDENCE_METRICS:
        raise argparse.ArgumentTypeError(
            f"invalid metric filter {value!r} (METRIC=MIN, METRIC one of {', '.join(lc.EVIDENCE_METRICS)})")
    try:
        return name, float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid minimum {number!r} in {value!r} (a number)") from None


def _tag_equal(value: str) -> tuple[str, str]:
    key, sep, tag_value = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid tag filter {value!r} (KEY=VALUE)")
    return key, tag_value


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"invalid count {value!r} (an integer >= 0)")
    return int(value)


def _add_filters(sub: argparse.ArgumentParser) -> None:
    from include.governance import cli

    sub.add_argument("--status", choices=[s.value for s in lc.ApprovalStatus], help="approval status")
    sub.add_argument("--validation", choices=[s.value for s in lc.ValidationStatus], help="validation status")
    sub.add_argument("--min-metric", action="append", type=_metric_minimum, default=[], metavar="METRIC=MIN",
                     help="validation_<METRIC> at least MIN (repeatable)")
    for metric in lc.EVIDENCE_METRICS:
        sub.add_argument(f"--min-{metric.replace('_', '-')}", type=float, metavar="MIN", dest=f"min_{metric}",
                         help=argparse.SUPPRESS if metric != "accuracy" else "same as --min-metric accuracy=MIN "
                         "(--min-precision, --min-recall, --min-f1-score, --min-roc-auc likewise)")
    sub.add_argument("--page-size", type=cli._positive, default=100, help="versions per registry page (default 100)")
    paging = sub.add_mutually_exclusive_group()
    paging.add_argument("--page-token", help="continue from the next_page_token a previous page printed")
    paging.add_argument("--limit", type=cli._positive, help="the first N matching versions, reading pages as needed")


def add_registry_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Add this module's commands through cli's ``command(name, help)`` factory."""
    from include.governance import cli

    sub = command("versions", "every version of a model, newest first, paged and filtered")
    sub.description += f"; {METRIC_FILTER_HELP}"
    sub.add_argument("model", type=cli._model_name)
    _add_filters(sub)

    sub = command("search", "versions across models by tag, status or metric (one paged registry search)")
    sub.description += f"; {METRIC_FILTER_HELP}"
    sub.add_argument("--model", type=cli._model_name, help="only this model")
    sub.add_argument("--tag", action="append", type=_tag_equal, default=[], metavar="KEY=VALUE",
                     help="tag equals value (repeatable)")
    _add_filters(sub)

    sub = command("describe", "set the description of a registered model, or of one version (audited)")
    sub.add_argument("model", type=cli._model_name)
    sub.add_argument("version", type=cli._version, nargs="?", help="the version (default: the registered model)")
    sub.add_argument("--text", required=True, help="the description")
    sub.add_argument("--actor", required=True, type=cli._person, help="who sets it")

    sub = command("delete", "delete a version, guarded: never a governance alias, never one awaiting a "
                            "decision unless an approver forces it; audited with its evidence")
    sub.add_argument("model", type=cli._model_name)
    sub.add_argument("version", type=cli._version)
    sub.add_argument("--actor", required=True, type=cli._person, help="who deletes")
    sub.add_argument("--reason", required=True, type=cli._person, help="why")
    sub.add_argument("--force", action="store_true", help="delete a version awaiting a decision (approvers only)")
    sub.add_argument("--policy", metavar="PATH", help="governance policy YAML (its approvers list)")

    sub = command("retain", "keep the last N archived versions of a model, delete older ones (guarded, audited)")
    sub.add_argument("model", type=cli._model_name)
    sub.add_argument("--keep", required=True, type=_count, help="archived versions to keep")
    sub.add_argument("--actor", required=True, type=cli._person, help="who runs the retention")
    sub.add_argument("--dry-run", action="store_true", help="list what would be deleted; change nothing")
    sub.add_argument("--policy", metavar="PATH", help="governance policy YAML")


class _VerifyAction(argparse.Action):
    """``audit verify``: the positional word switches the command to ``audit verify``."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        if values == "verify":
            namespace.command = "audit verify"


def add_audit_verify(audit: argparse.ArgumentParser) -> None:
    """``audit verify [MODEL]`` on the existing ``audit`` parser (plain ``audit`` is unchanged)."""
    from include.governance import cli

    audit.add_argument("audit_action", nargs="?", choices=["verify"], action=_VerifyAction, metavar="verify",
                       help="compare the registry with the audit trail: alias moves, deletions and governance-tag "
                            "changes no audited step made (exit 1 when any is found)")
    audit.add_argument("verify_model", nargs="?", type=cli._model_name, metavar="MODEL",
                       help="with verify: only this model (default: every model in the audit trail)")


# ---- commands ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _audit_failure(state: str):
    """A failure to write the audit trail says what state the registry was left in (exit 4)."""
    import sqlalchemy.exc

    from include.governance import cli
    from include.governance.audit import AuditError

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, AuditError) as exc:
        raise cli.CliError(f"{state}, but writing the audit trail failed: {exc}", cli.EXIT_ERROR) from exc


def _query(args: argparse.Namespace):
    from include.governance.catalog import VersionFilter

    minimums = dict(args.min_metric)
    minimums.update({m: getattr(args, f"min_{m}") for m in lc.EVIDENCE_METRICS if getattr(args, f"min_{m}") is not None})
    return VersionFilter(approval_status=args.status, validation_status=args.validation,
                         min_metrics=minimums, tags=dict(getattr(args, "tag", []) or []))


def _list(args: argparse.Namespace, out, model_name: str | None) -> int:
    from include.governance import cli
    from include.governance.catalog import CatalogQueryError, format_age, list_versions

    try:
        page = list_versions(cli._client(args), model_name, _query(args), page_size=args.page_size,
                             page_token=args.page_token, limit=args.limit)
    except CatalogQueryError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None

    def text() -> str:
        if not page.rows:
            body = "No versions match."
        else:
            body = cli.table(
                [(r.model_name, r.version, " ".join(f"@{a}" for a in r.aliases) or None, r.validation_status,
                  r.approval_status, cli._metrics_text(r.metrics, lc.EVIDENCE_METRICS), r.submitted_by,
                  format_age(r.age_seconds())) for r in page.rows],
                ["MODEL", "VERSION", "ALIASES", "VALIDATION", "APPROVAL", "METRICS", "SUBMITTED BY", "AGE"])
        more = f"\nnext page: --page-token {page.next_page_token}" if page.next_page_token else ""
        return body + more

    out.emit(page.as_dict(), text)
    return cli.EXIT_OK


def cmd_versions(args: argparse.Namespace, out) -> int:
    _require_model(args)
    return _list(args, out, args.model)


def _require_model(args: argparse.Namespace) -> None:
    from include.governance import cli
    from include.governance.registry import VersionNotFound, require_model

    try:
        require_model(cli._client(args), args.model)
    except VersionNotFound as exc:
        raise cli.CliError(str(exc), cli.EXIT_NOT_FOUND) from None


def cmd_search(args: argparse.Namespace, out) -> int:
    return _list(args, out, args.model)


def cmd_describe(args: argparse.Namespace, out) -> int:
    from include.governance import cli
    from include.governance.audit import AuditContext
    from include.governance.registry import VersionNotFound
    from include.governance.steps.describe import DescriptionRefused, describe

    client = cli._client(args)
    trail = cli._trail(args, client)  # fails before the description changes when the table is unusable
    where = f"{args.model} v{args.version}" if args.version else f"model {args.model}"
    try:
        with _audit_failure(f"the description of {where} may be set"):
            previous = describe(client, None, trail, AuditContext(actor=args.actor, source="cli"),
                                args.model, args.version, text=args.text)
    except DescriptionRefused as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    except VersionNotFound as exc:
        raise cli.CliError(str(exc), cli.EXIT_NOT_FOUND) from None
    out.emit({"model_name": args.model, "version": args.version, "description": args.text.strip(),
              "previous": previous, "actor": args.actor},
             lambda: f"description of {where} set by {args.actor}")
    return cli.EXIT_OK


def cmd_delete(args: argparse.Namespace, out) -> int:
    from include.governance import cli
    from include.governance.audit import AuditContext
    from include.governance.registry import VersionNotFound
    from include.governance.steps.delete import DeleteRefused, delete_version

    client = cli._client(args)
    policy = cli._policy(args.policy)
    cli._require(client, args.model, args.version)
    trail = cli._trail(args, client)  # the evidence is audited before the version goes
    try:
        with _audit_failure(f"{args.model} v{args.version} was not deleted"):
            deleted = delete_version(client, policy, trail, AuditContext(actor=args.actor, source="cli"),
                                     args.model, args.version, reason=args.reason, force=args.force)
    except DeleteRefused as exc:
        raise cli.CliError(str(exc), cli.EXIT_REFUSED) from None
    except VersionNotFound as exc:
        raise cli.CliError(str(exc), cli.EXIT_NOT_FOUND) from None
    out.emit({**deleted.as_dict(), "actor": args.actor, "reason": args.reason},
             lambda: f"{args.model} v{args.version} deleted by {args.actor}" + (" (forced)" if deleted.forced else ""))
    return cli.EXIT_OK


def cmd_retain(args: argparse.Namespace, out) -> int:
    from include.governance import cli
    from include.governance.audit import AuditContext
    from include.governance.retention import apply_retention, plan_retention

    client = cli._client(args)
    policy = cli._policy(args.policy)
    _require_model(args)
    plan = plan_retention(client, args.model, args.keep)
    if args.dry_run:
        out.emit({**plan.as_dict(), "dry_run": True}, lambda: _retention_text(plan, None))
        return cli.EXIT_OK
    trail = cli._trail(args, client)
    with _audit_failure(f"some archived versions of {args.model} may be deleted"):
        result = apply_retention(client, policy, trail, AuditContext(actor=args.actor, source="cli"), plan)
    out.emit(result.as_dict(), lambda: _retention_text(plan, result))
    return cli.EXIT_REFUSED if result.refused else cli.EXIT_OK


def _retention_text(plan, result) -> str:
    versions = lambda vs: ", ".join(f"v{v}" for v in vs) or "none"  # noqa: E731
    lines = [f"{plan.model_name}: keep the last {plan.keep} archived versions",
             f"  kept:      {versions(plan.kept)}",
             f"  protected: {versions(plan.protected)} (hold a governance alias)"]
    if result is None:
        lines.append(f"  would delete: {versions(plan.to_delete)} (dry run: nothing changed)")
    else:
        lines.append(f"  deleted:   {versions(result.deleted)}")
        lines += [f"  refused:   v{v}: {why}" for v, why in result.refused.items()]
    return "\n".join(lines)


def cmd_audit_verify(args: argparse.Namespace, out) -> int:
    from include.governance import cli
    from include.governance.drift import verify

    found = verify(cli._client(args), cli._audit_log(args, must_exist=True), args.verify_model or args.model)

    def text() -> str:
        if not found:
            return "No drift: the registry is as the audit trail left it."
        rows = [(d.model_name, d.kind, d.subject, d.expected, d.actual, cli._when(d.last_right_at), d.last_event)
                for d in found]
        lines = [cli.table(rows, ["MODEL", "DRIFT", "WHAT", "AUDITED", "REGISTRY", "LAST RIGHT (UTC)", "LAST EVENT"])]
        lines += ["", "to restore the audited state:"] + [f"  {d.subject}: {d.restore}" for d in found]
        return "\n".join(lines)

    out.emit({"drift": [d.as_dict() for d in found]}, text)
    return cli.EXIT_REFUSED if found else cli.EXIT_OK


REGISTRY_COMMANDS: dict[str, Callable[[argparse.Namespace, object], int]] = {
    "versions": cmd_versions,
    "search": cmd_search,
    "describe": cmd_describe,
    "delete": cmd_delete,
    "retain": cmd_retain,
    "audit verify": cmd_audit_verify,
}
