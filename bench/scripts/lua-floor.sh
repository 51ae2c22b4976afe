#!/bin/bash
# Redis's capacity for three lock cycles, side by side in one run (Redis pinned to CPU 0, redis-benchmark to
# CPU 1, so the figure is what one Redis core can serve):
#   floor:  lua-floor.lua, a fenced cycle with a lease record in four commands (SET GET fence, SET NX PXAT,
#           GET, DEL), N cycles per call;
#   warden: warden's batch script, N uncontended acquires and their releases per call (as the group commit
#           sends them);
#   rslock: the plain lock's two top-level calls (SET NX PX, then an EVALSHA of GET + DEL), pipelined.
# Prints cycles/s for each, three rounds.
#
#   bench/scripts/lua-floor.sh [N]     (N default 8: what the uniform run averages per call)   PORT=7393
set -euo pipefail
N=${1:-8}
S=$(dirname "$0")
D=$S/../../crates/warden/src/backend/redis/scripts
P=${PORT:-7393}
taskset -c 0 redis-server --port "$P" --save "" --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p "$P" shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p "$P" ping >/dev/null 2>&1 && break; sleep 0.1; done
floor=$(redis-cli -p "$P" script load "$(cat "$S/lua-floor.lua")")
batch=$(redis-cli -p "$P" script load "$(cat "$D/lib.lua" "$D/queue.lua" "$D/ops.lua" "$D/batch.lua")")
unlock=$(redis-cli -p "$P" script load 'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end')
mapfile -t wargs < <(python3 "$S/lua-args.py" "$N")
mapfile -t fargs < <(python3 - "$N" <<'PY'
import sys
n = int(sys.argv[1])
a = ["", "bench:chan", "1", "60000", "10000"]
toks = ["%03d%032d" % (i * 7, i) for i in range(n)]
for i in range(n):
    a += ["a", toks[i], "10000", "client1", "res%d" % i]
for i in range(n):
    a += ["r", toks[i], "res%d" % i]
print("\n".join(a))
PY
)
[ "$(redis-cli -p "$P" evalsha "$floor" 0 "${fargs[@]}" | tail -1)" = 1 ] || { echo "the floor script failed" >&2; exit 1; }
[ -n "$(redis-cli -p "$P" evalsha "$batch" 0 "${wargs[@]}" | sed -n 2p)" ] || { echo "the batch script failed" >&2; exit 1; }
rps() { taskset -c 1 redis-benchmark -p "$P" "$@" 2>/dev/null | tr '\r' '\n' | grep "requests per second" | tail -1 | sed 's/.*: \([0-9.]*\) requests.*/\1/'; }
calls=$((160000 / N))
for _ in 1 2 3; do
  f=$(rps -c 1 -P 4 -n "$calls" evalsha "$floor" 0 "${fargs[@]}")
  w=$(rps -c 1 -P 4 -n "$calls" evalsha "$batch" 0 "${wargs[@]}")
  s=$(rps -c 4 -P 16 -n 1000000 -r 1000 set key:__rand_int__ v NX PX 10000)
  e=$(rps -c 4 -P 16 -n 1000000 -r 1000 evalsha "$unlock" 1 key:__rand_int__ v)
  python3 -c "f,w,s,e,n=$f,$w,$s,$e,$N; r=1/(1/s+1/e); print('%d per call: floor %.0f  warden %.0f  rslock %.0f cycles/s  (floor/rslock %.2f, warden/rslock %.2f)' % (n, f*n, w*n, r, f*n/r, w*n/r))"
done
