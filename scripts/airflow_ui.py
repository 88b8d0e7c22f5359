"""Start the Airflow UI on the embedded default: `make airflow-ui` runs this.

Prepares the state under the Makefile's AIRFLOW_HOME (metadata database, the `model_promotion`
pool, a per-checkout API secret, the users' passwords), then replaces itself with
`airflow standalone` (scheduler, API server, DAG processor, triggerer) in an environment every
component shares. The embedded default's own settings (AIRFLOW_HOME, AIRFLOW_CONFIG, the MLflow
connection, ...) come from the Makefile's exported environment; this adds only what a
multi-process Airflow needs on top of `airflow dags test`:

- PATH with the venv's bin first: standalone starts each component as `airflow ...` from PATH.
- one `[api_auth] jwt_secret` and `[api] secret_key` for every component (else each makes its
  own and tasks fail "Signature verification failed"), generated once into
  ``$AIRFLOW_HOME/airflow_ui_secrets.json`` (mode 0600, never printed).
- the API server's port and base URL (tasks reach the Execution API through it), one API worker
  and few parallel tasks (two processes writing SQLite at once already wait on each other), and
  log-server ports that are free.
- the simple auth manager's users (an admin and a reviewer by default, so someone other than
  the submitter can approve) with passwords in ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``.

Any AIRFLOW__SECTION__KEY already in the environment wins over these defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Set by the Makefile; without them this would run on someone else's Airflow home.
REQUIRED_ENV = ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "AIRFLOW_PROJECT_DIR", "AIRFLOW_CONN_MLFLOW_DEFAULT")
# Role "user" may trigger DAGs, answer Required Actions and clear tasks (the simple auth
# manager's USER role); "admin" may do everything. The triggering user may not approve its own run.
DEFAULT_USERS = "admin:admin,reviewer:user"
USERS_ENV = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
PASSWORDS_FILE_ENV = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
SECRETS_FILE = "airflow_ui_secrets.json"
PROMOTION_POOL = ("model_promotion", "1", "One move of @champion at a time")
# Airflow's own defaults for the scheduler's and triggerer's log servers.
DEFAULT_LOG_SERVER_PORTS = {"WORKER_LOG_SERVER_PORT": 8793, "TRIGGER_LOG_SERVER_PORT": 8794}
PREPARE_TIMEOUT_SECONDS = 600


class SetupError(RuntimeError):
    """The UI cannot start; the message says what to fix."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="the API server's (and UI's) port (default 8080)")
    args = parser.parse_args(argv)
    try:
        env = airflow_ui_environment(dict(os.environ), port=args.port)
        home = Path(env["AIRFLOW_HOME"])
        log_path = home.parent / "logs" / f"airflow-ui-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"Preparing {home} (log: {log_path})", flush=True)
        airflow_cli(env, log_path, "db", "migrate")
        airflow_cli(env, log_path, "pools", "set", *PROMOTION_POOL)
    except SetupError as exc:
        print(f"make airflow-ui: {exc}", file=sys.stderr)
        return 1
    users = [entry.split(":")[0] for entry in env[USERS_ENV].split(",") if entry.strip()]
    print(
        f"\nAirflow UI: {env['AIRFLOW__API__BASE_URL']}  (ready once the components report in; Ctrl-C stops all of them)\n"
        f"Users: {', '.join(users)}; passwords in {env[PASSWORDS_FILE_ENV]}\n",
        flush=True,
    )
    airflow = str(Path(sys.prefix) / "bin" / "airflow")
    os.execve(airflow, [airflow, "standalone"], env)


def airflow_ui_environment(base: dict[str, str], *, port: int) -> dict[str, str]:
    """The environment `airflow standalone` and every component it starts run in.

    :param base: the Makefile's environment.
    :param port: the API server's port.
    """
    missing = [name for name in REQUIRED_ENV if not base.get(name)]
    if missing:
        raise SetupError(f"{', '.join(missing)} not set: start it with `make airflow-ui`, which exports the embedded default")
    if not 0 < port < 65536:
        raise SetupError(f"AIRFLOW_UI_PORT={port} is not a TCP port")
    env = dict(base)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    # sys.prefix is the venv (not the interpreter it links to): its airflow, mlflow, python.
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "bin"), env.get("PATH")]))
    secret = load_or_create_secrets(home / SECRETS_FILE)
    env["AIRFLOW__API_AUTH__JWT_SECRET"] = secret["jwt_secret"]
    env["AIRFLOW__API__SECRET_KEY"] = secret["api_secret_key"]
    host = env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    env["AIRFLOW__API__PORT"] = str(port)
    # The Execution API URL tasks use defaults to {base_url}/execution/, else to port 8080.
    env.setdefault("AIRFLOW__API__BASE_URL", f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}")
    env.setdefault("AIRFLOW__API__WORKERS", "1")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    for key, default in DEFAULT_LOG_SERVER_PORTS.items():
        env.setdefault(f"AIRFLOW__LOGGING__{key}", str(default if port_is_free(default) else free_port()))
    env.setdefault(USERS_ENV, DEFAULT_USERS)
    env.setdefault(PASSWORDS_FILE_ENV, str(home / "simple_auth_manager_passwords.json.generated"))
    ensure_passwords(Path(env[PASSWORDS_FILE_ENV]), users_from(env[USERS_ENV]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """The checkout's API secrets, made on first use; readable by the owner only."""
    wanted = ("jwt_secret", "api_secret_key")
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SetupError(f"{path} is unreadable ({exc.__class__.__name__}); delete it to generate new secrets") from None
        if isinstance(stored, dict) and all(isinstance(stored.get(key), str) and stored[key] for key in wanted):
            path.chmod(0o600)
            return stored
        raise SetupError(f"{path} lacks {' or '.join(wanted)}; delete it to generate new secrets")
    created = {key: secrets.token_urlsafe(32) for key in wanted}
    _write_private(path, json.dumps(created) + "\n")
    return created


def users_from(setting: str) -> list[str]:
    """User names from ``[core] simple_auth_manager_users`` (``name:role[,name:role...]``)."""
    users = []
    for entry in filter(None, (part.strip() for part in setting.split(","))):
        name, _, role = entry.partition(":")
        if not name or not role:
            raise SetupError(f"{USERS_ENV}: {entry!r} is not name:role (roles: viewer, user, op, admin)")
        users.append(name)
    return users


def ensure_passwords(path: Path, users: list[str]) -> None:
    """Give every user a password in the simple auth manager's file; existing ones are kept.

    The API server would generate missing ones too, but it prints them to its log.
    """
    passwords: dict[str, str] = {}
    if path.exists():
        try:
            passwords = json.loads(path.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise SetupError(f"{path} is not JSON ({exc}); delete it to generate new passwords") from None
    missing = [user for user in users if user not in passwords]
    if missing or not path.exists():
        passwords.update({user: secrets.token_urlsafe(12) for user in missing})
        _write_private(path, json.dumps(passwords) + "\n")
    path.chmod(0o600)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    partial.replace(path)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_cli(env: dict[str, str], log_path: Path, *args: str) -> None:
    """Run one airflow command, its output appended to the log; a failure shows the log's end."""
    with log_path.open("a") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n")
        log.flush()
        try:
            code = subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=PREPARE_TIMEOUT_SECONDS,
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-20:])
        outcome = "timed out" if code is None else f"failed (exit code {code})"
        raise SetupError(f"airflow {' '.join(args)} {outcome}; last lines of {log_path}:\n{tail}")


if __name__ == "__main__":
    sys.exit(main())
