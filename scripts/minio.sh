#!/usr/bin/env bash
# Installs and runs the MinIO server taskrunner stores artifacts in.
#
#   scripts/minio.sh install              build the pinned MinIO into ./bin (once)
#   scripts/minio.sh start ADDR DIR PID   start it on ADDR with its data in DIR
#   scripts/minio.sh stop PID             stop the one started with that pid file
#
# Credentials come from MINIO_ROOT_USER and MINIO_ROOT_PASSWORD.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin/minio"
stamp="$root/bin/.minio-version"

log() { printf '{"event":"%s","msg":"%s"}\n' "$1" "$2" >&2; }

install() {
  if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$MINIO_VERSION" ]]; then
    return
  fi
  log minio_install_started "building MinIO $MINIO_VERSION into ./bin (a few minutes the first time)"
  mkdir -p "$root/bin"
  local start=$SECONDS
  GOBIN="$root/bin" go install "$MINIO_MODULE@$MINIO_VERSION" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && log minio_install_progress "still building MinIO: $((SECONDS - start))s"
  done
  wait "$pid"
  echo "$MINIO_VERSION" >"$stamp"
  log minio_install_done "MinIO built in $((SECONDS - start))s"
}

start() {
  local addr=$1 dir=$2 pidfile=$3
  install
  mkdir -p "$dir"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log minio_running "MinIO already running (pid $(cat "$pidfile"))"
    return
  fi
  : "${MINIO_ROOT_USER:?MINIO_ROOT_USER must be set}"
  : "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD must be set}"
  MINIO_BROWSER=off MINIO_UPDATE=off "$bin" server --quiet --address "$addr" "$dir" \
    >"$dir.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if curl -fsS "http://$addr/minio/health/live" >/dev/null 2>&1; then
      log minio_started "MinIO listening on $addr"
      return
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log minio_failed "MinIO exited; its log follows"
      cat "$dir.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  log minio_failed "MinIO did not answer on $addr within 60s"
  exit 1
}

stop() {
  local pidfile=$1
  [[ -f "$pidfile" ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 install | start ADDR DIR PIDFILE | stop PIDFILE" >&2; exit 2 ;;
esac
