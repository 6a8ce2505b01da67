#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster from the installed binaries on a free loopback port and
# prints its admin URL. PostgreSQL refuses to run as root, so as root the cluster belongs to an
# unprivileged system user (created once). Stop it with: pg-throwaway.sh stop <dir>
set -euo pipefail

pg_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] && [ -x "$found/$1" ] || { echo "pg-throwaway: $1 not found (install postgresql)" >&2; exit 1; }
  echo "$found/$1"
}

# From /: the checkout may sit in a directory only root can enter (a `mktemp -d` clone is 0700),
# and PostgreSQL's tools fail when they cannot change into their working directory.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u x402pg -- "$@"); else "$@"; fi
}

if [ "${1:-}" = "stop" ]; then
  dir=$2
  as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && ! id x402pg >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin x402pg
fi
dir=$(mktemp -d /tmp/x402-pg.XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" -eq 0 ] && chown x402pg "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner "$(pg_bin initdb)" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# fsync off: this cluster lives for one test run; durability is not what it tests.
as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=400" \
  start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
echo "$dir postgres://postgres@127.0.0.1:$port/postgres"
