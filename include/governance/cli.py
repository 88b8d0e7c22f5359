"""The reviewer's command line: see what waits, compare, trace, decide, roll back, audit.

Run ``python -m include.governance --help``. Every command works on the MLflow registry the
DAGs use (``--tracking-uri`` or ``MLFLOW_TRACKING_URI``) and, where it records or reads events,
on the audit table (``--audit-db`` or the same rules as the Airflow tasks). Decisions go through
the same functions as the other channels, so they end in the same version tags and audit rows.
"""

from __future__ import annotations

import argparse
import json
import os
import contextlib
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from include.governance.cli_registry import REGISTRY_COMMANDS, add_audit_verify, add_registry_commands

PROG = "python -m include.governance"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ERROR = 4

EPILOG = f"""\
exit codes:
  {EXIT_OK}  done
  {EXIT_REFUSED}  refused by the governance policy or the registry's state (separation of duties,
     approver not allowed, not validated, stale decision, version not eligible for rollback,
     a guarded delete); nothing was changed. `audit verify`: drift found; `retain`: some
     version was refused by the delete guard (the others were deleted)
  {EXIT_USAGE}  usage error (bad arguments, no tracking URI, unreadable policy file)
  {EXIT_NOT_FOUND}  not found (model, version, or the audit database)
  {EXIT_ERROR}  operational error (MLflow or the audit database unreachable, unexpected failure)

where things are:
  MLflow       --tracking-uri, else $MLFLOW_TRACKING_URI; there is no silent default, so a
               decision is never recorded in the wrong registry (`make review ARGS=...` passes
               the demo's store under .local/).
  audit table  --audit-db (URL or SQLite file), else the Airflow connection audit_db (type
               postgres) found as Airflow finds it: $AIRFLOW_CONN_AUDIT_DB, a secrets backend,
               the metastore (only the variable where Airflow is not installed), else
               $MOVIE_RECOMMENDER_AUDIT_DB, else $AIRFLOW_HOME/governance_audit.db (~/airflow
               when unset): the rules the DAG tasks follow, so both see the same table. A
               configured audit database that cannot be used fails the command (exit 4) before
               anything is changed; it is never replaced by a local file.

examples:
  {PROG} pending
  {PROG} approve movie_recommender 7 --reviewer alice --notes "checked the holdout report"
  {PROG} audit --model movie_recommender --version 7     # who put v7 in production, on what evidence
  {PROG} history movie_recommender
  {PROG} rollback movie_recommender --actor bob --reason "CTR dropped after v7"
"""


