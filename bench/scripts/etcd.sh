#!/usr/bin/env bash
# Starts a throwaway etcd cluster for benchmarks: MEMBERS members (default 1) in temp dirs, clients on ports
# from PORT (default 12379) up, default durability (every write fsynced to the WAL). Prints the URL; stop it
# with `bench/scripts/etcd.sh stop`.
set -euo pipefail
PORT=${PORT:-12379}
MEMBERS=${MEMBERS:-1}
DIR=${ETCD_BENCH_DIR:-/tmp/warden-bench-etcd-$PORT}
if [ "${1:-}" = stop ]; then
  [ -f "$DIR/pids" ] && xargs -r kill < "$DIR/pids" 2>/dev/null || true
  sleep 1
  rm -rf "$DIR"
  exit 0
fi
mkdir -p "$DIR"
initial=""
hosts=""
for i in $(seq 0 $((MEMBERS - 1))); do
  initial+="${initial:+,}m$i=http://127.0.0.1:$((PORT + 100 + i))"
  hosts+="${hosts:+,}127.0.0.1:$((PORT + i))"
done
: > "$DIR/pids"
for i in $(seq 0 $((MEMBERS - 1))); do
  c=http://127.0.0.1:$((PORT + i))
  p=http://127.0.0.1:$((PORT + 100 + i))
  etcd --name "m$i" --data-dir "$DIR/m$i" --listen-client-urls "$c" --advertise-client-urls "$c" \
    --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" --initial-cluster "$initial" \
    --initial-cluster-state new --logger zap --log-outputs "$DIR/m$i.log" >/dev/null 2>&1 &
  echo $! >> "$DIR/pids"
done
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$(echo "$hosts" | sed 's/[^,]*/http:\/\/&/g')" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
echo "etcd://$hosts"
