#!/usr/bin/env bash
# `make bench`: measures taskrunner against bare River on this machine and
# prints each figure beside bare River's with the ratio (see DESIGN.md,
# "Performance"). Starts PostgreSQL and Redis if they are down, and a MinIO
# of the bench's own (a spare loopback port from BENCH_MINIO_PORT, default
# 19100, a temporary data folder and random credentials, stopped on exit)
# for the artifact figures, which also start bin/taskrunner serve (`make
# bench` builds it). The bench uses a database of its own (taskrunner_bench
# by default) on DATABASE_URL's server, which it drops and recreates.
#
# `make bench-scale` passes the scale flags (see the Makefile): the
# throughput and pickup figures with 1,000,000 tasks queued, bytes per
# task, and pickup during a retention pass over 1,000,000 finished tasks;
# it needs about a gigabyte free for the database.
#
# Extra flags go in BENCH_FLAGS, e.g. a quick check:
#   make bench BENCH_FLAGS='-enqueue-duration 2s -e2e-jobs 2000'
# `go run ./bench -h` lists them all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
go build -o bin/bench ./bench

port=${BENCH_MINIO_PORT:-19100}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
tmp=$(mktemp -d)
cleanup() { scripts/minio.sh stop "$tmp/minio.pid"; rm -rf "$tmp"; }
trap cleanup EXIT
export BENCH_MINIO_ENDPOINT=127.0.0.1:$port
export BENCH_MINIO_USER=taskrunner-bench
BENCH_MINIO_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export BENCH_MINIO_PASSWORD
MINIO_ROOT_USER=$BENCH_MINIO_USER MINIO_ROOT_PASSWORD=$BENCH_MINIO_PASSWORD \
  scripts/minio.sh start "$BENCH_MINIO_ENDPOINT" "$tmp/data" "$tmp/minio.pid"

# Not exec: the trap stops MinIO when the bench is done.
# shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
bin/bench ${BENCH_FLAGS:-} "$@"
