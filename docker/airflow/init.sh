#!/usr/bin/env bash
# One-shot set-up run by the airflow-init service before the other Airflow services start:
# migrate the metadata database (with the FAB auth manager's tables), create the UI admin,
# create the governance audit table, create the project's connections and pool.
# Safe to run again: every step overwrites what an earlier run wrote.
set -euo pipefail

required=(
    MLFLOW_TRACKING_URI
    MLFLOW_TRAINER_USERNAME MLFLOW_TRAINER_PASSWORD
    MLFLOW_GOVERNANCE_USERNAME MLFLOW_GOVERNANCE_PASSWORD
    RATINGS_DB_HOST RATINGS_DB_PORT RATINGS_DB_NAME RATINGS_DB_USER RATINGS_DB_PASSWORD
    AUDIT_DB_HOST AUDIT_DB_PORT AUDIT_DB_NAME AUDIT_DB_OWNER AUDIT_DB_OWNER_PASSWORD
    AUDIT_DB_WRITER AUDIT_DB_WRITER_PASSWORD
    AIRFLOW_ADMIN_USERNAME AIRFLOW_ADMIN_PASSWORD AIRFLOW_ADMIN_EMAIL
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

# With the FAB auth manager configured, this also runs FAB's own migrations (users, roles).
echo "airflow-init: migrating the metadata database"
airflow db migrate

# The UI admin of the FAB auth manager, from .env; a re-run resets the password to .env's.
if airflow users list --output json 2>/dev/null | python -c '
import json, os, sys
try:
    users = json.load(sys.stdin)
except ValueError:
    users = []
sys.exit(0 if any(u.get("username") == os.environ["AIRFLOW_ADMIN_USERNAME"] for u in users) else 1)
'; then
    echo "airflow-init: resetting the password of ${AIRFLOW_ADMIN_USERNAME}"
    airflow users reset-password --username "${AIRFLOW_ADMIN_USERNAME}" --password "${AIRFLOW_ADMIN_PASSWORD}"
else
    echo "airflow-init: creating the Admin user ${AIRFLOW_ADMIN_USERNAME}"
    airflow users create --username "${AIRFLOW_ADMIN_USERNAME}" --password "${AIRFLOW_ADMIN_PASSWORD}" \
        --role Admin --firstname Airflow --lastname Admin --email "${AIRFLOW_ADMIN_EMAIL}"
fi

# The tasks write the audit trail as a role that may only INSERT and SELECT: the table, its
# indexes and its append-only triggers are created here, as the audit database's owner.
echo "airflow-init: creating the audit table in ${AUDIT_DB_NAME}"
migrate-audit-db

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
    # Two MLflow identities (docker/mlflow/governance-auth): training registers versions;
    # governance records verdicts and decisions and moves @champion. The hook takes the
    # tracking URI from the host field and the MLflow login from login/password.
    "mlflow_default": {
        "conn_type": "http",
        "host": env["MLFLOW_TRACKING_URI"],
        "login": env["MLFLOW_TRAINER_USERNAME"],
        "password": env["MLFLOW_TRAINER_PASSWORD"],
        "description": "MLflow tracking server and registry, as the training account",
    },
    "mlflow_governance": {
        "conn_type": "http",
        "host": env["MLFLOW_TRACKING_URI"],
        "login": env["MLFLOW_GOVERNANCE_USERNAME"],
        "password": env["MLFLOW_GOVERNANCE_PASSWORD"],
        "description": "MLflow registry, as the governance (approver) account",
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
    "audit_db": {
        "conn_type": "postgres",
        "host": env["AUDIT_DB_HOST"],
        "port": int(env["AUDIT_DB_PORT"]),
        "schema": env["AUDIT_DB_NAME"],
        "login": env["AUDIT_DB_WRITER"],
        "password": env["AUDIT_DB_WRITER_PASSWORD"],
        "description": "Governance audit trail (append-only; INSERT and SELECT only)",
    },
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(connections, handle)
PY
echo "airflow-init: creating connections mlflow_default, mlflow_governance, ratings_warehouse and audit_db"
airflow connections import --overwrite "${connections_file}"

# Promote and rollback tasks run in this one-slot pool (one move of @champion at a time); the
# scheduler never starts a task whose pool is missing.
echo "airflow-init: creating pool model_promotion (1 slot)"
airflow pools set model_promotion 1 "One move of @champion at a time"

echo "airflow-init: done"
