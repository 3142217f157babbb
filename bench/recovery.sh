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
ruok() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf ruok >&3 && [ "$(timeout 2 cat <&3)" = imok ]) 2>/dev/null; }
start() { # sets pid and start_ms
  local t0; t0=$(date +%s%N)
  "$bin" server "$work/zoo.cfg" >>"$work/server.log" 2>&1 &
  pid=$!
  until ruok; do sleep 0.005; done
  start_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status"; }

# 1. Load, with a snapshot every 50,000-100,000 transactions.
cfg 100000
start
srvr() { exec 3<>"/dev/tcp/127.0.0.1/$port"; printf srvr >&3; timeout 2 cat <&3 | sed -n "s/^$1: //p"; exec 3<&-; }
echo "loading ~$znodes znodes..."
while [ "$(srvr 'Node count')" -lt "$znodes" ]; do
  "$bin" bench --server "127.0.0.1:$port" --workload create --clients 16 --in-flight 16 \
    --value-size 100 --duration 1s --warmup 0s --keep >/dev/null 2>&1 || true
done
echo "znodes after load: $(srvr 'Node count')"
# Under full load snapshots are held back (the server keeps them to a fraction of its time);
# idle, the one that is due gets written. Wait for a snapshot near the end of the load.
last=$(( 16#$(srvr Zxid | sed 's/^0x//') ))
for _ in $(seq 1 600); do
  snap=$(grep -o 'snapshot written zxid=0x[0-9a-f]*' "$work/server.log" | tail -1 | sed 's/.*=0x//')
  [ -n "$snap" ] && [ $(( last - 16#$snap )) -lt 100000 ] && break
  sleep 0.1
done
stop
# 2. The tail: no snapshot any more, $tail_txns setData transactions.
cfg 100000000
start
echo "writing a tail of ~$tail_txns transactions..."
z0=$(( 16#$(srvr Zxid | sed 's/^0x//') ))
while [ $(( 16#$(srvr Zxid | sed 's/^0x//') - z0 )) -lt "$tail_txns" ]; do
  "$bin" bench --server "127.0.0.1:$port" --workload set --clients 16 --in-flight 16 --keys 1000 \
    --value-size 100 --duration 200ms --warmup 0s --keep >/dev/null 2>&1 || true
done
stop
du -sh "$work/data/corral-v1" | sed 's/^/data dir: /'
# 3. Measure restart-to-serving three times.
for i in 1 2 3; do
  start
  echo "restart $i: serving after ${start_ms} ms, RSS $(rss_mb) MiB; $(grep 'data loaded' "$work/server.log" | tail -1 | grep -o 'snapshot_zxid=[^ ]* replayed_txns=[0-9]* .*znodes=[0-9]*')"
  stop
done
