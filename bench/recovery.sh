#!/usr/bin/env bash
# Recovery benchmark: start-up time and memory of a Corral server whose data directory holds a
# snapshot of about 1,000,000 znodes (100-byte values) plus a log tail of about 100,000
# transactions. Not a test: it prints numbers.
#   bench/recovery.sh [ZNODES] [TAIL_TXNS]
# Uses target/release/corral (builds it if missing) and 127.0.0.1 ports only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
znodes=${1:-1000000}
tail_txns=${2:-100000}
bin=$here/target/release/corral
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cfg() { # snapCount
  printf 'tickTime=2000\ndataDir=%s/data\nclientPort=%s\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nsnapCount=%s\nmaxClientCnxns=0\n' \
    "$work" "$port" "$1" >"$work/zoo.cfg"
}
ruok() { exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1; printf ruok >&3; local r; r=$(timeout 2 cat <&3); exec 3<&-; [ "$r" = imok ]; }
start() {
  "$bin" server "$work/zoo.cfg" >>"$work/server.log" 2>&1 &
  pid=$!
  local t0; t0=$(date +%s%N)
  until ruok; do sleep 0.01; done
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status"; }

# 1. Load: snapshots every ~znodes/2..znodes transactions, so one lands near the end.
cfg $(( znodes * 9 / 10 ))
start >/dev/null
srvr() { exec 3<>"/dev/tcp/127.0.0.1/$port"; printf srvr >&3; timeout 2 cat <&3 | sed -n "s/^$1: //p"; exec 3<&-; }
echo "loading ~$znodes znodes..."
while [ "$(srvr 'Node count')" -lt "$znodes" ]; do
  "$bin" bench --server "127.0.0.1:$port" --workload create --clients 16 --in-flight 16 \
    --value-size 100 --duration 3s --warmup 0s --keep >/dev/null 2>&1 || true
done
echo "znodes after load: $(srvr 'Node count')"
stop
# 2. The tail: no snapshot any more, $tail_txns setData transactions.
cfg 100000000
start >/dev/null
echo "writing a tail of ~$tail_txns transactions..."
z0=$(( 16#$(srvr Zxid | sed 's/^0x//') ))
while [ $(( 16#$(srvr Zxid | sed 's/^0x//') - z0 )) -lt "$tail_txns" ]; do
  "$bin" bench --server "127.0.0.1:$port" --workload set --clients 16 --in-flight 16 --keys 10000 \
    --value-size 100 --duration 1s --warmup 0s --keep >/dev/null 2>&1 || true
done
stop
du -sh "$work/data/corral-v1" | sed 's/^/data dir: /'
# 3. Measure restart-to-serving three times.
for i in 1 2 3; do
  ms=$(start)
  echo "restart $i: serving after ${ms} ms, RSS $(rss_mb) MiB; $(grep 'data loaded' "$work/server.log" | tail -1 | grep -o 'snapshot_zxid=[^ ]* replayed_txns=[0-9]* .*znodes=[0-9]*')"
  stop
done
