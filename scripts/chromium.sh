#!/usr/bin/env bash
# Installs Debian's headless Chromium for the River UI browser test
# (cmd/taskrunner/riverui_test.go) when it is not on PATH.
set -euo pipefail

log() { printf '{"event":"%s","msg":"%s"}\n' "$1" "$2" >&2; }

command -v chromium >/dev/null && exit 0

if ! command -v apt-get >/dev/null; then
  log chromium_missing "no chromium on PATH and no apt-get to install it: install Chromium by hand"
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log chromium_missing "installing Chromium needs root or sudo"; exit 1; }
  sudo=(sudo)
fi

log chromium_install_started "installing Debian's chromium package (a few minutes the first time)"
start=$SECONDS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
{ "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium; } >"$out" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  kill -0 "$pid" 2>/dev/null && log chromium_install_progress "still installing Chromium: $((SECONDS - start))s"
done
if ! wait "$pid"; then
  log chromium_install_failed "apt-get failed; its output follows"
  cat "$out" >&2
  exit 1
fi
command -v chromium >/dev/null || { log chromium_missing "apt-get finished but chromium is not on PATH"; exit 1; }
log chromium_install_done "Chromium installed in $((SECONDS - start))s"
