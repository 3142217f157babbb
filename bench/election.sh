#!/usr/bin/env bash
# Election timings of a 3-node Corral ensemble on loopback (release build):
#   1. from starting all three processes until a leader serves writes (a create succeeds);
#   2. after kill -9 of the leader, until a write through a survivor succeeds again.
#   bench/election.sh [ROUNDS]
# Not a test: it prints one line per round and the medians. 127.0.0.1 only; stops only the
# servers it started.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
bin=$here/target/release/corral
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
work=$(mktemp -d)
declare -A pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
mode() { # port -> leader|follower|...
  (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null |
    sed -n 's/^Mode: //p'
}
write_ok() { # servers path
  "$bin" cli -server "$1" create "$2" x >/dev/null 2>&1
}

start_ms=()
failover_ms=()
for round in $(seq 1 "$rounds"); do
  dir=$work/r$round
  declare -A cport=()
  lines=
  for i in 1 2 3; do
    cport[$i]=$(free_port)
    lines+="server.$i=127.0.0.1:$(free_port):$(free_port);127.0.0.1:${cport[$i]}"$'\n'
  done
  for i in 1 2 3; do
    mkdir -p "$dir/$i"
    echo "$i" >"$dir/$i/myid"
    printf 'tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=%s\n4lw.commands.whitelist=*\n%s' \
      "$dir/$i" "$lines" >"$dir/$i/zoo.cfg"
  done
  all="127.0.0.1:${cport[1]},127.0.0.1:${cport[2]},127.0.0.1:${cport[3]}"
  t0=$(now_ms)
  for i in 1 2 3; do
    "$bin" server "$dir/$i/zoo.cfg" >"$dir/$i/log" 2>&1 &
    pids[$i]=$!
  done
  until write_ok "$all" /start; do :; done
  t1=$(now_ms)
  start_ms+=($((t1 - t0)))
  leader=
  until [ -n "$leader" ]; do
    for i in 1 2 3; do [ "$(mode "${cport[$i]}")" = leader ] && leader=$i; done
  done
  survivors=
  for i in 1 2 3; do [ "$i" != "$leader" ] && survivors+="127.0.0.1:${cport[$i]},"; done
  t2=$(now_ms)
  kill -9 "${pids[$leader]}"
  wait "${pids[$leader]}" 2>/dev/null || true
  unset "pids[$leader]"
  n=0
  until write_ok "${survivors%,}" "/after-$n"; do n=$((n + 1)); done
  t3=$(now_ms)
  failover_ms+=($((t3 - t2)))
  echo "round $round: start to first write ${start_ms[-1]} ms; leader $leader killed, next write after ${failover_ms[-1]} ms"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: start to first write $(median "${start_ms[@]}") ms; failover to next write $(median "${failover_ms[@]}") ms"
