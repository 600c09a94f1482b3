#!/usr/bin/env bash
# `make bench`: measures taskrunner against bare River on this machine and
# prints each figure beside bare River's with the ratio (see DESIGN.md,
# "Performance"). Starts PostgreSQL if it is down; the bench uses a database
# of its own (taskrunner_bench by default) on DATABASE_URL's server, which it
# drops and recreates.
#
# Extra flags go in BENCH_FLAGS, e.g. a quick check:
#   make bench BENCH_FLAGS='-enqueue-duration 2s -e2e-jobs 2000'
# `go run ./bench -h` lists them all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
go build -o bin/bench ./bench
# shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
exec bin/bench ${BENCH_FLAGS:-} "$@"
