#!/usr/bin/env bash
# Runs once, when the postgres container starts on an empty data volume
# (/docker-entrypoint-initdb.d). One login role per service, each owning its databases:
#   mlflow  -> mlflow (tracking + registry), mlflow_auth (basic-auth users and permissions)
#   prefect -> prefect (orchestration)
# Passwords come from the environment (infra/.env); nothing secret lives in this file.
set -euo pipefail

: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
: "${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD must be set}"

# psql's :'var' quotes the value as an SQL literal, so a password can't break the statement.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" \
  -v prefect_password="$PREFECT_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE prefect OWNER prefect;
SQL
