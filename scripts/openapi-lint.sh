#!/usr/bin/env bash
# Lints httpapi/openapi.yaml with Redocly's CLI and its recommended rules:
# an error fails, warnings are shown. Installs Node.js from the system's
# packages when it is missing, and the pinned CLI into bin/redocly the
# first time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '{"event":"%s","msg":"%s"}\n' "$1" "$2" >&2; }

version=2.77.0
dir=bin/redocly
cli=$dir/node_modules/.bin/redocly

if ! command -v npm >/dev/null; then
  command -v apt-get >/dev/null || { log node_missing "no npm on PATH and no apt-get to install it: install Node.js 20 or later by hand"; exit 1; }
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log node_missing "installing Node.js needs root or sudo"; exit 1; }
    sudo=(sudo)
  fi
  log node_install_started "installing Debian's nodejs and npm packages"
  { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nodejs npm; } >/dev/null
  log node_install_done "Node.js installed"
fi

if [[ ! -x $cli || $(cat "$dir/version" 2>/dev/null) != "$version" ]]; then
  log redocly_install_started "installing Redocly's CLI $version into $dir"
  start=$SECONDS
  mkdir -p "$dir"
  echo '{"private":true}' >"$dir/package.json"
  out=$(mktemp)
  trap 'rm -f "$out"' EXIT
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@redocly/cli@$version" >"$out" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && log redocly_install_progress "still installing Redocly's CLI: $((SECONDS - start))s"
  done
  if ! wait "$pid"; then
    log redocly_install_failed "npm failed; its output follows"
    cat "$out" >&2
    exit 1
  fi
  echo "$version" >"$dir/version"
  log redocly_install_done "Redocly's CLI installed in $((SECONDS - start))s"
fi

# Telemetry off: the lint runs offline and reports nothing anywhere.
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "$cli" lint --extends=recommended --format=summary httpapi/openapi.yaml
log openapi_lint_passed "httpapi/openapi.yaml passes Redocly's recommended rules"
