#!/bin/bash
# Redis instructions per lock cycle of warden's batch script, counted by callgrind (deterministic: the same
# count whatever else the machine does, unlike lua-batch.sh's microseconds). Runs redis-server under callgrind
# twice, once with 10 calls and once with 60 calls of N acquires + N releases (the uncontended path, as the group
# commit sends them), and divides the difference by 50 × N, so start-up and loading cancel out.
#
#   bench/scripts/lua-callgrind.sh [N] [SCRIPTS_DIR]     (N default 25; SCRIPTS_DIR default the crate's scripts)
#   needs valgrind; PORT=7391
set -euo pipefail
N=${1:-25}
D=${2:-$(dirname "$0")/../../crates/warden/src/backend/redis/scripts}
P=${PORT:-7391}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
mapfile -t args < <(python3 "$(dirname "$0")/lua-args.py" "$N")
run() {
  rm -f "$OUT"/cg.*
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" redis-server --port "$P" --save "" \
    --appendonly no >/dev/null 2>&1 &
  local vp=$!
  for _ in $(seq 200); do redis-cli -p "$P" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local sha
  sha=$(redis-cli -p "$P" script load "$(cat "$D/lib.lua" "$D/queue.lua" "$D/ops.lua" "$D/batch.lua")")
  [ -n "$(redis-cli -p "$P" evalsha "$sha" 0 "${args[@]}" | sed -n 2p)" ] || { echo "the batch script failed" >&2; exit 1; }
  redis-benchmark -p "$P" -c 1 -P 1 -n "$1" evalsha "$sha" 0 "${args[@]}" >/dev/null 2>&1
  redis-cli -p "$P" shutdown nosave >/dev/null 2>&1 || true
  wait "$vp" || true
  grep -h "^summary\|^totals" "$OUT"/cg.* | awk '{print $2}' | head -1
}
a=$(run 10)
b=$(run 60)
echo "Redis instructions per lock cycle, $N cycles per call: $(( (b - a) / (50 * N) ))"
