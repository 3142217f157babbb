#!/usr/bin/env bash
# Memory and start-up of Corral and Apache ZooKeeper 3.8 (Debian's `zookeeper` package, if
# installed), standalone, measured the same way for both:
#   - start-up to serving on an empty data dir: time from exec until a client has a session
#     and `exists /` answered OK; median of RUNS starts;
#   - resident memory (VmRSS) of that fresh server, idle for 1 s;
#   - resident memory with ZNODES znodes of 100-byte values, loaded with `corral bench
#     --workload create --keep` (16 clients x 16 in flight, all under one parent), 3 s after
#     the load; B/znode is (that RSS - idle RSS) / znodes;
#   - restart-to-serving on that data (SIGTERM, start again: snapshot load plus log replay),
#     median of RUNS restarts, and the resident memory 1 s after serving.
#   bench/memory.sh [ZNODES] [RUNS]        (defaults 1000000, 3)
# SKIP_ZOOKEEPER=1 measures Corral only; CORRAL_BIN=path measures another corral binary.
# Not a test: it prints a table. 127.0.0.1 only; stops only the servers it started.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
znodes=${1:-1000000}
runs=${2:-3}
bin=${CORRAL_BIN:-$here/target/release/corral}
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
work=$(mktemp -d)
pid= ppid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
srvr() { exec 3<>"/dev/tcp/127.0.0.1/$port"; printf srvr >&3; timeout 5 cat <&3 | sed -n "s/^$1: //p"; exec 3<&-; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Starts a server (argv[3:], its output appended to argv[2]) and, from the same process, a
# minimal ZooKeeper client that retries until a session is established and `exists /`
# answers OK; prints "PID MS" (MS: from exec to serving), then waits for the server to exit.
# Python does both so that its own start-up (100+ ms on a busy machine) is not counted.
cat >"$work/probe.py" <<'EOF'
import socket, struct, subprocess, sys, time
port, log, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def frame(b): return struct.pack(">i", len(b)) + b
def recv_frame(s):
    def exact(n):
        buf = b""
        while len(buf) < n:
            c = s.recv(n - len(buf))
            if not c: raise OSError("closed")
            buf += c
        return buf
    return exact(struct.unpack(">i", exact(4))[0])
out = open(log, "ab")
t0 = time.monotonic_ns()
proc = subprocess.Popen(cmd, stdout=out, stderr=out)
while proc.poll() is None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(frame(struct.pack(">iqiqi", 0, 0, 30000, 0, 16) + bytes(17)))
        _, timeout, session = struct.unpack(">iiq", recv_frame(s)[:16])
        if timeout <= 0 or session == 0: raise OSError("no session")
        s.sendall(frame(struct.pack(">iii", 1, 3, 1) + b"/" + bytes(1)))
        xid, _, err = struct.unpack(">iqi", recv_frame(s)[:16])
        if xid != 1 or err != 0: raise OSError("exists failed")
        ms = (time.monotonic_ns() - t0) // 1_000_000
        s.sendall(frame(struct.pack(">ii", 2, -11)))
        s.close()
        print(proc.pid, ms, flush=True)
        break
    except OSError:
        time.sleep(0.002)
proc.wait()
EOF

# ZooKeeper's classpath, if installed.
zk_cp=
jar=$(dpkg -L libzookeeper-java 2>/dev/null | grep '/zookeeper.jar$' | head -1 || true)
if [ -n "$jar" ]; then
  zk_cp="$jar"
  for j in slf4j-api.jar slf4j-simple.jar slf4j-log4j12.jar log4j-1.2.jar; do
    [ -f "/usr/share/java/$j" ] && zk_cp="$zk_cp:/usr/share/java/$j"
  done
fi

start() { # name: starts the server; sets pid (the server), ppid (the probe) and ms
  local cmd
  case $1 in
    corral) cmd=("$bin" server "$work/$1.cfg") ;;
    zookeeper) cmd=(java -Dzookeeper.4lw.commands.whitelist='*' -cp "$zk_cp"
      org.apache.zookeeper.server.ZooKeeperServerMain "$work/$1.cfg") ;;
  esac
  : >"$work/probe.out"
  python3 "$work/probe.py" "$port" "$work/$1.log" "${cmd[@]}" >"$work/probe.out" &
  ppid=$!
  until [ -s "$work/probe.out" ]; do
    if ! kill -0 "$ppid" 2>/dev/null; then
      echo "$1 did not start; the end of its log:" >&2
      tail "$work/$1.log" >&2
      exit 1
    fi
    sleep 0.05
  done
  read -r pid ms <"$work/probe.out"
}
stop() { kill "$pid"; wait "$ppid" 2>/dev/null || true; pid=; }

measure() { # name
  local name=$1 data=$work/$1-data
  port=$(free_port)
  printf 'tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n' \
    "$data" "$port" >"$work/$name.cfg"
  # Start-up on an empty data dir, and idle memory.
  local starts=() idle=()
  for _ in $(seq 1 "$runs"); do
    rm -rf "$data"; mkdir -p "$data"
    start "$name"; starts+=("$ms")
    sleep 1
    idle+=("$(rss_kib)")
    stop
  done
  rm -rf "$data"; mkdir -p "$data"
  start "$name"
  sleep 1
  local idle_kib; idle_kib=$(rss_kib)
  echo "$name: loading $znodes znodes..." >&2
  local t0 count; t0=$(date +%s)
  count=$(srvr 'Node count')
  while [ "$count" -lt "$znodes" ]; do
    local d=1s; [ $((znodes - count)) -lt 100000 ] && d=200ms
    "$bin" bench --server "127.0.0.1:$port" --workload create --clients 16 --in-flight 16 \
      --value-size 100 --duration "$d" --warmup 0s --keep >/dev/null 2>&1 || true
    count=$(srvr 'Node count')
  done
  echo "$name: $count znodes after $(( $(date +%s) - t0 )) s" >&2
  sleep 3
  local loaded_kib; loaded_kib=$(rss_kib)
  stop
  local restarts=() restart_rss=()
  for _ in $(seq 1 "$runs"); do
    start "$name"; restarts+=("$ms")
    [ "$name" = corral ] && grep 'data loaded' "$work/$name.log" | tail -1 | sed 's/.*data loaded/corral: data loaded/' >&2
    sleep 1
    restart_rss+=("$(rss_kib)")
    stop
  done
  local s_ms i_kib r_ms r_kib
  s_ms=$(echo "${starts[@]}" | median)
  i_kib=$(echo "${idle[@]}" | median)
  r_ms=$(echo "${restarts[@]}" | median)
  r_kib=$(echo "${restart_rss[@]}" | median)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$s_ms" "$(mib "$i_kib")" \
    "$count" "$(mib "$loaded_kib")" "$(( (loaded_kib - idle_kib) * 1024 / count ))" \
    "$r_ms" "$(mib "$r_kib")" "$(( (r_kib - idle_kib) * 1024 / count ))"
  echo "$name: starts ${starts[*]} ms, idle ${idle[*]} KiB, restarts ${restarts[*]} ms, restart RSS ${restart_rss[*]} KiB" >&2
  rm -rf "$data"
}

echo "| server | start-up ms (empty) | idle RSS MiB | znodes | RSS loaded MiB | B/znode loaded | restart-to-serving ms | RSS restarted MiB | B/znode restarted |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
measure corral
if [ -n "${SKIP_ZOOKEEPER:-}" ]; then
  :
elif [ -n "$zk_cp" ]; then
  measure zookeeper
else
  echo "(Apache ZooKeeper not installed: apt-get install zookeeper)"
fi
