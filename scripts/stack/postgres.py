"""The ``postgres`` service's stand-in: a PostgreSQL cluster of the stack's own.

What the postgres image's entrypoint does, on this machine's PostgreSQL binaries: on an empty
data directory (the ``postgres-data`` volume), ``initdb`` with the superuser and password of
POSTGRES_USER / POSTGRES_PASSWORD, then every file mounted into /docker-entrypoint-initdb.d
(``*.sh`` run by bash, ``*.sql`` by psql) while the server listens on its socket only; then the
server on 127.0.0.1 at the port the stack gave it. Password authentication over TCP (as the
image), trust on the socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

POSTGRES_BIN = Path(os.environ.get("STACK_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
INITDB_DIR = "/docker-entrypoint-initdb.d"


class PostgresError(RuntimeError):
    """The cluster could not be initialised or started; the message carries its log."""


class PrivatePostgres:
    """One cluster: data in ``data_dir``, socket in ``socket_dir``, TCP on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, socket_dir: Path, port: int, log_path: Path) -> None:
        self.data_dir = data_dir
        self.socket_dir = socket_dir
        self.port = port
        self.log_path = log_path

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def client_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` plus what makes psql and pg_isready reach this cluster, not the machine's."""
        return {**env, "PGHOST": str(self.socket_dir), "PGPORT": str(self.port)}

    def initdb(self, superuser: str, password: str) -> None:
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            _owned_by_postgres(folder)
        pwfile = self.socket_dir / "initdb-password"
        pwfile.write_text(password)
        _owned_by_postgres(pwfile)
        try:
            self._as_postgres([str(POSTGRES_BIN / "initdb"), "-D", str(self.data_dir), "-U", superuser,
                               f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"])
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, listen_tcp: bool = True) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        _owned_by_postgres(self.log_path)
        listen = "127.0.0.1" if listen_tcp else "''"
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses={listen}"
        self._as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                           "-o", options, "-w", "-t", "120", "start"])

    def stop(self, mode: str = "fast") -> None:
        for attempt in (mode, "immediate"):
            if not (self.data_dir / "postmaster.pid").exists():
                return
            self._as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", attempt, "-w", "-t", "60", "stop"],
                              check=False)

    def run_init_scripts(self, scripts: list[Path], env: dict[str, str]) -> None:
        """Run the initdb.d files in name order, as the image does, against the socket."""
        env = self.client_env(env)
        for script in sorted(scripts, key=lambda path: path.name):
            if script.suffix == ".sh":
                command = ["bash", str(script)]
            elif script.suffix == ".sql":
                command = ["psql", "-v", "ON_ERROR_STOP=1", "--username", env["POSTGRES_USER"], "--dbname", "postgres",
                           "-f", str(script)]
            else:
                continue
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
            with self.log_path.open("a") as log:
                log.write(f"--- {script.name}\n{done.stdout}{done.stderr}")
            if done.returncode != 0:
                raise PostgresError(f"{script.name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _as_postgres(self, command: list[str], check: bool = True) -> None:
        # initdb and postgres refuse to run as root; the cluster belongs to the postgres user.
        if os.geteuid() == 0:
            # runuser lives in sbin, which a user's PATH may lack.
            runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
            if runuser is None:
                raise PostgresError("running as root, the PostgreSQL stand-in needs `runuser` (util-linux)")
            command = [runuser, "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd="/", check=False)
        if check and done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise PostgresError(f"{' '.join(command[:4])} failed "
                                f"({done.returncode}):\n{done.stdout}{done.stderr}\n{log}")


def _owned_by_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")
        # Every folder above must be passable for the postgres user.
        for parent in path.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