class CliError(Exception):
    """A failure with a message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ---- argument types ---------------------------------------------------------------------

def _model_name(value: str) -> str:
    from include.governance.names import InvalidName, check_model_name

    try:
        return check_model_name(value)
    except InvalidName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version(value: str) -> str:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"invalid version {value!r} (a positive integer)")
    return str(int(value))


def _person(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value.strip()


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"invalid count {value!r}")
    return int(value)


# ---- the parser ---------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options, accepted before or after the command (top level sets defaults)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--tracking-uri", default=default, metavar="URI",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument("--audit-db", default=default, metavar="URL_OR_PATH",
                        help="audit database: SQLAlchemy URL or SQLite file (default: see below)")
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print JSON for scripts instead of tables")


def _add_decision_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The commands that change the registry: approve, reject, rollback."""
    for name, verb in (("approve", "approve"), ("reject", "reject")):
        sub = command(name, f"{verb} a waiting version as a reviewer (policy rules apply)")
        sub.add_argument("model", type=_model_name)
        sub.add_argument("version", type=_version)
        sub.add_argument("--reviewer", required=True, type=_person, help="your user name (approved_by)")
        sub.add_argument("--notes", help="why (approval_notes)")
        sub.add_argument("--policy", metavar="PATH", help="governance policy YAML (default: the packaged one)")

    sub = command("rollback", "move @champion back to a version that served before")
    sub.add_argument("model", type=_model_name)
    sub.add_argument("--to", dest="to_version", type=_version, metavar="VERSION",
                     help="version to restore (default: @previous_champion)")
    sub.add_argument("--actor", required=True, type=_person, help="who rolls back")
    sub.add_argument("--reason", required=True, type=_person, help="why")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Review, decide on and audit model versions in the MLflow Model Registry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(sub, top=False)
        return sub

    sub = command("pending", "versions awaiting a decision, across models (one registry search)")
    sub.add_argument("--model", type=_model_name, help="only this model")

    sub = command("show", "one version: evidence, decisions, aliases")
    sub.add_argument("model", type=_model_name)
    sub.add_argument("version", type=_version)

    sub = command("compare", "metrics and params of two versions side by side")
    sub.add_argument("model", type=_model_name)
    sub.add_argument("version_a", type=_version, metavar="A")
    sub.add_argument("version_b", type=_version, metavar="B")

    sub = command("lineage", "where a version came from (run, experiment, data, DAG run), its aliases, "
                  "the champion succession around it and its evidence files")
    sub.add_argument("model", type=_model_name)
    sub.add_argument("version", type=_version)

    _add_decision_commands(command)

    sub = command("audit", "events from the audit table, oldest first")
    sub.add_argument("--model", type=_model_name)
    sub.add_argument("--version", type=_version, help="needs --model")
    sub.add_argument("--event", action="append", metavar="TYPE",
                     help="only these event types (repeatable): registered, validated, approval_requested, "
                          "approved, rejected, expired, promoted, archived, rolled_back")
    sub.add_argument("--limit", type=_positive, help="only the last N events")
    add_audit_verify(sub)

    sub = command("history", "the champion's succession (promotions and rollbacks)")
    sub.add_argument("model", type=_model_name)
    add_registry_commands(command)
    return parser


# ---- resources ----------------------------------------------------------------------------


def _client(args: argparse.Namespace):
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise CliError("no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI", EXIT_USAGE)
    if uri.startswith("sqlite:///"):
        # MLflow would create an empty store at a mistyped path and show nothing.
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.exists():
            raise CliError(f"no MLflow database at {path} (from tracking URI {uri})", EXIT_USAGE)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _audit_location(args: argparse.Namespace):
    """Where the audit table is, by the rules of include.governance.audit_db."""
    from include.governance.audit import AuditError
    from include.governance.audit_db import find_airflow_connection, resolve_audit_location

    try:
        connection = None if args.audit_db else find_airflow_connection()
        return resolve_audit_location(args.audit_db, connection=connection)
    except AuditError as exc:
        raise CliError(f"{exc}. Nothing was changed (no fallback to a local audit file)", EXIT_ERROR) from None


def _audit_log(args: argparse.Namespace, *, must_exist: bool):
    """The audit table, checked usable; a configured one that is not fails the command."""
    import sqlalchemy.exc

    from include.governance.audit import AuditLog

    location = _audit_location(args)
    if location.url.startswith("sqlite:///") and must_exist:
        path = Path(location.url.removeprefix("sqlite:///"))
        if not path.exists():
            raise CliError(
                f"no audit database at {path} (from {location.setting}; nothing recorded there yet; see --audit-db)",
                EXIT_NOT_FOUND,
            )
    log = AuditLog(location.url)
    try:
        log.ensure_schema()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise CliError(
            f"the audit database of {location.describe()} cannot be used: {_database_reason(exc)}. Nothing was changed; "
            f"fix {location.setting} (no fallback to a local audit file)",
            EXIT_ERROR,
        ) from None
    return log


