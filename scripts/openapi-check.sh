#!/usr/bin/env bash
# Checks httpapi/openapi.yaml as a client's tools read it: Redocly's CLI
# lints it with its recommended rules (an error fails, warnings are
# shown), and a TypeScript client generated from it by openapi-typescript
# compiles (httpapi/testdata/client.ts, strict). Installs Node.js from the
# system's packages when it is missing, and the pinned tools into
# bin/redocly the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '{"event":"%s","msg":"%s"}\n' "$1" "$2" >&2; }

# The pinned tools, as npm installs them.
tools="@redocly/cli@2.77.0 openapi-typescript@7.13.0 typescript@5.9.3"
dir=bin/redocly
bin=$dir/node_modules/.bin

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

if [[ ! -x $bin/redocly || $(cat "$dir/version" 2>/dev/null) != "$tools" ]]; then
  log openapi_tools_install_started "installing $tools into $dir"
  start=$SECONDS
  mkdir -p "$dir"
  echo '{"private":true}' >"$dir/package.json"
  out=$(mktemp)
  # shellcheck disable=SC2086 # the tools are separate words
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error $tools >"$out" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && log openapi_tools_install_progress "still installing the OpenAPI tools: $((SECONDS - start))s"
  done
  if ! wait "$pid"; then
    log openapi_tools_install_failed "npm failed; its output follows"
    cat "$out" >&2
    rm -f "$out"
    exit 1
  fi
  rm -f "$out"
  echo "$tools" >"$dir/version"
  log openapi_tools_install_done "the OpenAPI tools installed in $((SECONDS - start))s"
fi

# Telemetry off: the lint runs offline and reports nothing anywhere.
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "$bin/redocly" lint --extends=recommended --format=summary httpapi/openapi.yaml
log openapi_lint_passed "httpapi/openapi.yaml passes Redocly's recommended rules"

ts=$(mktemp -d)
trap 'rm -rf "$ts"' EXIT
"$bin/openapi-typescript" httpapi/openapi.yaml -o "$ts/api.d.ts" >/dev/null
cp httpapi/testdata/client.ts "$ts/client.ts"
"$bin/tsc" --noEmit --strict --target es2022 --lib es2022,dom --moduleResolution node "$ts/client.ts"
log openapi_typescript_passed "a TypeScript client generated from httpapi/openapi.yaml compiles"
