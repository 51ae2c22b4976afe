#!/usr/bin/env bash
# Starts a throwaway MariaDB for benchmarks: its own data directory in a temp dir, on PORT (default 7306), user
# root without a password over TCP on 127.0.0.1, a database `warden`, default durability (every commit flushed
# to disk: innodb_flush_log_at_trx_commit=1) unless MYSQL_OPTS says otherwise. Prints the URL; stop it with
# `bench/scripts/mysql.sh stop`.
set -euo pipefail
PORT=${PORT:-7306}
DIR=${MYSQL_BENCH_DIR:-/tmp/warden-bench-mysql-$PORT}
SERVER=$(command -v mariadbd || echo /usr/sbin/mariadbd)
USER_ARG=(); [ "$(id -u)" = 0 ] && USER_ARG=(--user=root)
if [ "${1:-}" = stop ]; then
  [ -f "$DIR/pid" ] && kill "$(cat "$DIR/pid")" 2>/dev/null || true
  for _ in $(seq 100); do [ -e "$DIR/pid" ] || break; sleep 0.1; done
  rm -rf "$DIR"
  exit 0
fi
mkdir -p "$DIR/tmp"
[ -d "$DIR/data" ] || mariadb-install-db --no-defaults --datadir="$DIR/data" --tmpdir="$DIR/tmp" \
  --auth-root-authentication-method=normal --skip-test-db "${USER_ARG[@]}" >/dev/null
"$SERVER" --no-defaults --datadir="$DIR/data" --tmpdir="$DIR/tmp" --port="$PORT" --socket="$DIR/sock" \
  --pid-file="$DIR/pid" --bind-address=127.0.0.1 --skip-log-bin --max-connections=300 "${USER_ARG[@]}" \
  ${MYSQL_OPTS:-} >"$DIR/log" 2>&1 &
for _ in $(seq 300); do grep -q "ready for connections" "$DIR/log" 2>/dev/null && break; sleep 0.1; done
mariadb --no-defaults -uroot -h127.0.0.1 -P"$PORT" -e "CREATE DATABASE IF NOT EXISTS warden"
echo "mysql://root@127.0.0.1:$PORT/warden"
