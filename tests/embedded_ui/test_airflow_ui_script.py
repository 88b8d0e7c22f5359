"""What `make airflow-ui` prepares before it starts Airflow: environment, secrets, passwords (no Airflow started)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("airflow_ui", REPO / "scripts" / "airflow_ui.py")
airflow_ui = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(airflow_ui)


@pytest.fixture
def makefile_env(tmp_path):
    """The Makefile's exported environment for a state dir of the test's own, and a bare PATH."""
    return {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW_CONFIG": str(REPO / "airflow.cfg"),
        "AIRFLOW_PROJECT_DIR": str(REPO),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": '{"conn_type": "generic", "host": "sqlite:////x/mlflow.db"}',
    }


def test_every_component_gets_the_venv_one_secret_and_the_port(makefile_env, tmp_path):
    env = airflow_ui.airflow_ui_environment(makefile_env, port=8123)
    assert env["PATH"].split(":")[0] == str(Path(sys.prefix) / "bin")
    assert (Path(sys.prefix) / "bin" / "airflow").exists()
    assert (env["AIRFLOW__API__PORT"], env["AIRFLOW__API__BASE_URL"]) == ("8123", "http://127.0.0.1:8123")
    stored = json.loads((tmp_path / "airflow" / "airflow_ui_secrets.json").read_text())
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == stored["jwt_secret"]
    assert env["AIRFLOW__API__SECRET_KEY"] == stored["api_secret_key"] != stored["jwt_secret"]
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,reviewer:user"


def test_secrets_and_passwords_are_made_once_and_owner_only(makefile_env, tmp_path):
    first = airflow_ui.airflow_ui_environment(makefile_env, port=8080)
    passwords_file = Path(first["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert passwords_file == tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
    passwords = json.loads(passwords_file.read_text())
    assert sorted(passwords) == ["admin", "reviewer"] and passwords["admin"] != passwords["reviewer"]
    again = airflow_ui.airflow_ui_environment(makefile_env, port=8080)
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == first["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert json.loads(passwords_file.read_text()) == passwords
    for path in (tmp_path / "airflow" / "airflow_ui_secrets.json", passwords_file):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_more_users_get_passwords_and_existing_ones_are_kept(makefile_env):
    first = airflow_ui.airflow_ui_environment(makefile_env, port=8080)
    passwords_file = Path(first["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    before = json.loads(passwords_file.read_text())
    makefile_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,reviewer:user,alice:user"
    airflow_ui.airflow_ui_environment(makefile_env, port=8080)
    after = json.loads(passwords_file.read_text())
    assert sorted(after) == ["admin", "alice", "reviewer"]
    assert {name: after[name] for name in before} == before


def test_settings_given_in_the_environment_win(makefile_env):
    makefile_env.update({"AIRFLOW__API__WORKERS": "2", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "9999"})
    env = airflow_ui.airflow_ui_environment(makefile_env, port=8080)
    assert (env["AIRFLOW__API__WORKERS"], env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]) == ("2", "9999")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"AIRFLOW_HOME": ""}, "AIRFLOW_HOME not set: start it with `make airflow-ui`"),
        ({"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,bob"}, "'bob' is not name:role"),
    ],
)
def test_bad_settings_are_refused_by_name(makefile_env, change, message):
    makefile_env.update(change)
    with pytest.raises(airflow_ui.SetupError, match=message):
        airflow_ui.airflow_ui_environment(makefile_env, port=8080)


def test_a_damaged_secrets_file_is_named_not_replaced(makefile_env, tmp_path):
    secrets_file = tmp_path / "airflow" / "airflow_ui_secrets.json"
    secrets_file.parent.mkdir(parents=True)
    secrets_file.write_text('{"jwt_secret": ""}')
    with pytest.raises(airflow_ui.SetupError, match="airflow_ui_secrets.json lacks jwt_secret or api_secret_key"):
        airflow_ui.airflow_ui_environment(makefile_env, port=8080)
    assert secrets_file.read_text() == '{"jwt_secret": ""}'
