#!/usr/bin/env bash
# Starts a throwaway Redis Cluster for benchmarks: PRIMARIES (default 3) primaries without replicas on ports
# PORT.. (default 7401..), nothing persisted, each in its own temp dir. Prints the redis+cluster:// URL; stop it
# with `bench/scripts/redis-cluster.sh stop`.
set -euo pipefail
PORT=${PORT:-7401}
PRIMARIES=${PRIMARIES:-3}
DIR=${CLUSTER_BENCH_DIR:-/tmp/warden-bench-cluster-$PORT}
ports=$(seq "$PORT" $((PORT + PRIMARIES - 1)))
if [ "${1:-}" = stop ]; then
  for p in $ports; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
  exit 0
fi
addrs=()
for p in $ports; do
  mkdir -p "$DIR/$p"
  (cd "$DIR/$p" && redis-server --port "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-port $((p + 1000)) --save "" --appendonly no --daemonize yes --logfile log)
  addrs+=("127.0.0.1:$p")
done
for p in $ports; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis-cli --cluster create "${addrs[@]}" --cluster-yes >/dev/null
for p in $ports; do
  for _ in $(seq 200); do redis-cli -p "$p" cluster info | grep -q cluster_state:ok && break; sleep 0.05; done
done
(IFS=,; echo "redis+cluster://${addrs[*]}")
