#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d):
# creates the Airflow metadata, MLflow backend-store, MLflow auth and ratings warehouse
# databases, each owned by its own login role, and the governance audit database with its
# owner (migration) role and an INSERT/SELECT-only writer role (audit-db.sql), with names and
# passwords from .env.
set -euo pipefail

# audit-db.sql is mounted beside, not inside, /docker-entrypoint-initdb.d: the image would run a
# .sql file there by itself, without the variables it needs.
AUDIT_DB_SQL=${AUDIT_DB_SQL:-/opt/movie-recommender/postgres/audit-db.sql}

for name in POSTGRES_USER \
    AIRFLOW_DB_NAME AIRFLOW_DB_USER AIRFLOW_DB_PASSWORD \
    MLFLOW_DB_NAME MLFLOW_DB_USER MLFLOW_DB_PASSWORD MLFLOW_AUTH_DB_NAME \
    RATINGS_DB_NAME RATINGS_DB_USER RATINGS_DB_PASSWORD \
    AUDIT_DB_NAME AUDIT_DB_OWNER AUDIT_DB_OWNER_PASSWORD AUDIT_DB_WRITER AUDIT_DB_WRITER_PASSWORD; do
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

# A database owned by an existing role (the MLflow auth store belongs to the MLflow role).
create_database_for() {
    local database=$1 role=$2
    echo "init-databases: creating database ${database} owned by ${role}"
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
        -v database="${database}" -v role="${role}" <<'SQL'
CREATE DATABASE :"database" OWNER :"role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
SQL
}

create_database "${AIRFLOW_DB_NAME}" "${AIRFLOW_DB_USER}" "${AIRFLOW_DB_PASSWORD}"
create_database "${MLFLOW_DB_NAME}" "${MLFLOW_DB_USER}" "${MLFLOW_DB_PASSWORD}"
create_database_for "${MLFLOW_AUTH_DB_NAME}" "${MLFLOW_DB_USER}"
create_database "${RATINGS_DB_NAME}" "${RATINGS_DB_USER}" "${RATINGS_DB_PASSWORD}"

echo "init-databases: creating audit database ${AUDIT_DB_NAME} (owner ${AUDIT_DB_OWNER}, writer ${AUDIT_DB_WRITER})"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
    -v database="${AUDIT_DB_NAME}" \
    -v owner="${AUDIT_DB_OWNER}" -v owner_password="${AUDIT_DB_OWNER_PASSWORD}" \
    -v writer="${AUDIT_DB_WRITER}" -v writer_password="${AUDIT_DB_WRITER_PASSWORD}" \
    -f "${AUDIT_DB_SQL}"
