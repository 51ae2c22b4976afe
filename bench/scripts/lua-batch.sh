#!/bin/bash
# Server time of warden's lock cycle inside Redis, with the network and the client taken out: one script call
# holding N acquires (the uncontended path) and then their N releases, as the group commit sends them,
# driven by redis-benchmark (one connection, 20 calls in flight), read from INFO commandstats.
# This VM's speed drifts by tens of percent over minutes: compare variants in the same minute.
#
#   bench/scripts/lua-batch.sh [N] [SCRIPTS_DIR]     (N default 25; SCRIPTS_DIR default the crate's scripts)
#   PORT=7390 (a redis-server of your own: `redis-server --port 7390 --save "" --appendonly no --daemonize yes`)
set -euo pipefail
N=${1:-25}
D=${2:-$(dirname "$0")/../../crates/warden/src/backend/redis/scripts}
P=${PORT:-7390}
sha=$(redis-cli -p "$P" script load "$(cat "$D/lib.lua" "$D/queue.lua" "$D/ops.lua" "$D/batch.lua")")
# Header (prefix, channel, handoff, retain_ms, max_waiters), then N acquires and N releases, each on its own
# resource and slot.
mapfile -t args < <(python3 "$(dirname "$0")/lua-args.py" "$N")
check=$(redis-cli -p "$P" evalsha "$sha" 0 "${args[@]}" | sed -n 2p)
[ -n "$check" ] || { echo "the batch script failed" >&2; exit 1; }
for i in 1 2 3 4 5; do
  redis-cli -p "$P" config resetstat >/dev/null
  redis-benchmark -p "$P" -c 1 -P 20 -n $((100000 / N)) evalsha "$sha" 0 "${args[@]}" >/dev/null 2>&1
  redis-cli -p "$P" info commandstats | grep evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/'
done | sort -n | head -3 | awk -v n="$N" '{printf "%.1f ", $1 / n}' | sed "s/^/server time per lock cycle, $N cycles per call, best 3 of 5 (us): /"
echo
