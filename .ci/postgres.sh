#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for Parley's tests.
#
# Source it (`. .ci/postgres.sh`) to get, in the calling shell:
#   PARLEY_TEST_POSTGRES       connection URL (role `parley`, a superuser)
#   PARLEY_TEST_POSTGRES_DATA  the cluster's data directory
#   PARLEY_TEST_POSTGRES_BIN   the directory of initdb, pg_ctl and psql
# and a function `parley_postgres_stop` that stops the cluster and deletes it.
# Run it directly to start a cluster and print how to use and stop it.
#
# Installs the `postgresql` package if no server is installed (Debian; run as
# root). The server runs as user `postgres`, on a free 127.0.0.1 port with
# trust authentication, its data in a temporary directory.
set -euo pipefail

parley_pg_as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

parley_pg_bin_dir() {
  local initdb
  initdb=$(ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$initdb" ]; then
    dirname "$initdb"
  fi
}

if [ -z "$(parley_pg_bin_dir)" ]; then
  echo "installing: postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PARLEY_TEST_POSTGRES_BIN=$(parley_pg_bin_dir)
if [ -z "$PARLEY_TEST_POSTGRES_BIN" ]; then
  echo "postgres.sh: no PostgreSQL server found under /usr/lib/postgresql" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

parley_pg_dir=$(mktemp -d /tmp/parley-postgres.XXXXXX)
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$parley_pg_dir"
fi
PARLEY_TEST_POSTGRES_DATA=$parley_pg_dir/data
parley_pg_as_postgres "$PARLEY_TEST_POSTGRES_BIN/initdb" -D "$PARLEY_TEST_POSTGRES_DATA" \
  -U postgres -A trust -E UTF8 --no-locale --no-sync >"$parley_pg_dir/initdb.log" 2>&1 || {
  cat "$parley_pg_dir/initdb.log" >&2
  exit 1
}

# A port nothing listens on; if another process takes it before the server
# does, the start fails and the next port is tried.
parley_pg_port=
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    continue
  fi
  if parley_pg_as_postgres "$PARLEY_TEST_POSTGRES_BIN/pg_ctl" -D "$PARLEY_TEST_POSTGRES_DATA" \
    -l "$parley_pg_dir/server.log" -w -t 60 \
    -o "-p $port -k $parley_pg_dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
    start >/dev/null; then
    parley_pg_port=$port
    break
  fi
done
if [ -z "$parley_pg_port" ]; then
  echo "postgres.sh: PostgreSQL did not start; its log:" >&2
  cat "$parley_pg_dir/server.log" >&2 || true
  exit 1
fi

parley_postgres_stop() {
  parley_pg_as_postgres "$PARLEY_TEST_POSTGRES_BIN/pg_ctl" -D "$PARLEY_TEST_POSTGRES_DATA" \
    -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$parley_pg_dir"
}

parley_pg_as_postgres "$PARLEY_TEST_POSTGRES_BIN/psql" -h 127.0.0.1 -p "$parley_pg_port" \
  -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE ROLE parley LOGIN SUPERUSER" >/dev/null

PARLEY_TEST_POSTGRES="postgres://parley@127.0.0.1:$parley_pg_port/postgres"
export PARLEY_TEST_POSTGRES PARLEY_TEST_POSTGRES_DATA PARLEY_TEST_POSTGRES_BIN
echo "PostgreSQL for tests: PARLEY_TEST_POSTGRES=$PARLEY_TEST_POSTGRES"

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "export PARLEY_TEST_POSTGRES=$PARLEY_TEST_POSTGRES"
  echo "export PARLEY_TEST_POSTGRES_DATA=$PARLEY_TEST_POSTGRES_DATA"
  echo "export PARLEY_TEST_POSTGRES_BIN=$PARLEY_TEST_POSTGRES_BIN"
  echo "stop it with: runuser -u postgres -- $PARLEY_TEST_POSTGRES_BIN/pg_ctl -D $PARLEY_TEST_POSTGRES_DATA stop; rm -rf $parley_pg_dir"
fi
