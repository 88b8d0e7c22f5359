"""What plays the images that cannot run without Docker (images.STANDINS).

- ``postgres``: a private cluster (scripts/stack/postgres.py), initialised by the very scripts the
  compose file mounts into /docker-entrypoint-initdb.d;
- ``s3``: moto's S3 server in place of MinIO (same S3 API over HTTP; it keeps objects in memory,
  so a restart of it loses them; it has no web console);
- ``bucket``: the bucket job's checks and ``mc mb --ignore-existing`` done with boto3
  (scripts/stack/make_bucket.py), bucket name read from the job's own command;
- ``redis``: this machine's ``redis-server`` with the compose command's password, on a port of
  the stack's own, keeping nothing on disk.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from scripts.stack.plan import LocalService
from scripts.stack.postgres import INITDB_DIR, PrivatePostgres
from scripts.stack.translate import LOOPBACK

# The audit SQL the postgres init script reads, mounted outside initdb.d (docker-compose.yaml).
AUDIT_SQL_TARGET = "/opt/movie-recommender/postgres/audit-db.sql"


def adapt(local: LocalService) -> LocalService:
    """Give a stand-in service its local command and health check."""
    if local.kind == "s3":
        port = local.ports[9000]
        local.command = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
        local.healthcheck = _http_check(f"http://{LOOPBACK}:{port}/moto-api/")
    elif local.kind == "bucket":
        text = " ".join(local.command)
        bucket = re.search(r"mc mb (?:--\S+ )*\w+/(\S+)", text)
        endpoint = re.search(r"mc alias set \w+ (\S+)", text)
        if not bucket or not endpoint:
            raise ValueError(f"{local.name}: cannot find the bucket and endpoint in its command: {text!r}")
        local.command = [sys.executable, str(Path(__file__).with_name("make_bucket.py")), endpoint.group(1), bucket.group(1)]
        local.healthcheck = None
    elif local.kind == "redis":
        port = local.ports[6379]
        data = local.rootfs.root / "data"
        data.mkdir(exist_ok=True)
        local.command = ["redis-server", "--bind", LOOPBACK, "--port", str(port), "--requirepass",
                         local.env.get("REDIS_PASSWORD", ""), "--save", "", "--appendonly", "no", "--dir", str(data)]
        local.healthcheck = ["sh", "-c", f"redis-cli -h {LOOPBACK} -p {port} ping | grep -q PONG"]
        local.env["REDISCLI_AUTH"] = local.env.get("REDIS_PASSWORD", "")
    elif local.kind == "postgres":
        port = local.ports[5432]
        local.command = []
        local.healthcheck = ["pg_isready", "-h", LOOPBACK, "-p", str(port), "-U", local.env["POSTGRES_USER"], "-d", "postgres"]
    return local


def postgres_cluster(local: LocalService, state_dir: Path) -> PrivatePostgres:
    data = local.rootfs.path("/var/lib/postgresql/data").resolve()
    return PrivatePostgres(data_dir=data, socket_dir=state_dir / "run" / local.name, port=local.ports[5432],
                           log_path=state_dir / "logs" / f"{local.name}.log")


def start_postgres(local: LocalService, state_dir: Path) -> PrivatePostgres:
    """Initialise on an empty volume (initdb + the initdb.d scripts), then serve on TCP."""
    cluster = postgres_cluster(local, state_dir)
    if not cluster.initialised:
        cluster.initdb(local.env["POSTGRES_USER"], local.env["POSTGRES_PASSWORD"])
        cluster.start(listen_tcp=False)
        try:
            scripts = [path for path in local.rootfs.path(INITDB_DIR).iterdir()]
            env = dict(local.env)
            if local.rootfs.path(AUDIT_SQL_TARGET).exists():
                env["AUDIT_DB_SQL"] = str(local.rootfs.path(AUDIT_SQL_TARGET))
            cluster.run_init_scripts(scripts, env)
        finally:
            cluster.stop()
    cluster.start(listen_tcp=True)
    return cluster


def _http_check(url: str) -> list[str]:
    return [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"]
