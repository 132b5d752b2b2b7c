#!/bin/sh
# Entrypoint of the training image (infra/Dockerfile). When DVC_REMOTE_URL is set, make it the
# DVC default remote in .dvc/config.local, which git ignores: the committed .dvc/config (with
# the local remote as default) stays as it is, so the repository is not dirty and the lineage
# tags stay truthful. AWS_ENDPOINT_URL (MinIO) and the AWS_* credentials come from the
# environment; credentials are never written to a file.
set -eu

if [ -n "${DVC_REMOTE_URL:-}" ]; then
  cd "${GANPKG_REPO_DIR:-/opt/ganpkg}"
  dvc remote add --local --force --default s3 "$DVC_REMOTE_URL" >/dev/null
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    dvc remote modify --local s3 endpointurl "$AWS_ENDPOINT_URL"
  fi
  cd - >/dev/null
fi

exec "$@"
