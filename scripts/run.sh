#!/usr/bin/env bash
# `make run`: MinIO on MINIO_ENDPOINT with its data under ./.data, the
# database created and migrated, then `taskrunner serve` in the foreground.
# Ctrl-C stops the server and the MinIO it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
mkdir -p .data
scripts/minio.sh start "$MINIO_ENDPOINT" .data/minio .data/minio.pid
trap 'scripts/minio.sh stop .data/minio.pid' EXIT
bin/taskrunner migrate up
bin/taskrunner serve &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server; scripts/minio.sh stop .data/minio.pid' EXIT INT TERM
wait $server
