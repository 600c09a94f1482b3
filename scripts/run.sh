#!/usr/bin/env bash
# `make run`: MinIO on MINIO_ENDPOINT with its data under ./.data, the
# database created and migrated, then `taskrunner serve` in the foreground.
# Ctrl-C (or SIGTERM) stops the server gracefully, then the MinIO it started.
set -euo pipefail
cd "$(dirname "$0")/.."

server=
cleanup() {
  if [[ -n "$server" ]] && kill -TERM "$server" 2>/dev/null; then
    wait "$server" || true
  fi
  scripts/minio.sh stop .data/minio.pid
}
trap cleanup EXIT
trap 'exit 0' INT TERM

scripts/services.sh
mkdir -p .data
scripts/minio.sh start "$MINIO_ENDPOINT" .data/minio .data/minio.pid
bin/taskrunner migrate up
bin/taskrunner serve &
server=$!
wait "$server"