def _database_reason(exc: Exception) -> str:
    """The driver's first line (SQLAlchemy's wrapper adds the statement and a link)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _trail(args: argparse.Namespace, client):
    """The audit trail of a write command, checked before the registry is changed."""
    from include.governance.audit import AuditTrail

    return AuditTrail(_audit_log(args, must_exist=False), client)


def _policy(path: str | None):
    from include.governance.policy import GovernancePolicy, PolicyError

    try:
        return GovernancePolicy.load(path)
    except PolicyError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _require(client, model: str, version: str):
    from include.governance.registry import VersionNotFound, require_version

    try:
        return require_version(client, model, version)
    except VersionNotFound as exc:
        raise CliError(str(exc), EXIT_NOT_FOUND) from None


# ---- output -------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows as aligned text columns under a header line."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("\n", " ")


def _metrics_text(metrics: dict[str, float], names: Sequence[str] = ("accuracy", "precision", "recall", "improvement")) -> str:
    shown = [f"{name}={metrics[name]:+.4f}" if name == "improvement" else f"{name}={metrics[name]:.4f}"
             for name in names if name in metrics]
    return " ".join(shown) or "-"


def _when(value: Any) -> str:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value) if value else "-"


class Output:
    """Prints either human text or one JSON document."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # Taken before the command runs: while it runs, anything else printed goes to stderr.
        self.stream = sys.stdout

    def emit(self, data: Any, text: Callable[[], str]) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, default=str), file=self.stream)
        else:
            print(text(), file=self.stream)


# ---- commands -----------------------------------------------------------------------------


def cmd_pending(args: argparse.Namespace, out: Output) -> int:
    from include.governance.approval import pending_versions

    waiting = pending_versions(_client(args), args.model)

    def text() -> str:
        if not waiting:
            return "No versions await a decision."
        rows = [
            (p.model_name, p.version, p.status, p.submitted_by, p.requested_at,
             _metrics_text(p.evidence), "yes" if p.is_candidate else f"no (@challenger={p.challenger or '-'})",
             p.reason)
            for p in waiting
        ]
        return table(rows, ["MODEL", "VERSION", "STATUS", "SUBMITTED BY", "REQUESTED AT", "EVIDENCE", "CANDIDATE", "REASON"])

    out.emit([p.as_dict() for p in waiting], text)
    return EXIT_OK


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    from include.governance.summary import format_summary, version_summary

    client = _client(args)
    _require(client, args.model, args.version)
    summary = version_summary(client, args.model, args.version)
    out.emit(summary, lambda: format_summary(summary))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, out: Output) -> int:
    from include.governance.summary import compare_versions

    client = _client(args)
    for version in (args.version_a, args.version_b):
        _require(client, args.model, version)
    comparison = compare_versions(client, args.model, args.version_a, args.version_b)

    def text() -> str:
        a, b = comparison["version1"], comparison["version2"]
        label_a = f"v{a['version']}" + "".join(f" @{x}" for x in a["aliases"])
        label_b = f"v{b['version']}" + "".join(f" @{x}" for x in b["aliases"])
        parts = [
            f"{comparison['model_name']}: {label_a} vs {label_b}",
            "",
            table([(r["name"], r["a"], r["b"], None if r["diff"] is None else f"{r['diff']:+.4f}")
                   for r in comparison["metrics"]], ["METRIC", label_a, label_b, "B - A"]),
            "",
            table([(("* " if r["differs"] else "  ") + r["name"], r["a"], r["b"]) for r in comparison["params"]],
                  ["PARAM (* differs)", label_a, label_b]),
        ]
        if comparison["serving"]:
            parts += ["", table([(r["name"], r["a"], r["b"], None if r["diff"] is None else f"{r['diff']:+.4g}")
                                 for r in comparison["serving"]], ["SERVING", label_a, label_b, "B - A"])]
        if "performance_diff" in comparison:
            diff = comparison["performance_diff"]
            parts += ["", f"accuracy: {diff['accuracy_improvement']:+.4f} (better: v{diff['better_model']})"]
        return "\n".join(parts)

    out.emit(comparison, text)
    return EXIT_OK


