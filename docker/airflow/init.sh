#!/usr/bin/env bash
# One-shot set-up run by the airflow-init service before the other Airflow services start:
# migrate the metadata database, write the UI login, create the project's connections.
# Safe to run again: every step overwrites what an earlier run wrote.
set -euo pipefail

required=(
    MLFLOW_TRACKING_URI
    RATINGS_DB_HOST RATINGS_DB_PORT RATINGS_DB_NAME RATINGS_DB_USER RATINGS_DB_PASSWORD
    AIRFLOW_ADMIN_USERNAME AIRFLOW_ADMIN_PASSWORD
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
)
for name in "${required[@]}"; do
    if [[ -z "${!name:-}" ]]; then
        echo "airflow-init: environment variable ${name} is empty; set it in .env (see .env.example)" >&2
        exit 1
    fi
done

# .env.example's secrets are placeholders containing "change-me": starting with them would publish
# the stack's keys, so refuse, naming the variables (never their values).
placeholders=$(env | grep -E '^[A-Za-z_][A-Za-z0-9_]*=.*change-me' | cut -d= -f1 | sort || true)
if [[ -n "${placeholders}" ]]; then
    echo "airflow-init: these variables still hold .env.example placeholders (change-me):" >&2
    echo "${placeholders}" >&2
    exit 1
fi

echo "airflow-init: migrating the metadata database"
airflow db migrate

# The simple auth manager reads passwords from this JSON file; writing it from .env keeps the
# login a deployment setting instead of a password generated into the logs.
echo "airflow-init: writing the login of ${AIRFLOW_ADMIN_USERNAME}"
umask 077
mkdir -p "$(dirname "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}")"
python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
with open(path, "w", encoding="utf-8") as handle:
    json.dump({os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, handle)
    handle.write("\n")
PY

# json.dumps escapes any character a password may hold; --overwrite makes a re-run (e.g. after a
# password change in .env) update the stored connections.
connections_file=$(mktemp --suffix=.json)
trap 'rm -f "${connections_file}"' EXIT
python - "${connections_file}" <<'PY'
import json
import os
import sys

env = os.environ
connections = {
    "mlflow_default": {
        "conn_type": "http",
        # The project's MLflow hook takes the tracking URI from the host field.
        "host": env["MLFLOW_TRACKING_URI"],
        "description": "MLflow tracking server and model registry",
    },
    "ratings_warehouse": {
        "conn_type": "postgres",
        "host": env["RATINGS_DB_HOST"],
        "port": int(env["RATINGS_DB_PORT"]),
        "schema": env["RATINGS_DB_NAME"],
        "login": env["RATINGS_DB_USER"],
        "password": env["RATINGS_DB_PASSWORD"],
        "description": "PostgreSQL warehouse holding the MovieLens ratings",
    },
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(connections, handle)
PY
echo "airflow-init: creating connections mlflow_default and ratings_warehouse"
airflow connections import --overwrite "${connections_file}"

# Promote and rollback tasks run in this one-slot pool (one move of @champion at a time); the
# scheduler never starts a task whose pool is missing.
echo "airflow-init: creating pool model_promotion (1 slot)"
airflow pools set model_promotion 1 "One move of @champion at a time"

echo "airflow-init: done"
