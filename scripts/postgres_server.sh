#!/usr/bin/env bash
# A throwaway PostgreSQL server for the history store's tests (tests/test_history_store.py), from Debian's
# postgresql package (installed when missing, as root): a fresh cluster in the folder $EDGEOPT_PG_DIR (required,
# for start and stop alike: each CI job gives its own, e.g. from `mktemp -d`) listening on 127.0.0.1 only, no Unix
# socket outside that folder, trust authentication for that loopback address only, database edgeopt_test. The port
# is $EDGEOPT_PG_PORT, else a free one the system picks; start refuses a port that is already taken, so two jobs on
# one machine never share a server.
#   EDGEOPT_PG_DIR=/tmp/x bash scripts/postgres_server.sh start  # prints the SQLAlchemy URL on stdout
#   EDGEOPT_PG_DIR=/tmp/x bash scripts/postgres_server.sh stop   # stops that server and removes what start made
# start wants $EDGEOPT_PG_DIR missing (it creates it) or empty (a `mktemp -d`) and records what it made in
# $EDGEOPT_PG_DIR/edgeopt-postgres.state; stop touches only a folder with that file, removes the cluster, its logs
# and that file, and the folder itself only when start created it (an empty folder it was given stays, for its
# maker to remove). The server refuses to run as root: as root the folder is handed to the postgres user the
# package creates (its parent folders must let that user through, as /tmp does).
set -euo pipefail
action=${1:?usage: EDGEOPT_PG_DIR=DIR postgres_server.sh start|stop}
: "${EDGEOPT_PG_DIR:?set EDGEOPT_PG_DIR to the cluster folder (missing or empty for start; e.g. from mktemp -d)}"
dir=$(realpath -m -- "$EDGEOPT_PG_DIR")
state="$dir/edgeopt-postgres.state"

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_is_free() {  # nothing listens on 127.0.0.1:$1 (a bind test: a server of any user, PostgreSQL or not)
  python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
case "$action" in
  start)
    if [ -e "$dir" ] && { [ ! -d "$dir" ] || [ -n "$(ls -A -- "$dir")" ]; }; then
      echo "postgres_server.sh: $dir is not an empty folder; give a new or empty EDGEOPT_PG_DIR" \
           "(stop a server started there with: EDGEOPT_PG_DIR=$dir bash $0 stop)" >&2
      exit 1
    fi
    if [ -z "$bin" ]; then
      if [ "$(id -u)" != 0 ]; then echo "postgresql is not installed (apt-get install -y postgresql)" >&2; exit 1; fi
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
      bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    port=${EDGEOPT_PG_PORT:-$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}
    if ! port_is_free "$port" || "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      echo "postgres_server.sh: port $port on 127.0.0.1 is taken; choose another EDGEOPT_PG_PORT (or unset it)" >&2
      exit 1
    fi
    created=0
    if [ ! -d "$dir" ]; then mkdir -p -- "$dir"; created=1; fi
    printf 'created=%s\nport=%s\n' "$created" "$port" >"$state"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    if ! as_owner test -w "$dir" -a -x "$dir"; then
      echo "postgres_server.sh: the postgres user cannot write in $dir (a parent folder shuts it out?)" >&2
      exit 1
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U edgeopt --auth=trust --no-instructions -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=50" start >&2 \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U edgeopt edgeopt_test >&2
    echo "postgresql://edgeopt@127.0.0.1:$port/edgeopt_test"
    ;;
  stop)
    if [ ! -e "$dir" ]; then exit 0; fi  # already stopped and removed
    if [ ! -f "$state" ]; then
      echo "postgres_server.sh: $dir was not made by 'postgres_server.sh start' (no $state); leaving it" >&2
      exit 0
    fi
    if [ -f "$dir/data/postmaster.pid" ]; then
      if [ -z "$bin" ]; then echo "postgres_server.sh: postgresql is gone; cannot stop the server in $dir" >&2; exit 1; fi
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 \
        || as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2
    fi
    created=$(sed -n 's/^created=//p' "$state")
    port=$(sed -n 's/^port=//p' "$state")
    rm -rf -- "$dir/data" "$dir/initdb.log" "$dir/server.log"
    rm -f -- "$dir/.s.PGSQL.$port" "$dir/.s.PGSQL.$port.lock"  # left by a server that was killed
    rm -f -- "$state"
    if [ "$created" = 1 ]; then
      rmdir -- "$dir" || echo "postgres_server.sh: $dir holds files start did not make; leaving it" >&2
    fi
    ;;
  *) echo "usage: EDGEOPT_PG_DIR=DIR postgres_server.sh start|stop" >&2; exit 2 ;;
esac
