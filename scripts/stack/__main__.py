"""The compose stack as local processes: ``python -m scripts.stack up|down|restart|status``.

    make stack                     # up, with .env (or a generated .local/stack/stack.env)
    make stack-down                # stop every process the stack started (data kept)
    python -m scripts.stack up --profile celery --scale airflow-worker=2
    python -m scripts.stack restart mlflow [--kill]
    python -m scripts.stack exec airflow-scheduler -- airflow users list
    python -m scripts.stack down --purge          # also delete the stack's data

Exit codes: 0 done, 1 a service failed (its log tail is printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.stack import envfile, processes
from scripts.stack.compose import ComposeError, env_file_values
from scripts.stack.postgres import PostgresError
from scripts.stack.runner import STATE_FILE, Stack, StackError

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = PROJECT_DIR / ".local" / "stack"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (a timeout, a closed terminal) unwinds like Ctrl-C: a half-started stack is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state_dir = Path(args.state_dir).resolve()
    try:
        if args.action == "up":
            return _up(args, state_dir)
        stack = _existing(state_dir)
        if args.action == "down":
            forced = stack.down() if stack else []
            if forced:
                print(f"stopped by SIGKILL: {', '.join(forced)}")
            if args.purge:
                shutil.rmtree(state_dir, ignore_errors=True)
            print("stack stopped" + (" and its data deleted" if args.purge else f" (data kept in {state_dir})"))
            return 0
        if stack is None:
            print(f"no stack in {state_dir}: run `make stack` first", file=sys.stderr)
            return 2
        if args.action == "restart":
            seconds = stack.restart(args.service, crash=args.kill)
            print(f"{args.service} healthy again after {seconds:.1f} s")
            return 0
        if args.action == "kill":
            print(f"{args.service}: SIGKILL to {len(stack.kill(args.service))} process(es)")
            return 0
        if args.action == "exec":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            env = stack.service_env(args.service)
            local = stack.services[args.service]
            return subprocess.run(command, env=env, cwd=local.cwd, check=False).returncode
        print(json.dumps(stack._read_state(), indent=2))
        return 0
    except (StackError, ComposeError, PostgresError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace, state_dir: Path) -> int:
    existing = _existing(state_dir)
    if existing and any(processes.alive(e["pid"]) for e in existing._read_state()["services"].values() if e.get("pid")):
        print(f"a stack already runs from {state_dir}: `make stack-down` first", file=sys.stderr)
        return 2
    env_file = Path(args.env_file) if args.env_file else _default_env_file(state_dir)
    if not env_file.exists():
        print(f"no env file {env_file}", file=sys.stderr)
        return 2
    scale = dict(_scale(item) for item in args.scale)
    stack = Stack(PROJECT_DIR, state_dir, env_file.resolve(), profiles=args.profile, scale=scale,
                  use_published=not args.free_ports)
    started = time.monotonic()
    try:
        stack.up(timeout=args.timeout)
    except BaseException:
        # Nothing half-started is left behind.
        stack.down()
        raise
    print(_summary(stack, env_file, time.monotonic() - started))
    return 0


def _existing(state_dir: Path) -> Stack | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    return Stack(PROJECT_DIR, state_dir, Path(state["env_file"]), profiles=state["profiles"], scale=state["scale"])


def _default_env_file(state_dir: Path) -> Path:
    """.env when the user made one; else a generated one, kept for the next up."""
    if (PROJECT_DIR / ".env").exists():
        return PROJECT_DIR / ".env"
    generated = state_dir / "stack.env"
    if not generated.exists():
        envfile.generate(PROJECT_DIR / ".env.example", generated)
        print(f"generated {generated} (secrets for this stack; mode 0600)")
    return generated


def _scale(item: str) -> tuple[str, int]:
    name, sep, count = item.partition("=")
    if not sep or not count.isdigit() or int(count) < 1:
        raise SystemExit(f"--scale {item!r}: expected SERVICE=N with N >= 1")
    return name, int(count)


def _summary(stack: Stack, env_file: Path, seconds: float) -> str:
    env = env_file_values(env_file)
    lines = [f"stack up in {seconds:.0f} s (state and logs: {stack.state_dir})", ""]
    urls = {"airflow-apiserver": (8080, "Airflow", env.get("AIRFLOW_ADMIN_USERNAME")),
            "mlflow": (5000, "MLflow", env.get("MLFLOW_ADMIN_USERNAME"))}
    for service, (port, label, user) in urls.items():
        if service in stack.services:
            lines.append(f"{label:<8} http://127.0.0.1:{stack.ports.host_port(service, port)}  user {user}, password in {env_file}")
    lines += ["", "service                  port(s) here  (container port)"]
    for name, local in stack.services.items():
        ports = ", ".join(f"{host} ({container})" for container, host in sorted(local.ports.items()))
        lines.append(f"  {name:<22} {ports or '-'}{'  one-shot' if local.one_shot else ''}")
    lines.append("\nstop with `make stack-down`")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="where data, logs and state live")
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start every service of docker-compose.yaml")
    up.add_argument("--env-file", help=".env to resolve the compose file with (default: .env, else a generated one)")
    up.add_argument("--profile", action="append", default=[], help="compose profile to enable (e.g. celery)")
    up.add_argument("--scale", action="append", default=[], metavar="SERVICE=N", help="replicas of a service")
    up.add_argument("--free-ports", action="store_true", help="free ports everywhere, not the published 8080/5000")
    up.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for every service")
    down = actions.add_parser("down", help="stop every process the stack started")
    down.add_argument("--purge", action="store_true", help="also delete the stack's data (as `down -v`)")
    restart = actions.add_parser("restart", help="stop one service and start it again")
    restart.add_argument("service")
    restart.add_argument("--kill", action="store_true", help="crash it (SIGKILL to all its processes) instead of stopping it")
    kill = actions.add_parser("kill", help="crash one service: SIGKILL to all its processes")
    kill.add_argument("service")
    run = actions.add_parser("exec", help="run a command with a service's environment (as `docker compose exec`)")
    run.add_argument("service")
    run.add_argument("command", nargs=argparse.REMAINDER)
    actions.add_parser("status", help="the stack's ports, processes and logs (JSON)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