def cmd_lineage(args: argparse.Namespace, out: Output) -> int:
    from include.governance.lineage import lineage_rows, version_lineage

    client = _client(args)
    _require(client, args.model, args.version)
    try:
        log = _audit_log(args, must_exist=True)
    except CliError as exc:
        if exc.code != EXIT_NOT_FOUND:
            raise
        log = None  # nothing audited yet: the rest of the lineage still stands
    lineage = version_lineage(client, log, args.model, args.version)
    out.emit(lineage, lambda: table(lineage_rows(lineage), ["FIELD", "VALUE"]))
    return EXIT_OK


def _decide(args: argparse.Namespace, out: Output, *, approve: bool) -> int:
    from include.governance.approval import ApprovalError
    from include.governance.audit import AuditContext
    from include.governance.steps import record_review

    client = _client(args)
    policy = _policy(args.policy)
    _require(client, args.model, args.version)
    trail = _trail(args, client)  # fails before the decision is written when the table is unusable
    try:
        with _audit_failure(f"the decision may be recorded on {args.model} v{args.version}"):
            record_review(
                client, policy, trail, AuditContext(actor=args.reviewer, source="cli"), args.model, args.version,
                approve=approve, reviewer=args.reviewer, notes=args.notes,
            )
    except ApprovalError as exc:
        raise CliError(str(exc), EXIT_REFUSED) from None
    verb = "approved" if approve else "rejected"
    out.emit(
        {"model_name": args.model, "version": args.version, "status": verb, "reviewer": args.reviewer},
        lambda: f"{args.model} v{args.version} {verb} by {args.reviewer}"
        + (" (a waiting DAG run promotes it within its poke interval)" if approve else ""),
    )
    return EXIT_OK


@contextlib.contextmanager
def _audit_failure(done: str):
    """A failure to write the audit trail of a change the step made says that the change stands."""
    import sqlalchemy.exc

    from include.governance.audit import AuditError

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, AuditError) as exc:
        raise CliError(f"{done}, but writing the audit trail failed: {exc}", EXIT_ERROR) from exc


def cmd_approve(args: argparse.Namespace, out: Output) -> int:
    return _decide(args, out, approve=True)


def cmd_reject(args: argparse.Namespace, out: Output) -> int:
    return _decide(args, out, approve=False)


def cmd_rollback(args: argparse.Namespace, out: Output) -> int:
    from include.governance.audit import AuditContext
    from include.governance.registry import VersionNotFound
    from include.governance.rollback import RollbackRefused
    from include.governance.steps import plan_rollback, rollback

    client = _client(args)
    trail = _trail(args, client)  # fails before @champion moves when the table is unusable
    try:
        plan = plan_rollback(client, args.model, args.to_version)
        with _audit_failure(f"@champion of {args.model} may have moved"):
            result = rollback(client, None, trail, AuditContext(actor=args.actor, source="cli"), plan, reason=args.reason)
    except RollbackRefused as exc:
        raise CliError(str(exc), EXIT_REFUSED) from None
    except VersionNotFound as exc:
        raise CliError(str(exc), EXIT_NOT_FOUND) from None
    out.emit(
        {**result.as_xcom(), "actor": args.actor, "reason": args.reason},
        lambda: f"{args.model}: @champion is v{result.champion} again (was v{result.rolled_back_from}; "
        f"@previous_champion -> v{result.rolled_back_from})",
    )
    return EXIT_OK


def _event_rows(events) -> list[tuple]:
    rows = []
    for e in events:
        move = f"{e.from_alias or '-'} -> {e.to_alias}" if e.to_alias else "-"
        dag_run = f"{e.dag_id}/{e.dag_run_id}" if e.dag_id else e.source
        rows.append((e.id, _when(e.occurred_at), e.model_name, e.version, e.event.value, e.actor, move,
                     _metrics_text(dict(e.metrics)), dag_run, e.reason))
    return rows


