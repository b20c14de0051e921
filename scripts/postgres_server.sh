#!/usr/bin/env bash
# A throwaway PostgreSQL server for the history store's tests (tests/test_history_store.py), from Debian's
# postgresql package (installed when missing, as root): a fresh cluster in $EDGEOPT_PG_DIR (default
# ${TMPDIR:-/tmp}/edgeopt-postgres) listening on 127.0.0.1 only (port $EDGEOPT_PG_PORT, default 55432, no Unix
# socket outside the cluster folder), trust authentication for that loopback address only, database edgeopt_test.
#   bash scripts/postgres_server.sh start   # prints the SQLAlchemy URL on stdout
#   bash scripts/postgres_server.sh stop    # stops the server and removes the cluster
# The server refuses to run as root: as root the cluster belongs to the postgres user the package creates.
set -euo pipefail
action=${1:?usage: postgres_server.sh start|stop}
dir=${EDGEOPT_PG_DIR:-${TMPDIR:-/tmp}/edgeopt-postgres}
port=${EDGEOPT_PG_PORT:-55432}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
case "$action" in
  start)
    if [ -z "$bin" ]; then
      if [ "$(id -u)" != 0 ]; then echo "postgresql is not installed (apt-get install -y postgresql)" >&2; exit 1; fi
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
      bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    if [ -f "$dir/data/postmaster.pid" ]; then as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U edgeopt --auth=trust --no-instructions -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=50" start >&2 \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U edgeopt edgeopt_test >&2
    echo "postgresql://edgeopt@127.0.0.1:$port/edgeopt_test"
    ;;
  stop)
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
  *) echo "usage: postgres_server.sh start|stop" >&2; exit 2 ;;
esac
