#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite.
#   scripts/pg.sh start   installs PostgreSQL from Debian packages if missing, starts a fresh
#                         server in a temporary directory and prints its URL on stdout
#   scripts/pg.sh stop    stops it and removes its directory
set -euo pipefail
state=/tmp/signalbox-test-pg
port="${SIGNALBOX_TEST_PG_PORT:-55432}"

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do
    [ -x "$b/initdb" ] && { echo "$b"; return 0; }
  done
  return 1
}

case "${1:-}" in
  start)
    if ! bin="$(find_bin)"; then
      echo "installing postgresql" >&2
      if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      else
        sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      fi
      bin="$(find_bin)"
    fi
    "$0" stop >/dev/null 2>&1 || true
    mkdir -p "$state"
    # initdb refuses to run as root: run the server as the postgres user then.
    run=()
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
      chown postgres "$state"
      run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bin/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 >/dev/null
    "${run[@]}" "$bin/pg_ctl" -D "$state/data" -l "$state/log" -w \
      -o "-h 127.0.0.1 -p $port -k $state -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    bin="$(find_bin)" || exit 0
    [ -d "$state/data" ] || exit 0
    run=()
    [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$bin/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$state"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
