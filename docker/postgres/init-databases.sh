#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d):
# creates the Airflow metadata, MLflow backend-store and ratings warehouse databases, each owned
# by its own login role, with names and passwords from .env.
set -euo pipefail

for name in POSTGRES_USER \
    AIRFLOW_DB_NAME AIRFLOW_DB_USER AIRFLOW_DB_PASSWORD \
    MLFLOW_DB_NAME MLFLOW_DB_USER MLFLOW_DB_PASSWORD \
    RATINGS_DB_NAME RATINGS_DB_USER RATINGS_DB_PASSWORD; do
    if [[ -z "${!name:-}" ]]; then
        echo "init-databases: environment variable ${name} is empty; set it in .env" >&2
        exit 1
    fi
done

# Create one role and the database it owns. psql's :"name" and :'value' quote identifiers and
# literals, so no name or password can break out of the statement.
create_database() {
    local database=$1 role=$2 password=$3
    echo "init-databases: creating database ${database} owned by ${role}"
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
        -v database="${database}" -v role="${role}" -v password="${password}" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
-- Each service reaches its own database only.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
}

create_database "${AIRFLOW_DB_NAME}" "${AIRFLOW_DB_USER}" "${AIRFLOW_DB_PASSWORD}"
create_database "${MLFLOW_DB_NAME}" "${MLFLOW_DB_USER}" "${MLFLOW_DB_PASSWORD}"
create_database "${RATINGS_DB_NAME}" "${RATINGS_DB_USER}" "${RATINGS_DB_PASSWORD}"
