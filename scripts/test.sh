#!/usr/bin/env bash
# Starts what the tests need (PostgreSQL and Redis if down, a MinIO of the
# tests' own on a spare loopback port with a temporary data folder, Chromium
# for the River UI browser test), then runs the verification, the OpenAPI
# document's checks (lint, a generated TypeScript client) and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
scripts/chromium.sh

port=${TEST_MINIO_PORT:-19000}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
tmp=$(mktemp -d)
cleanup() { scripts/minio.sh stop "$tmp/minio.pid"; rm -rf "$tmp"; }
trap cleanup EXIT
export TEST_MINIO_ENDPOINT=127.0.0.1:$port
export TEST_MINIO_USER=taskrunner-test
export TEST_MINIO_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
MINIO_ROOT_USER=$TEST_MINIO_USER MINIO_ROOT_PASSWORD=$TEST_MINIO_PASSWORD \
  scripts/minio.sh start "$TEST_MINIO_ENDPOINT" "$tmp/data" "$tmp/minio.pid"

scripts/verify.sh
scripts/openapi-check.sh
go vet ./...
# -race catches data races; -count=1 never reuses a cached pass.
go test -race -count=1 -timeout 20m ${TEST_FLAGS:-} ./...
