#!/usr/bin/env bash
# Starts a throwaway ZooKeeper ensemble for benchmarks: MEMBERS servers (default 1) in temp dirs, clients on
# ports from PORT (default 12181) up, default durability (every transaction fsynced to the log before it is
# answered), Debian's package (/usr/share/java/zookeeper.jar, or ZOOKEEPER_JAR). Prints the URL; stop it with
# `bench/scripts/zookeeper.sh stop`.
set -euo pipefail
PORT=${PORT:-12181}
MEMBERS=${MEMBERS:-1}
JAR=${ZOOKEEPER_JAR:-/usr/share/java/zookeeper.jar}
DIR=${ZK_BENCH_DIR:-/tmp/warden-bench-zk-$PORT}
if [ "${1:-}" = stop ]; then
  [ -f "$DIR/pids" ] && xargs -r kill < "$DIR/pids" 2>/dev/null || true
  sleep 1
  rm -rf "$DIR"
  exit 0
fi
mkdir -p "$DIR"
servers=""
hosts=""
for i in $(seq 0 $((MEMBERS - 1))); do
  servers+="server.$((i + 1))=127.0.0.1:$((PORT + 100 + i)):$((PORT + 200 + i))"$'\n'
  hosts+="${hosts:+,}127.0.0.1:$((PORT + i))"
done
: > "$DIR/pids"
for i in $(seq 0 $((MEMBERS - 1))); do
  d="$DIR/m$i"
  mkdir -p "$d/data"
  echo $((i + 1)) > "$d/data/myid"
  {
    echo "tickTime=500"; echo "initLimit=20"; echo "syncLimit=5"; echo "dataDir=$d/data"
    echo "clientPort=$((PORT + i))"; echo "clientPortAddress=127.0.0.1"; echo "admin.enableServer=false"
    echo "maxClientCnxns=0"; echo "4lw.commands.whitelist=srvr"
    [ "$MEMBERS" -gt 1 ] && printf "%s" "$servers"
  } > "$d/zoo.cfg"
  java -Xmx512m -Dzookeeper.log.dir="$d" -cp "$JAR" org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$d/zoo.cfg" > "$d/zookeeper.log" 2>&1 &
  echo $! >> "$DIR/pids"
done
for i in $(seq 0 $((MEMBERS - 1))); do
  for _ in $(seq 300); do
    (exec 3<>/dev/tcp/127.0.0.1/$((PORT + i)) && echo srvr >&3 && grep -q Mode <&3) 2>/dev/null && break
    sleep 0.1
  done
done
echo "zk://$hosts"
