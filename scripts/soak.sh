#!/usr/bin/env bash
# The chaos suite, long and wide: every scenario under load for WARDEN_CHAOS_SECS seconds (default 150) with
# WARDEN_CHAOS_CLIENTS clients (default 32), built in release mode. About 21 minutes with the defaults.
# Each scenario prints its figure line; the history checker and the fenced store fail the run on any
# overlap, repeated or decreasing token, or accepted stale write.
set -euo pipefail
cd "$(dirname "$0")/.."
export WARDEN_CHAOS_SECS="${WARDEN_CHAOS_SECS:-150}"
export WARDEN_CHAOS_CLIENTS="${WARDEN_CHAOS_CLIENTS:-32}"
echo "soak: ${WARDEN_CHAOS_SECS}s per scenario, ${WARDEN_CHAOS_CLIENTS} clients ($(date -u +%FT%TZ))"
start=$(date +%s)
log="$(mktemp -t warden-soak.XXXXXX)"
set +e
cargo test --release --workspace --locked -- chaos_ --test-threads=1 --nocapture >"$log" 2>&1
status=$?
set -e
grep -E '(grants in|waiters,|clients filling|client processes|instance killed)|panicked|FAILED' "$log" || true
echo "soak: $(( $(date +%s) - start ))s, exit ${status} (full output: $log)"
exit "${status}"
