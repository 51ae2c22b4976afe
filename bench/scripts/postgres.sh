#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for benchmarks: its own cluster in a temp dir, on PORT (default 7432), trust
# authentication for user `warden`, default durability (fsync and synchronous_commit on). As root, the cluster
# belongs to the `postgres` user. Prints the URL; stop it with `bench/scripts/postgres.sh stop`.
set -euo pipefail
PORT=${PORT:-7432}
DIR=${PG_BENCH_DIR:-/tmp/warden-bench-pg-$PORT}
BIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "${1:-}" = stop ]; then
  as_owner "$BIN/pg_ctl" -D "$DIR/data" stop -m fast >/dev/null && rm -rf "$DIR"
  exit 0
fi
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"
[ -d "$DIR/data" ] || as_owner "$BIN/initdb" -D "$DIR/data" -U warden -A trust -E UTF8 --locale=C >/dev/null
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300 ${PG_OPTS:-}" start >/dev/null
echo "postgres://warden@127.0.0.1:$PORT/postgres"
