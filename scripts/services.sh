#!/usr/bin/env bash
# Checks that PostgreSQL and Redis answer on their local ports, and starts the
# machine's own instances when they do not.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo '{"event":"service_starting","service":"postgres"}' >&2
  if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
fi
if ! redis_up; then
  echo '{"event":"service_starting","service":"redis"}' >&2
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  fi
  for _ in $(seq 1 60); do redis_up && break; sleep 0.5; done
  redis_up || { echo "Redis is not answering on 127.0.0.1:6379" >&2; exit 1; }
fi
