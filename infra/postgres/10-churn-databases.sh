#!/bin/bash
# First start of the postgres container (empty data volume): one database per service, each owned
# by its own login role (the owner may create the pg_trgm extension Prefect's migrations need).
#
#   prefect   Prefect server's database   role prefect
#   mlflow    MLflow's backend store      role mlflow
#   scores    the scoring flow's table    role scores (writes its `scores` table; nothing else)
#
# Passwords come from the container's environment (.env). Run by the image's entrypoint from
# /docker-entrypoint-initdb.d, connected as POSTGRES_USER over the local socket. Idempotent: on a
# volume made before a database was added, run it again by hand:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-churn-databases.sh
set -euo pipefail

: "${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"
: "${SCORES_DB_PASSWORD:?SCORES_DB_PASSWORD is not set}"

for db in prefect mlflow scores; do
    case "$db" in
        prefect) pw="$PREFECT_DB_PASSWORD" ;;
        mlflow)  pw="$MLFLOW_DB_PASSWORD" ;;
        scores)  pw="$SCORES_DB_PASSWORD" ;;
    esac
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
         -v name="$db" -v pw="$pw" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'name', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SQL
done
echo "churn: databases prefect, mlflow, scores and their roles are ready"
