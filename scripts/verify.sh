#!/usr/bin/env bash
# Fails when generated code, go.mod/go.sum or formatting is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run ./db/internal/riverschema "$tmp/river_schema.sql"
if ! cmp -s "$tmp/river_schema.sql" db/river_schema.sql; then
  echo "verify: db/river_schema.sql is stale: run 'make generate'" >&2
  fail=1
fi
if ! go tool sqlc diff >"$tmp/sqlc.diff" 2>&1; then
  cat "$tmp/sqlc.diff" >&2
  echo "verify: db/dbsqlc is stale: run 'make generate'" >&2
  fail=1
fi
if ! go mod tidy -diff >"$tmp/mod.diff" 2>&1; then
  cat "$tmp/mod.diff" >&2
  echo "verify: go.mod/go.sum are not tidy: run 'go mod tidy'" >&2
  fail=1
fi
unformatted=$(gofmt -l $(go list -f '{{.Dir}}' ./...))
if [[ -n "$unformatted" ]]; then
  echo "verify: gofmt would change: $unformatted" >&2
  fail=1
fi
if [[ $fail -eq 0 ]]; then echo "verify: generated code, modules and formatting are up to date"; fi
exit $fail
