#!/usr/bin/env bash
# Standalone throughput of Corral and Apache ZooKeeper 3.8 (Debian's `zookeeper` package, if
# installed) under the same load from `corral bench`, with durable writes on both (Corral
# fsyncs its log; ZooKeeper runs with its default forceSync=yes).
#   bench/compare_standalone.sh [SECONDS_PER_WORKLOAD]
# Not a test: it prints a table. 127.0.0.1 only; stops only the servers it started.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
bin=$here/target/release/corral
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ruok() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf ruok >&3 && [ "$(timeout 2 cat <&3)" = imok ]) 2>/dev/null; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status"; }

workloads=(get set create mixed)
run_all() { # name port
  for w in "${workloads[@]}"; do
    out=$("$bin" bench --server "127.0.0.1:$2" --workload "$w" --clients 16 --in-flight 8 \
      --value-size 100 --keys 10000 --duration "${secs}s" --warmup 2s 2>/dev/null || true)
    tput=$(sed -n 's/^throughput *\([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/^latency ms *//p' <<<"$out")
    printf '| %s | %s | %s | %s |\n' "$1" "$w" "${tput:-failed}" "${lat:-}"
  done
  printf '| %s | idle-after-run RSS | %s MiB | |\n' "$1" "$(rss_mb)"
}

echo "| server | workload | ops/s | latency (ms) |"
echo "| --- | --- | --- | --- |"
port=$(free_port)
printf 'tickTime=2000\ndataDir=%s/corral\nclientPort=%s\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n' "$work" "$port" >"$work/corral.cfg"
"$bin" server "$work/corral.cfg" >"$work/corral.log" 2>&1 & pid=$!
until ruok "$port"; do sleep 0.01; done
run_all corral "$port"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

jar=$(dpkg -L libzookeeper-java 2>/dev/null | grep '/zookeeper.jar$' | head -1 || true)
if [ -z "$jar" ]; then echo "(Apache ZooKeeper not installed: apt-get install zookeeper)"; exit 0; fi
cp="$jar"
for j in slf4j-api.jar slf4j-simple.jar slf4j-log4j12.jar log4j-1.2.jar; do
  [ -f "/usr/share/java/$j" ] && cp="$cp:/usr/share/java/$j"
done
port=$(free_port)
mkdir -p "$work/zk"
printf 'tickTime=2000\ndataDir=%s/zk\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n' "$work" "$port" >"$work/zk.cfg"
java -Dzookeeper.4lw.commands.whitelist='*' -cp "$cp" org.apache.zookeeper.server.ZooKeeperServerMain "$work/zk.cfg" >"$work/zk.log" 2>&1 & pid=$!
until ruok "$port"; do sleep 0.05; done
sleep 1 # ZooKeeper answers ruok before it takes sessions
run_all zookeeper-3.8 "$port"
