#!/usr/bin/env bash
# Installs what the tests need (redis-server, redis-benchmark, PostgreSQL's and MariaDB's server binaries, etcd
# and etcdctl, ZooKeeper (and the Java it runs on), protoc to build the etcd client, Node.js and Python's venv for the clients,
# Chromium for the dashboard's browser test) if missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v redis-benchmark && command -v redis-cli; } >/dev/null 2>&1 || need+=(redis-tools)
# The testkit runs its own throwaway PostgreSQL (initdb + postgres on a free port), never the machine's.
{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } || need+=(mariadb-server)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java; } >/dev/null 2>&1 || need+=(zookeeper)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || need+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# One full build, never rebuilt here: incremental caches would only take disk.
export CARGO_INCREMENTAL=0
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked -- --skip chaos_
# `warden bench` is a feature of the binary (left out of the default build): lint and test it too.
cargo clippy -p warden-cli --features bench --all-targets --locked -- -D warnings
cargo test -p warden-cli --features bench --locked --test cli
# The Node.js client against the `warden` binary the tests above built.
cargo build -p warden-cli --locked
(cd clients/node && node --test test/*.test.mjs)
# The dashboard in headless Chromium, driven by playwright-core (pinned in its package-lock.json); screenshots
# land in target/dashboard/.
(cd crates/warden-server/dashboard-test && npm ci --no-audit --no-fund --silent && node --test dashboard.test.mjs)
# The Python client, with pytest (pinned) in a venv of its own.
[ -x target/pyvenv/bin/python ] || python3 -m venv target/pyvenv
target/pyvenv/bin/pip install -q --require-hashes -r clients/python/requirements-dev.txt
(cd clients/python && PYTHONPATH=. ../../target/pyvenv/bin/python -m pytest -q)
# The chaos suite (faults injected under load), one scenario at a time, each printing its figure.
cargo test --workspace --locked -- chaos_ --test-threads=1 --nocapture
