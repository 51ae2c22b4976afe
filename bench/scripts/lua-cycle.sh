#!/bin/bash
# Server time of one warden lock cycle (the acquire script's uncontended path, then the release script), with
# the network and the client taken out: both scripts' bodies run in one EVALSHA, driven by redis-benchmark
# (one connection, 50 in flight, 1000 resources), read from INFO commandstats. Compare variants of the scripts
# in the same minute: this VM's speed drifts by tens of percent over minutes.
# Then the latency redis-benchmark itself gets for these commands with 25 cycles (50 scripts' work) in flight on
# one connection: the floor under warden's acquire latency at 50 workers, with no client library at all.
#
#   bench/scripts/lua-cycle.sh [SCRIPTS_DIR]      (default: crates/warden/src/backend/scripts)
#   PORT=7390 (a redis-server of your own: `redis-server --port 7390 --save "" --appendonly no --daemonize yes`)
set -euo pipefail
D=${1:-$(dirname "$0")/../../crates/warden/src/backend/scripts}
P=${PORT:-7390}
BODY="$(cat "$D/record.lua" "$D/queue.lua")
local RES = ARGV[1]
local L, F, Q, W = keys_for('', RES)
local TOKEN = 'tok' .. RES
local function acq(KEYS, ARGV)
$(cat "$D/acquire.lua")
end
local function rel(KEYS, ARGV)
$(cat "$D/release.lua")
end
local a = acq({L, F, Q, W, 'TOK', 'IDX', 'STATS', 'TOP'},
  {TOKEN, 'exclusive', '10000', 'client1', '', '3000', '-1', '0', '1000', RES, 'chan'})
if a[1] ~= 1 then return redis.error_reply('acquire refused') end
local r = rel({'TOK', 'IDX', 'STATS', 'TOP'}, {TOKEN, '', '', 'chan', '1'})
if type(r) ~= 'table' then return redis.error_reply('release: ' .. tostring(r)) end
return 1"
sha=$(redis-cli -p "$P" script load "$BODY")
out=$(redis-cli -p "$P" evalsha "$sha" 0 probe)
[ "$out" = 1 ] || { echo "the cycle script failed: $out" >&2; exit 1; }
for i in 1 2 3 4 5 6; do
  redis-cli -p "$P" config resetstat >/dev/null
  redis-benchmark -p "$P" -c 1 -P 50 -n 300000 -r 1000 evalsha "$sha" 0 res__rand_int__ >/dev/null 2>&1
  redis-cli -p "$P" info commandstats | grep evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/'
done | sort -n | head -3 | tr '\n' ' ' | sed 's/^/cycle server time, best 3 of 6 (us): /'
echo
redis-benchmark -p "$P" -c 1 -P 25 -n 300000 -r 1000 evalsha "$sha" 0 res__rand_int__ 2>&1 | tr '\r' '\n' |
  grep -A4 'latency summary' | tail -2 | sed 's/^/25 cycles in flight, latency (ms): /'
