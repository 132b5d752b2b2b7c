#!/bin/sh
# Entrypoint of the MLflow image: write basic_auth.ini from the environment (so no password is
# ever baked into an image or committed), point MLFLOW_AUTH_CONFIG_PATH at it, then exec
# `mlflow server "$@"` with the arguments from compose.yaml.
#
# admin_username/admin_password only create the admin on the first start against an empty
# mlflow_auth database; later changes go through MLflow's update-password API (docs/production.md).
set -eu

: "${MLFLOW_ADMIN_USERNAME:?MLFLOW_ADMIN_USERNAME must be set}"
: "${MLFLOW_ADMIN_PASSWORD:?MLFLOW_ADMIN_PASSWORD must be set}"
: "${MLFLOW_AUTH_DATABASE_URI:?MLFLOW_AUTH_DATABASE_URI must be set}"

# configparser treats % as interpolation: double it so any password survives as written.
ini_escape() { printf '%s' "$1" | sed 's/%/%%/g'; }

config_dir="${MLFLOW_AUTH_CONFIG_DIR:-/tmp/mlflow-auth}"
mkdir -p "$config_dir"
umask 077
cat > "$config_dir/basic_auth.ini" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = $(ini_escape "$MLFLOW_AUTH_DATABASE_URI")
admin_username = $(ini_escape "$MLFLOW_ADMIN_USERNAME")
admin_password = $(ini_escape "$MLFLOW_ADMIN_PASSWORD")
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$config_dir/basic_auth.ini"

exec mlflow server "$@"
