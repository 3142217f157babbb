#!/usr/bin/env bash
# Write latency with and without background snapshots, on a tree of ZNODES znodes.
#   bench/snapshot_latency.sh [ZNODES]
# Run 1: snapCount so large that no snapshot is taken. Run 2: snapCount=20000, so that at
# tens of thousands of writes per second a snapshot is being written nearly all the time.
# Not a test: it prints numbers. 127.0.0.1 only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
znodes=${1:-300000}
bin=$here/target/release/corral
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cfg() { printf 'tickTime=2000\ndataDir=%s/data\nclientPort=%s\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nsnapCount=%s\nmaxClientCnxns=0\n' "$work" "$port" "$1" >"$work/zoo.cfg"; }
ruok() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf ruok >&3 && [ "$(timeout 2 cat <&3)" = imok ]) 2>/dev/null; }
srvr() { exec 3<>"/dev/tcp/127.0.0.1/$port"; printf srvr >&3; timeout 2 cat <&3 | sed -n "s/^$1: //p"; exec 3<&-; }
start() { "$bin" server "$work/zoo.cfg" >>"$work/server.log" 2>&1 & pid=$!; until ruok; do sleep 0.01; done; }
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

cfg 100000000
start
while [ "$(srvr 'Node count')" -lt "$znodes" ]; do
  "$bin" bench --server "127.0.0.1:$port" --workload create --clients 16 --in-flight 16 \
    --value-size 100 --duration 3s --warmup 0s --keep >/dev/null 2>&1 || true
done
echo "tree: $(srvr 'Node count') znodes"
run() {
  "$bin" bench --server "127.0.0.1:$port" --workload set --clients 16 --in-flight 8 \
    --value-size 100 --keys 10000 --duration 10s --warmup 2s 2>/dev/null | sed -n 's/^\(throughput\|latency ms\)/  &/p'
}
echo "without snapshots (snapCount=100000000):"
run
stop
cfg 20000
start
before=$(grep -c "snapshot written" "$work/server.log" || true)
echo "with snapshots (snapCount=20000):"
run
after=$(grep -c "snapshot written" "$work/server.log" || true)
echo "  snapshots written during the run: $(( after - before ))"
grep "snapshot written" "$work/server.log" | tail -1 | grep -o 'size_bytes=[0-9]* elapsed_ms=[0-9]*' | sed 's/^/  last one: /'
