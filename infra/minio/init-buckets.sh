#!/bin/sh
# One-shot set-up of MinIO (compose service minio-init), safe to rerun:
#   - bucket for MLflow artifacts and bucket for the DVC remote
#   - the service account MLflow, the workers and DVC use (AWS_ACCESS_KEY_ID / _SECRET_),
#     so the root account stays with the operator.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${MLFLOW_ARTIFACT_BUCKET:?}" "${DVC_BUCKET:?}"
: "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"

mc alias set stack http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "stack/$MLFLOW_ARTIFACT_BUCKET"
mc mb --ignore-existing "stack/$DVC_BUCKET"
mc admin user add stack "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
# Fails when the policy is already attached (a rerun): that is the state we want.
mc admin policy attach stack readwrite --user "$AWS_ACCESS_KEY_ID" \
  || echo "policy readwrite already attached to $AWS_ACCESS_KEY_ID"
echo "minio-init: buckets $MLFLOW_ARTIFACT_BUCKET and $DVC_BUCKET ready"