def cmd_audit(args: argparse.Namespace, out: Output) -> int:
    from include.governance.audit import EventType

    if args.version and not args.model:
        raise CliError("--version needs --model", EXIT_USAGE)
    try:
        kinds = [EventType(kind) for kind in args.event] if args.event else None
    except ValueError as exc:
        raise CliError(f"{exc}; known: {', '.join(k.value for k in EventType)}", EXIT_USAGE) from None
    events = _audit_log(args, must_exist=True).events(
        model_name=args.model, version=args.version, kinds=kinds, limit=args.limit
    )

    def text() -> str:
        if not events:
            return "No audit events match."
        return table(_event_rows(events),
                     ["ID", "WHEN (UTC)", "MODEL", "VERSION", "EVENT", "ACTOR", "ALIAS", "EVIDENCE", "DAG RUN", "REASON"])

    out.emit([e.to_dict() for e in events], text)
    return EXIT_OK


def cmd_history(args: argparse.Namespace, out: Output) -> int:
    events = _audit_log(args, must_exist=True).champion_history(args.model)

    def text() -> str:
        if not events:
            return f"No promotion or rollback of {args.model} is recorded."
        rows = [
            (_when(e.occurred_at), f"v{e.version}", e.event.value,
             f"v{e.counterpart_version}" if e.counterpart_version else "-", e.actor,
             e.details.get("approved_by", "-"), _metrics_text(dict(e.metrics)),
             f"{e.dag_id}/{e.dag_run_id}" if e.dag_id else e.source, e.reason)
            for e in events
        ]
        lines = [table(rows, ["WHEN (UTC)", "CHAMPION", "HOW", "REPLACED", "BY", "APPROVED BY", "EVIDENCE", "DAG RUN", "REASON"])]
        lines.append(f"\nLast recorded champion: v{events[-1].version}")
        return "\n".join(lines)

    out.emit([e.to_dict() for e in events], text)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "pending": cmd_pending,
    "show": cmd_show,
    "compare": cmd_compare,
    "lineage": cmd_lineage,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "rollback": cmd_rollback,
    "audit": cmd_audit,
    "history": cmd_history,
    **REGISTRY_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (argparse exits with 2 on bad usage).

    :param argv: the arguments (``sys.argv[1:]`` when None).
    """
    args = build_parser().parse_args(argv)
    out = Output(args.json)
    try:
        # Libraries log to stdout (Airflow's logging setup, imported to find audit_db): keep
        # stdout for the command's own output, so --json prints one JSON document.
        with contextlib.redirect_stdout(sys.stderr):
            return COMMANDS[args.command](args, out)
    except CliError as exc:
        return _fail(out, str(exc), exc.code)
    except Exception as exc:  # noqa: BLE001 - reported in full and mapped to an exit code, never hidden
        return _fail(out, *_classify(exc))


def _classify(exc: Exception) -> tuple[str, int]:
    """The message and exit code for an error no command handled."""
    import sqlalchemy.exc

    from include.governance.audit import AuditError

    if isinstance(exc, LookupError):
        return str(exc), EXIT_NOT_FOUND
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # mlflow missing: nothing below applies
        MlflowException = ()  # noqa: N806
    if MlflowException and isinstance(exc, MlflowException):
        from include.governance.registry import is_not_found

        if is_not_found(exc):
            return exc.message, EXIT_NOT_FOUND
        return f"MLflow: {exc.message}", EXIT_ERROR
    if isinstance(exc, (sqlalchemy.exc.SQLAlchemyError, AuditError)):
        return f"audit database: {exc}", EXIT_ERROR
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}", EXIT_ERROR
    traceback.print_exception(exc, file=sys.stderr)
    return f"unexpected {type(exc).__name__}: {exc}", EXIT_ERROR


def _fail(out: Output, message: str, code: int) -> int:
    labels = {EXIT_REFUSED: "refused", EXIT_USAGE: "usage error", EXIT_NOT_FOUND: "not found", EXIT_ERROR: "error"}
    print(f"{PROG}: {labels.get(code, 'error')}: {message}", file=sys.stderr)
    if out.as_json:
        print(json.dumps({"error": message, "exit_code": code}), file=out.stream)
    return code
