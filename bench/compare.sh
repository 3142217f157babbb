#!/usr/bin/env bash
# Side-by-side comparison of Corral and Apache ZooKeeper (Debian's `zookeeper` package, when it
# is installed) on this machine, under the same load from `corral bench`:
#   1. standalone: one server each; every workload; start-up-to-serving time; RSS idle before
#      and after the load;
#   2. a 3-node ensemble on 127.0.0.1 (three processes each); the bench clients are spread over
#      all members; start-up time is until a leader serves;
#   3. a data set (standalone): RSS idle, RSS holding ZNODES znodes of 100 bytes, and
#      restart-to-serving time on that data.
# It writes the raw `corral bench --json` reports and the measurements to bench/results/,
# BENCHMARKS.md at the repository root, and bench/results/throughput.png (`corral bench chart`).
#
#   bench/compare.sh                  full run (about 50 minutes on 2 cores)
#   QUICK=1 bench/compare.sh          quick run (a few minutes): 3 s per workload, one round,
#                                     100,000 znodes
#
# Settings (environment; QUICK=1 changes the defaults marked *):
#   DURATION=20*      measured seconds per workload (QUICK: 3)
#   WARMUP=3*         unrecorded warm-up seconds before each (QUICK: 1)
#   ROUNDS=3*         rounds per setup (QUICK: 1). Each round starts every server afresh and
#                     runs every workload against it; the servers take turns (Corral, ZooKeeper,
#                     then ZooKeeper, Corral, ...), so drift on a shared machine hits both alike.
#                     A workload's row reports the round with the median throughput.
#   ATTEMPTS=10       runs of a workload per round at most: a run that aborts (a stall, an
#                     error) while every member is still up is repeated on the same servers
#                     (after one request to each), so a round reports a run that finished.
#                     Aborted runs are kept as RESULTS/SETUP-SERVER-WORKLOAD.rROUND.aN.json
#                     and counted in the table.
#                     (ZooKeeper 3.8.0's ensemble `watch` stalls in most 20 s runs: a missed
#                     wake-up in its CommitProcessor, ZOOKEEPER-4537, fixed in 3.8.1.)
#   STALL=10          seconds without a reply or event after which a run counts as stalled
#   CLIENTS=16 IN_FLIGHT=8 VALUE_SIZE=100 KEYS=10000   the load (corral bench options)
#   BENCH_THREADS=1   threads of the load generator
#   WORKLOADS="create get set mixed exists get-children multi sessions watch"
#   SETUPS="standalone ensemble"      which setups to run (may be empty)
#   STARTS=3          start-ups measured per setup and server (the median is reported)
#   SERVERS="corral zookeeper"        which servers to run
#   DATASET=1         run part 3 (0: skip)
#   ZNODES=1000000*   znodes of part 3 (QUICK: 100000)
#   SETTLE=2          seconds a server idles before its RSS is read
#   SERVE_TIMEOUT=180 seconds a server (or ensemble) may take to serve before it counts as failed
#   ZK_JVM_FLAGS=     extra JVM options for ZooKeeper (default: none, i.e. the JVM's defaults)
#   ZK_JAR=/usr/share/java/zookeeper.jar   ZooKeeper's jar (Debian's package puts it there)
#   CORRAL_BIN        the corral binary (default: target/release/corral, (re)built first)
#   RESULTS=bench/results  OUT=BENCHMARKS.md   where results go
#   KEEP_WORK=0       1: keep the scratch directory (configs, data, server logs) and print it
#   REPORT_ONLY=0     1: measure nothing; rewrite BENCHMARKS.md and the chart from RESULTS
#
# Equivalent settings on both sides: tickTime=2000, initLimit=10, syncLimit=5,
# maxClientCnxns=0, every four-letter word allowed, durable writes (ZooKeeper's default
# forceSync=yes; Corral always fsyncs its log), default snapshot and log settings, data on the
# same file system. ZooKeeper's admin HTTP server is off (three of them would need distinct
# ports). Start-up and restart times are from process start until `srvr` reports a Mode (for an
# ensemble: until a member reports `Mode: leader`), polled every 2 ms without forking.
#
# 127.0.0.1 only. Every server process it starts is stopped by PID on exit (trap); nothing else
# is signalled. Needs bash, python3 (standard library only), java for ZooKeeper.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd -P)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then def_dur=3 def_warm=1 def_rounds=1 def_znodes=100000; else def_dur=20 def_warm=3 def_rounds=3 def_znodes=1000000; fi
DURATION=${DURATION:-$def_dur}
WARMUP=${WARMUP:-$def_warm}
ROUNDS=${ROUNDS:-$def_rounds}
ATTEMPTS=${ATTEMPTS:-10}
STALL=${STALL:-10}
CLIENTS=${CLIENTS:-16}
IN_FLIGHT=${IN_FLIGHT:-8}
VALUE_SIZE=${VALUE_SIZE:-100}
KEYS=${KEYS:-10000}
BENCH_THREADS=${BENCH_THREADS:-1}
WORKLOADS=${WORKLOADS:-"create get set mixed exists get-children multi sessions watch"}
SETUPS=${SETUPS-"standalone ensemble"}
SERVERS=${SERVERS:-"corral zookeeper"}
STARTS=${STARTS:-3}
DATASET=${DATASET:-1}
ZNODES=${ZNODES:-$def_znodes}
SETTLE=${SETTLE:-2}
SERVE_TIMEOUT=${SERVE_TIMEOUT:-180}
ZK_JVM_FLAGS=${ZK_JVM_FLAGS:-}
RESULTS=${RESULTS:-$here/bench/results}
OUT=${OUT:-$here/BENCHMARKS.md}
KEEP_WORK=${KEEP_WORK:-0}
REPORT_ONLY=${REPORT_ONLY:-0}

die() { echo "compare: $*" >&2; exit 1; }
for v in DURATION WARMUP ROUNDS CLIENTS IN_FLIGHT VALUE_SIZE KEYS BENCH_THREADS STARTS ZNODES SETTLE SERVE_TIMEOUT; do
  case "${!v}" in '' | *[!0-9]*) die "$v must be a whole number, not '${!v}'" ;; esac
done
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"
command -v python3 >/dev/null || die "python3 is needed"

bin=${CORRAL_BIN:-$here/target/release/corral}
if [ -z "${CORRAL_BIN:-}" ] && [ "$REPORT_ONLY" != 1 ]; then
  # Always (cargo does nothing when it is up to date): a binary left over from another
  # checkout or an experiment would be reported under this checkout's commit.
  echo "building $bin ..."
  (cd "$here" && cargo build --release --quiet)
fi
[ "$REPORT_ONLY" = 1 ] || [ -x "$bin" ] || die "no corral binary at $bin"

# Apache ZooKeeper from Debian's packages, if present.
zk_jar=${ZK_JAR:-/usr/share/java/zookeeper.jar}
zk_cp=
if [ -f "$zk_jar" ] && command -v java >/dev/null; then
  zk_cp=$zk_jar
  [ -f /usr/share/java/slf4j-simple.jar ] && zk_cp="$zk_cp:/usr/share/java/slf4j-simple.jar"
fi
servers=()
for s in $SERVERS; do
  case "$s" in
    corral) servers+=(corral) ;;
    zookeeper)
      if [ -n "$zk_cp" ]; then servers+=(zookeeper); else
        echo "Apache ZooKeeper is not installed (apt-get install zookeeper): measuring Corral alone"
      fi ;;
    *) die "unknown server '$s' in SERVERS" ;;
  esac
done
[ "${#servers[@]}" -gt 0 ] || die "no server to measure"

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-compare.XXXXXX")
all_pids=() # every server process this script started
cleanup() {
  local p
  for p in "${all_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${all_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$KEEP_WORK" = 1 ]; then echo "scratch directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fifo that never delivers: `read -t` on it sleeps without forking a process.
mkfifo "$work/.tick"
exec {tick_fd}<>"$work/.tick"
nap() { read -r -t "$1" -u "$tick_fd" _ || true; }
now() { NOW=${EPOCHREALTIME/[.,]/}; } # microseconds, in NOW (no fork)

# The revision measured, before this run rewrites tracked result files.
# shellcheck disable=SC2034 # read through ${!v} below
rev=$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)
mkdir -p "$RESULTS"
metrics=$RESULTS/metrics.tsv
if [ "$REPORT_ONLY" = 1 ]; then
  [ -f "$metrics" ] || die "REPORT_ONLY=1 but $metrics does not exist"
else
  rm -f "$RESULTS"/*.json "$RESULTS"/*.log "$metrics" "$RESULTS"/throughput.png
  : >"$metrics"
fi
metric() { printf '%s\t%s\n' "$1" "$2" >>"$metrics"; }

free_ports() { # N -> N distinct free ports on 127.0.0.1, one per line
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

# srvr PORT: sets MODE, NODES, VERSION from the four-letter word `srvr`; fails when the port
# does not answer or the server does not serve (no Mode line). No process is forked.
MODE='' NODES='' VERSION=''
srvr() {
  MODE='' NODES='' VERSION=
  local line
  { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  if { printf srvr >&"$fd"; } 2>/dev/null; then
    # Stop at the line that ends what is needed rather than waiting for EOF: ZooKeeper 3.8
    # sometimes fails to close a four-letter-word connection accepted before its database is
    # up (NullPointerException in the close), which would leave the read waiting.
    while IFS= read -r -t 2 -u "$fd" line || [ -n "$line" ]; do
      line=${line%$'\r'}
      case "$line" in
        "Mode: "*) MODE=${line#Mode: } ;;
        "Node count: "*) NODES=${line#Node count: }; break ;;
        "Zookeeper version: "*) VERSION=${line#Zookeeper version: }; VERSION=${VERSION%%[,-]*} ;;
        *"not currently serving"*) break ;;
      esac
      line=
    done
  fi
  exec {fd}<&-
  [ -n "$MODE" ]
}

alive() { # PID: running (a zombie is not)
  local st
  # The process may vanish (be reaped) at any moment: read without failing the script.
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}

rss_kb() { # PID... -> summed VmRSS in kB
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# ---- starting and stopping servers ----------------------------------------------------------
# cur_pids / cur_ports: the processes and client ports of what runs now.
cur_pids=() cur_ports=() cur_logs=()

launch() { # server cfg log: start one member; appends to cur_pids
  local server=$1 cfg=$2 log=$3 p
  case "$server" in
    corral) "$bin" server "$cfg" >>"$log" 2>&1 & p=$! ;;
    zookeeper)
      # shellcheck disable=SC2086 # ZK_JVM_FLAGS is a list of options
      java $ZK_JVM_FLAGS -Dzookeeper.admin.enableServer=false \
        -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.showDateTime=true \
        -cp "$zk_cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg" >>"$log" 2>&1 &
      p=$! ;;
  esac
  all_pids+=("$p")
  cur_pids+=("$p")
}

stop_all() { # SIGTERM what runs now, SIGKILL after 30 s
  local p i
  for p in "${cur_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${cur_pids[@]}"; do
    for ((i = 0; i < 1500; i++)); do alive "$p" || break; nap 0.02; done
    alive "$p" && { echo "  pid $p did not stop in 30 s: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; }
    wait "$p" 2>/dev/null || true
  done
  local keep=() q
  for q in "${all_pids[@]}"; do
    for p in "${cur_pids[@]}"; do [ "$q" = "$p" ] && continue 2; done
    keep+=("$q")
  done
  all_pids=("${keep[@]}")
  cur_pids=() cur_ports=() cur_logs=()
}

# keep_logs NAME FILE...: copies the last lines of the given files and of every member's log
# to RESULTS/NAME.log, so that a failed workload can be looked into after the scratch
# directory is gone.
keep_logs() {
  local name=$1 l
  shift
  for l in "$@" "${cur_logs[@]}"; do
    echo "--- last lines of $l"
    tr '\r' '\n' <"$l" | grep -v '^$' | tail -n 200
  done >"$RESULTS/$name.log" 2>&1 || true
}

drop_data() { # DIR: remove a stopped setup's data (an ensemble round of Corral writes ~10 GB of
  # log segments and snapshots; nothing is purged, as in ZooKeeper by default)
  [ "$KEEP_WORK" = 1 ] || rm -rf "$1"
}

show_logs() {
  local l
  for l in "${cur_logs[@]}"; do echo "  --- last lines of $l"; tail -n 15 "$l" | sed 's/^/  | /'; done
}

# wait_serving T0_US: polls every member until it serves. Sets SERVE_MS (until the first
# member serves; for an ensemble until a member is leader) and ALL_MS (until every member
# serves). Fails on a timeout or when a member exits.
wait_serving() {
  local t0=$1 deadline n=${#cur_ports[@]} i served leader=0
  deadline=$((t0 + SERVE_TIMEOUT * 1000000))
  SERVE_MS='' ALL_MS=
  while :; do
    served=0
    for ((i = 0; i < n; i++)); do
      if srvr "${cur_ports[$i]}"; then
        served=$((served + 1))
        if [ -z "$SERVE_MS" ] && { [ "$n" = 1 ] || [ "$MODE" = leader ]; }; then
          now; SERVE_MS=$(( (NOW - t0) / 100 )); leader=1
        fi
      fi
    done
    if [ "$served" = "$n" ] && [ "$leader" = 1 ]; then
      now; ALL_MS=$(( (NOW - t0) / 100 ))
      SERVE_MS=$(fmt_tenths "$SERVE_MS") ALL_MS=$(fmt_tenths "$ALL_MS")
      return 0
    fi
    for ((i = 0; i < n; i++)); do
      alive "${cur_pids[$i]}" || { echo "  member $((i + 1)) (pid ${cur_pids[$i]}) exited"; show_logs; return 1; }
    done
    now
    [ "$NOW" -lt "$deadline" ] || { echo "  not serving after $SERVE_TIMEOUT s"; show_logs; return 1; }
    nap 0.002
  done
}
fmt_tenths() { printf '%d.%d' $(($1 / 10)) $(($1 % 10)); } # tenths of ms -> "12.3"

# start SETUP SERVER DIR [FRESH]: writes configs (and myid files), starts, waits until serving.
# DIR holds the data; an existing DIR is reused (restart). Sets cur_*, SERVE_MS, ALL_MS.
start() {
  local setup=$1 server=$2 dir=$3 n i ports cfg t0
  if [ "$setup" = ensemble ]; then n=3; else n=1; fi
  mapfile -t ports < <(free_ports $((3 * n)))
  cur_ports=()
  local lines=""
  for ((i = 1; i <= n; i++)); do
    cur_ports+=("${ports[$((3 * i - 1))]}")
    lines+="server.$i=127.0.0.1:${ports[$((3 * i - 3))]}:${ports[$((3 * i - 2))]};127.0.0.1:${ports[$((3 * i - 1))]}"$'\n'
  done
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$dir/$i"
    cfg=$dir/zoo$i.cfg
    {
      echo "tickTime=2000"
      echo "initLimit=10"
      echo "syncLimit=5"
      echo "dataDir=$dir/$i"
      echo "maxClientCnxns=0"
      echo "4lw.commands.whitelist=*"
      if [ "$n" = 1 ]; then
        echo "clientPort=${cur_ports[0]}"
        echo "clientPortAddress=127.0.0.1"
      else
        echo "$i" >"$dir/$i/myid"
        printf '%s' "$lines"
      fi
    } >"$cfg"
  done
  cur_logs=()
  now; t0=$NOW
  for ((i = 1; i <= n; i++)); do
    cur_logs+=("$dir/server$i.log")
    launch "$server" "$dir/zoo$i.cfg" "$dir/server$i.log"
  done
  wait_serving "$t0"
}

# ---- running the workloads ------------------------------------------------------------------
label() { case "$1" in corral) echo Corral ;; zookeeper) echo "ZooKeeper" ;; esac; }

run_workloads() { # setup server round
  local setup=$1 server=$2 round=$3 w json txt list i rc
  list=$(printf '127.0.0.1:%s,' "${cur_ports[@]}")
  list=${list%,}
  for w in $WORKLOADS; do
    json=$RESULTS/$setup-$server-$w.r$round.json
    rm -f "$RESULTS/$setup-$server-$w.r$round".a*.json
    for ((attempt = 1; ; attempt++)); do
      txt=$work/$setup-$server-$w.r$round.a$attempt.txt
      rc=0
      "$bin" bench --server "$list" --workload "$w" --clients "$CLIENTS" --in-flight "$IN_FLIGHT" \
        --value-size "$VALUE_SIZE" --keys "$KEYS" --duration "${DURATION}s" --warmup "${WARMUP}s" \
        --threads "$BENCH_THREADS" --stall-timeout "${STALL}s" --json "$json" >"$txt" 2>"$txt.err" || rc=$?
      printf '  %-13s %s  %s\n' "$w" \
        "$(sed -n 's/^throughput *//p' "$txt" | head -n 1)" \
        "$(sed -n 's/^latency ms *//p' "$txt" | head -n 1)"
      if [ "$rc" != 0 ]; then
        echo "  $w failed (exit $rc):"
        tail -n 5 "$txt.err" | sed 's/^/  | /'
        keep_logs "$setup-$server-$w.r$round.a$attempt" "$txt.err"
      fi
      for ((i = 0; i < ${#cur_pids[@]}; i++)); do
        alive "${cur_pids[$i]}" || { echo "  member $((i + 1)) exited during $w"; show_logs; return 1; }
      done
      [ "$rc" != 0 ] && [ "$attempt" -lt "$ATTEMPTS" ] || break
      # Keep the aborted run's report and run it again on the same (warm) servers, after one
      # request to every member: a client's next request (a ping, at the latest) is what ends
      # a ZOOKEEPER-4537 stall.
      [ -f "$json" ] && mv "$json" "$RESULTS/$setup-$server-$w.r$round.a$attempt.json"
      for ((i = 0; i < ${#cur_ports[@]}; i++)); do
        timeout 30 "$bin" cli -server "127.0.0.1:${cur_ports[$i]}" stat / >/dev/null 2>&1 || true
      done
      echo "  repeating $w (run $((attempt + 1)) of at most $ATTEMPTS)"
    done
  done
}

bench_setup() { # setup server round
  local setup=$1 server=$2 round=$3 key=$1.$2 dir before after i serve='' all=''
  echo "== $setup: $(label "$server"), round $round of $ROUNDS"
  if [ "$round" -gt 1 ]; then
    # Later rounds only repeat the load, on a fresh server; start-up and RSS are round 1's.
    if ! start "$setup" "$server" "$work/$setup-$server/round$round"; then
      metric "$key.failed" "did not start (round $round)"
      stop_all
      return 0
    fi
    if ! run_workloads "$setup" "$server" "$round"; then metric "$key.failed" "a member exited (round $round)"; fi
    stop_all
    drop_data "$work/$setup-$server/round$round"
    return 0
  fi
  # STARTS start-ups on fresh data directories; the last one stays up for the load.
  for ((i = 1; i <= STARTS || i == 1; i++)); do
    dir=$work/$setup-$server/start$i
    if ! start "$setup" "$server" "$dir"; then
      metric "$key.failed" "did not start"
      stop_all
      return 0
    fi
    serve+=" $SERVE_MS" all+=" $ALL_MS"
    if [ "$i" -lt "$STARTS" ]; then stop_all; drop_data "$dir"; fi
  done
  serve=${serve# } all=${all# }
  srvr "${cur_ports[0]}" && [ -n "$VERSION" ] && metric "$server.version" "$VERSION"
  if [ "$setup" = ensemble ]; then
    echo "  a leader serves after ${serve// /, } ms; all members after ${all// /, } ms"
  else
    echo "  serving after ${serve// /, } ms"
  fi
  metric "$key.startup_ms" "$serve"
  metric "$key.startup_all_ms" "$all"
  sleep "$SETTLE"
  before=$(rss_kb "${cur_pids[@]}")
  metric "$key.rss_idle_kb" "$before"
  if ! run_workloads "$setup" "$server" 1; then metric "$key.failed" "a member exited"; fi
  sleep "$SETTLE"
  after=$(rss_kb "${cur_pids[@]}")
  metric "$key.rss_after_kb" "$after"
  echo "  RSS idle before $((before / 1024)) MiB, after the load $((after / 1024)) MiB"
  stop_all
  drop_data "$work/$setup-$server"
}

# ---- the data set ---------------------------------------------------------------------------
dataset() { # server
  local server=$1 key=data.$1 dir=$work/data-$1 base nodes target rate=20000 dur_ms prev t0 t1 n0 loaded first
  echo "== data set: $(label "$server") with $ZNODES znodes"
  if ! start standalone "$server" "$dir"; then metric "$key.failed" "did not start"; stop_all; return 0; fi
  metric "$key.startup_ms" "$SERVE_MS"
  srvr "${cur_ports[0]}" && [ -n "$VERSION" ] && metric "$server.version" "$VERSION"
  sleep "$SETTLE"
  metric "$key.rss_idle_kb" "$(rss_kb "${cur_pids[@]}")"
  srvr "${cur_ports[0]}" || true
  base=${NODES:-0}
  target=$((base + ZNODES))
  nodes=$base
  now; t0=$NOW
  first=1
  while [ "$nodes" -lt "$target" ]; do
    # A short probe, then chunks aimed at 70 % of the remainder at the rate seen in the last
    # one, each at most twice as long as the one before (a JVM speeds up as it warms) and at
    # most 5 s. No chunk creates more than what is missing (--max-ops), so both servers end
    # up holding the same number of znodes.
    if [ "$first" = 1 ]; then
      dur_ms=250 first=0
    else
      prev=$dur_ms
      dur_ms=$(( (target - nodes) * 700 / rate ))
      [ "$dur_ms" -gt $((2 * prev)) ] && dur_ms=$((2 * prev))
      [ "$dur_ms" -gt 5000 ] && dur_ms=5000
      [ "$dur_ms" -lt 100 ] && dur_ms=100
    fi
    n0=$nodes; now; t1=$NOW
    "$bin" bench --server "127.0.0.1:${cur_ports[0]}" --workload create --clients 16 --in-flight 16 \
      --value-size "$VALUE_SIZE" --duration "${dur_ms}ms" --warmup 0s --keep \
      --max-ops $((target - nodes)) >/dev/null 2>&1 || true
    alive "${cur_pids[0]}" || { echo "  server exited while loading"; show_logs; metric "$key.failed" "exited while loading"; stop_all; return 0; }
    srvr "${cur_ports[0]}" && nodes=$NODES
    now
    if [ "$nodes" -gt "$n0" ]; then rate=$(( (nodes - n0) * 1000000 / (NOW - t1) + 1 )); fi
    [ $(( (NOW - t0) / 1000000 )) -lt $((SERVE_TIMEOUT * 20)) ] || { echo "  loading takes too long"; break; }
  done
  now; loaded=$(( (NOW - t0) / 1000 ))
  metric "$key.znodes" "$((nodes - base))"
  metric "$key.load_ms" "$loaded"
  sleep "$SETTLE"
  metric "$key.rss_loaded_kb" "$(rss_kb "${cur_pids[@]}")"
  echo "  $((nodes - base)) znodes loaded in $((loaded / 1000)) s; RSS $(( $(rss_kb "${cur_pids[@]}") / 1024 )) MiB"
  stop_all
  metric "$key.disk_kb" "$(du -sk "$dir/1" | cut -f1)"
  # STARTS restarts on that data; RSS after the last one.
  local restarts='' i
  for ((i = 1; i <= STARTS || i == 1; i++)); do
    if ! start standalone "$server" "$dir"; then metric "$key.failed" "did not restart"; stop_all; return 0; fi
    restarts+=" $SERVE_MS"
    if [ "$i" -lt "$STARTS" ]; then stop_all; fi
  done
  restarts=${restarts# }
  srvr "${cur_ports[0]}" || true
  metric "$key.restart_ms" "$restarts"
  metric "$key.restart_nodes" "${NODES:-0}"
  sleep "$SETTLE"
  metric "$key.rss_restart_kb" "$(rss_kb "${cur_pids[@]}")"
  echo "  restart to serving ${restarts// /, } ms (${NODES:-?} znodes); RSS $(( $(rss_kb "${cur_pids[@]}") / 1024 )) MiB"
  stop_all
  drop_data "$dir"
}

# ---- the run --------------------------------------------------------------------------------
if [ "$REPORT_ONLY" != 1 ]; then
  # shellcheck disable=SC2034 # read through ${!v} below
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  now; run_t0=$NOW
  echo "results: $RESULTS; scratch: $work"
  free_gib=$(df -Pk "$work" | awk 'NR == 2 {print int($4 / 1048576)}')
  if [ "${free_gib:-0}" -lt 25 ]; then
    echo "warning: $free_gib GiB free under $work; a round of the ensemble writes about 10 GB"
  fi
  echo "load: $CLIENTS clients x $IN_FLIGHT in flight, $VALUE_SIZE-byte values, $KEYS keys, ${DURATION}s per workload after ${WARMUP}s warm-up"
  for setup in $SETUPS; do
    case "$setup" in standalone | ensemble) ;; *) die "unknown setup '$setup' in SETUPS" ;; esac
    for ((round = 1; round <= ROUNDS; round++)); do
      # Take turns: odd rounds in the order given, even rounds reversed.
      order=("${servers[@]}")
      if [ $((round % 2)) = 0 ]; then
        order=()
        for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[$i]}"); done
      fi
      for server in "${order[@]}"; do bench_setup "$setup" "$server" "$round"; done
    done
  done
  if [ "$DATASET" = 1 ]; then
    for server in "${servers[@]}"; do dataset "$server"; done
  fi
  now; elapsed_s=$(( (NOW - run_t0) / 1000000 ))
  # What the report needs besides the measurements, kept with them so REPORT_ONLY=1 works.
  # shellcheck disable=SC2034 # read through ${!v} below
  {
    fs_type=$(df -PT "$work" | awk 'NR == 2 {print $2}')
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    mem_gib=$(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
    java_v=$( { java -version 2>&1 || true; } | head -n 1)
    cores=$(nproc) kernel=$(uname -r) servers_run="${servers[*]}"
  }
  for v in QUICK DURATION WARMUP ROUNDS ATTEMPTS STALL CLIENTS IN_FLIGHT VALUE_SIZE KEYS ZNODES WORKLOADS SETUPS DATASET \
    ZK_JVM_FLAGS STARTS SETTLE started elapsed_s fs_type cpu mem_gib rev java_v cores kernel servers_run; do
    metric "env.$v" "${!v}"
  done
fi

# ---- the report -----------------------------------------------------------------------------
python3 - "$RESULTS" "$OUT" "$here" <<'PY'
import glob, json, os, re, sys

results, out, root = sys.argv[1], sys.argv[2], sys.argv[3]

m = {}
with open(os.path.join(results, "metrics.tsv")) as f:
    for line in f:
        k, _, v = line.rstrip("\n").partition("\t")
        m[k] = v
env = {k[4:]: v for k, v in m.items() if k.startswith("env.")}
quick = env["QUICK"] == "1"
workloads = env["WORKLOADS"].split()
setups = env["SETUPS"].split()
servers = env["servers_run"].split()
label = {"corral": "Corral", "zookeeper": "ZooKeeper"}
zk_version = m.get("zookeeper.version", "3.8")
if "zookeeper" in servers:
    label["zookeeper"] = f"ZooKeeper {zk_version}"

rounds_run = int(env.get("ROUNDS", "1"))

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def round_reports(setup, server, w):
    """Every round's report in round order; None for a round that left no report."""
    base = os.path.join(results, f"{setup}-{server}-{w}")
    found = {}
    for path in glob.glob(glob.escape(base) + ".r*.json"):
        k = re.search(r"\.r(\d+)\.json$", path)
        if k:
            found[int(k.group(1))] = load(path)
    if not found:  # results written before rounds existed: one report, no round number
        return [load(base + ".json")]
    return [found.get(i) for i in range(1, max(rounds_run, max(found)) + 1)]

def completed(r):
    return r is not None and not r.get("aborted")

def repeated(setup, server, w):
    """How many runs aborted and were repeated (ATTEMPTS), over every round."""
    base = os.path.join(results, f"{setup}-{server}-{w}")
    return len(glob.glob(glob.escape(base) + ".r*.a*.json"))

def report(setup, server, w):
    """The report of the round with the median throughput (the lower one of an even count),
    among the rounds that ran to the end; an aborted round's report if no round did."""
    every = round_reports(setup, server, w)
    ok = sorted((r for r in every if completed(r)), key=lambda r: r["ops_per_sec"])
    if ok:
        return ok[(len(ok) - 1) // 2]
    return next((r for r in every if r), None)

def samples(key):
    try:
        return [float(x) for x in m[key].split()]
    except (KeyError, ValueError):
        return []

def num(key):
    """The value of a metric; the median of several samples."""
    xs = sorted(samples(key))
    return xs[len(xs) // 2] if xs else None

def n(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"

def ms(v):
    return "–" if v is None else (f"{v:.3f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}")

def mib(kb):
    return "–" if kb is None else f"{kb / 1024:,.0f} MiB"

def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{digits}f}×"

both = servers == ["corral", "zookeeper"]
runs = []
L = []
title = "Benchmarks: Corral and Apache ZooKeeper side by side"
L.append(f"# {title}\n")
if quick:
    L.append(f"> **QUICK run** ({env['DURATION']} s per workload after {env['WARMUP']} s warm-up, "
             f"{int(env['ZNODES']):,} znodes) on a shared, busy development machine: the numbers are "
             "indicative only. The full run (`bench/compare.sh` without `QUICK=1`) replaces this file.\n")
L.append(f"Written by `bench/compare.sh` on {env['started']} ({int(env['elapsed_s']) // 60} min "
         f"{int(env['elapsed_s']) % 60} s). Machine: {env['cores']} cores ({env['cpu']}), "
         f"{env['mem_gib']} GiB, Linux {env['kernel']}, data on {env['fs_type']}; client and servers "
         "share the machine.\n")
vers = [f"Corral `{env['rev']}` (release build)"]
if "zookeeper" in servers:
    jvm = env["ZK_JVM_FLAGS"] or "the JVM's defaults"
    vers.append(f"Apache ZooKeeper {zk_version} from Debian's `zookeeper` package "
                f"({env['java_v']}, {jvm})")
L.append("Servers: " + "; ".join(vers) + ".\n")
if "zookeeper" not in servers:
    L.append("**Apache ZooKeeper was not measured** (Debian's `zookeeper` package is not installed, "
             "or SERVERS left it out): Corral's numbers only.\n")
L.append(f"Load: `corral bench`, {env['CLIENTS']} clients × {env['IN_FLIGHT']} requests in flight, "
         f"{env['VALUE_SIZE']}-byte values, {int(env['KEYS']):,} keys, {env['DURATION']} s measured after "
         f"{env['WARMUP']} s warm-up per workload (mixed: 90 % reads; multi: 4 setData each; "
         "watch: 100 watcher sessions, one writer; sessions: connect, create an ephemeral node, close). "
         "Against an ensemble the clients are spread over all three members. Both servers make "
         "writes durable (fsync) before acknowledging them. Ratios are Corral / ZooKeeper: above 1 "
         "is better for throughput, below 1 is better for latency, memory and time.\n")
L.append("How things are measured: start-up (and restart) to serving is from starting the "
         "process(es) until the four-letter word `srvr` reports a `Mode` (for an ensemble: until a "
         "member reports `Mode: leader`), polled every 2 ms; each is measured "
         f"{env['STARTS']} times (start-ups on fresh data, restarts on the loaded data set) and the "
         "median is shown with every run in brackets. "
         "RSS is `VmRSS` from `/proc`, summed over the three processes of an ensemble, read "
         f"{env['SETTLE']} s after the server started serving (idle before the load) and "
         f"{env['SETTLE']} s after the last workload (idle after the load).\n")
if rounds_run > 1:
    L.append(f"Every workload ran {rounds_run} times per server and setup, in {rounds_run} rounds: a "
             "round starts a server (or ensemble) afresh and runs every workload against it, and the "
             "two servers take turns (Corral then ZooKeeper in odd rounds, the other way round in "
             "even ones), so that drift on this shared machine hits both alike. A row shows the "
             "round with the median throughput, with every round's throughput in brackets in "
             "round order; its latencies are that round's. Start-up and RSS are from the first "
             "round.\n")
attempts = int(env.get("ATTEMPTS", "1"))
if attempts > 1:
    L.append(f"A run that aborted (no reply or event for {env.get('STALL', '?')} s, or an error) "
             "while every member was still up was run again on the same servers, after one "
             f"request to each member, up to {attempts} runs per round; a cell says how many "
             "aborted runs were repeated, and their reports are kept beside the others "
             "(`*.rROUND.aRUN.json`).\n")
if setups:
    L.append("![Throughput per workload, Corral and ZooKeeper](bench/results/throughput.png)\n")

names = {"standalone": "Standalone", "ensemble": "3-node ensemble on 127.0.0.1"}
for setup in setups:
    L.append(f"## {names.get(setup, setup)}\n")
    for s in servers:
        why = m.get(f"{setup}.{s}.failed")
        if why:
            L.append(f"**{label[s]}: {why}** (see the script's output).\n")
    hdr = ["workload"]
    for s in servers:
        hdr.append(f"{label[s]} ops/s" + (", median (rounds)" if rounds_run > 1 else ""))
    if both:
        hdr.append("ratio")
    for s in servers:
        hdr.append(f"{label[s]} p50 / p99 / p99.9 / max ms")
    if both:
        hdr.append("p99 ratio")
    L.append("| " + " | ".join(hdr) + " |")
    L.append("| " + " | ".join(["---"] + ["---:"] * (len(hdr) - 1)) + " |")
    for w in workloads:
        reps = {s: report(setup, s, w) for s in servers}
        for s in servers:
            runs.append({"setup": names.get(setup, setup), "server": label[s], "workload": w,
                         "report": reps[s]})
        row = [w]
        tput = {}
        for s in servers:
            r = reps[s]
            tput[s] = r["ops_per_sec"] if r else None
            cell = n(tput[s]) if r else "failed"
            if r and r.get("aborted"):
                cell += " (aborted)"
            every = round_reports(setup, s, w)
            if r and len(every) > 1:
                cell += " (" + ", ".join(n(x["ops_per_sec"]) if completed(x) else "failed" for x in every) + ")"
            k = repeated(setup, s, w)
            if k:
                cell += f"; {k} aborted run{'s' if k > 1 else ''} repeated"
            row.append(cell)
        if both:
            row.append(ratio(tput["corral"], tput["zookeeper"]))
        p99 = {}
        for s in servers:
            r = reps[s]
            if r:
                l = r["latency_ms"]
                p99[s] = l["p99"]
                row.append(" / ".join(ms(l[k]) for k in ("p50", "p99", "p99.9", "max")))
            else:
                p99[s] = None
                row.append("–")
        if both:
            row.append(ratio(p99["corral"], p99["zookeeper"]))
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    hdr = ["", *[label[s] for s in servers]] + (["ratio"] if both else [])
    L.append("| " + " | ".join(hdr) + " |")
    L.append("| " + " | ".join(["---"] + ["---:"] * (len(hdr) - 1)) + " |")
    def mrow(name, key, fmt, unit=""):
        vals = [num(f"{setup}.{s}.{key}") for s in servers]
        row = [name] + [fmt(v) + (unit if v is not None else "") for v in vals]
        for i, s in enumerate(servers):
            xs = samples(f"{setup}.{s}.{key}")
            if len(xs) > 1:
                row[i + 1] += " (" + ", ".join(n(x, 1) for x in xs) + ")"
        if both:
            row.append(ratio(vals[0], vals[1]))
        L.append("| " + " | ".join(row) + " |")
    if setup == "ensemble":
        mrow("start-up to serving (until a leader serves), median (runs)", "startup_ms", lambda v: n(v, 1), " ms")
        mrow("start-up until all three members serve", "startup_all_ms", lambda v: n(v, 1), " ms")
        mrow("RSS idle before the load (three processes)", "rss_idle_kb", mib)
        mrow("RSS idle after the load (three processes)", "rss_after_kb", mib)
    else:
        mrow("start-up to serving, median (runs)", "startup_ms", lambda v: n(v, 1), " ms")
        mrow("RSS idle before the load", "rss_idle_kb", mib)
        mrow("RSS idle after the load", "rss_after_kb", mib)
    L.append("")

if env["DATASET"] == "1":
    zn = int(env["ZNODES"])
    L.append(f"## Memory and restart with {zn:,} znodes (standalone)\n")
    L.append(f"A fresh server of each kind is loaded with {zn:,} znodes of {env['VALUE_SIZE']} bytes "
             "(`corral bench --workload create --keep`, 16 clients × 16 in flight, in chunks until "
             "`srvr` counts enough), idles for a moment, is stopped with SIGTERM and started again on "
             f"the same data directory, {env['STARTS']} times.\n")
    for s in servers:
        why = m.get(f"data.{s}.failed")
        if why:
            L.append(f"**{label[s]}: {why}** (see the script's output).\n")
    hdr = ["", *[label[s] for s in servers]] + (["ratio"] if both else [])
    L.append("| " + " | ".join(hdr) + " |")
    L.append("| " + " | ".join(["---"] + ["---:"] * (len(hdr) - 1)) + " |")
    def drow(name, vals, fmt, r=True):
        row = [name] + [fmt(v) for v in vals]
        if both:
            row.append(ratio(vals[0], vals[1]) if r else "")
        L.append("| " + " | ".join(row) + " |")
    g = lambda key: [num(f"data.{s}.{key}") for s in servers]
    drow("start-up to serving, empty", g("startup_ms"), lambda v: n(v, 1) + " ms" if v is not None else "–")
    drow("RSS idle, empty", g("rss_idle_kb"), mib)
    drow("znodes created", g("znodes"), n, r=False)
    drow("time to create them", g("load_ms"), lambda v: f"{v / 1000:,.1f} s" if v is not None else "–")
    drow("RSS holding them", g("rss_loaded_kb"), mib)
    per = []
    for s in servers:
        a, b, z = num(f"data.{s}.rss_loaded_kb"), num(f"data.{s}.rss_idle_kb"), num(f"data.{s}.znodes")
        per.append((a - b) * 1024 / z if None not in (a, b, z) and z else None)
    drow("RSS per znode (growth / znodes)", per, lambda v: n(v) + " B" if v is not None else "–")
    drow("data directory on disk", g("disk_kb"), mib)
    restart = g("restart_ms")
    drow("restart to serving, median (runs)", restart, lambda v: n(v, 1) + " ms" if v is not None else "–")
    for i, s in enumerate(servers):
        xs = samples(f"data.{s}.restart_ms")
        if len(xs) > 1:
            L[-1] = L[-1].replace(f"{n(restart[i], 1)} ms", f"{n(restart[i], 1)} ms (" + ", ".join(n(x, 1) for x in xs) + ")", 1)
    drow("znodes after restart (srvr)", g("restart_nodes"), n, r=False)
    drow("RSS after restart", g("rss_restart_kb"), mib)
    L.append("")

if both:
    L.append("## Targets (issue #5)\n")
    if quick:
        L.append("From a QUICK run on a busy machine: not a verdict.\n")
    L.append("| target | measured | met |")
    L.append("| --- | --- | --- |")
    def verdict(ok):
        return "–" if ok is None else ("yes" if ok else "**no**")
    for setup, need in (("ensemble", 3.0), ("standalone", 2.0)):
        if setup not in setups:
            continue
        worst, worst_w, p99_ok, have = None, None, True, False
        for w in workloads:
            a, b = report(setup, "corral", w), report(setup, "zookeeper", w)
            if not a or not b or not b["ops_per_sec"]:
                continue
            have = True
            r = a["ops_per_sec"] / b["ops_per_sec"]
            if worst is None or r < worst:
                worst, worst_w = r, w
            if a["latency_ms"]["p99"] >= b["latency_ms"]["p99"]:
                p99_ok = False
        got = f"lowest ratio {worst:.2f}× ({worst_w})" if have else "–"
        L.append(f"| {names[setup]}: throughput ≥ {need:g}× on every workload | {got} | "
                 f"{verdict(worst >= need if have else None)} |")
        L.append(f"| {names[setup]}: lower p99 on every workload | see the p99 ratio column | "
                 f"{verdict(p99_ok if have else None)} |")
    def tgt(name, a, b, limit):
        va, vb = num(a), num(b)
        ok = None if va is None or vb is None or not vb else va / vb <= limit
        L.append(f"| {name} | {ratio(va, vb)} | {verdict(ok)} |")
    tgt("RSS idle ≤ 1/5 (standalone)", "standalone.corral.rss_idle_kb", "standalone.zookeeper.rss_idle_kb", 0.2)
    if env["DATASET"] == "1":
        tgt(f"RSS with {int(env['ZNODES']):,} znodes ≤ 1/3 (right after loading them)", "data.corral.rss_loaded_kb", "data.zookeeper.rss_loaded_kb", 1 / 3)
        tgt(f"RSS with {int(env['ZNODES']):,} znodes ≤ 1/3 (after a restart)", "data.corral.rss_restart_kb", "data.zookeeper.rss_restart_kb", 1 / 3)
        tgt(f"restart to serving with {int(env['ZNODES']):,} znodes ≤ 1/5", "data.corral.restart_ms", "data.zookeeper.restart_ms", 0.2)
    v = num("standalone.corral.startup_ms")
    L.append(f"| standalone start-up to serving < 100 ms | {n(v, 1)}{'' if v is None else ' ms'} | {verdict(None if v is None else v < 100)} |")
    v = num("ensemble.corral.startup_ms")
    L.append(f"| ensemble elects a leader in < 500 ms | {n(v, 1)}{'' if v is None else ' ms'} | {verdict(None if v is None else v < 500)} |")
    L.append("")

# Hand-written findings (profiles, before/after numbers of fixes) live beside the script and
# are carried into every regenerated report.
notes = os.path.join(root, "bench", "NOTES.md")
if os.path.exists(notes):
    with open(notes) as f:
        L.append(f.read().rstrip() + "\n")

L.append("## Reproducing\n")
L.append("```sh\nbench/compare.sh             # full run, about 50 minutes on 2 cores\n"
         "QUICK=1 bench/compare.sh     # a few minutes: 3 s per workload, one round, 100,000 znodes\n```\n")
L.append("Settings are environment variables (DURATION, WARMUP, CLIENTS, IN_FLIGHT, VALUE_SIZE, KEYS, "
         "ROUNDS, ATTEMPTS, STALL, WORKLOADS, SETUPS, SERVERS, DATASET, ZNODES, ZK_JVM_FLAGS, ...; see the script's header). "
         "It installs nothing: Apache ZooKeeper is measured when Debian's `zookeeper` package is "
         "installed. The raw `corral bench --json` reports are in `bench/results/` "
         "(`SETUP-SERVER-WORKLOAD.rROUND.json`), with `metrics.tsv` (start-up, RSS, data set) and "
         "`chart.json` (the chart's input, `corral bench chart --input bench/results/chart.json "
         "--output bench/results/throughput.png`).\n")

chart = {"title": "Throughput: Corral vs Apache ZooKeeper" if both else "Throughput",
         "subtitle": (f"corral bench, {env['CLIENTS']} clients x {env['IN_FLIGHT']} in flight, "
                      f"{env['DURATION']} s per workload" + (" - QUICK run, indicative only" if quick else "")),
         "runs": runs}
chart_path = os.path.join(results, "chart.json")
if runs:
    with open(chart_path, "w") as f:
        json.dump(chart, f, indent=1)
elif os.path.exists(chart_path):
    os.remove(chart_path)
with open(out, "w") as f:
    f.write("\n".join(L).rstrip() + "\n")
print(f"wrote {out}")
PY
if [ -f "$RESULTS/chart.json" ]; then
  "$bin" bench chart --input "$RESULTS/chart.json" --output "$RESULTS/throughput.png"
fi
[ "$REPORT_ONLY" = 1 ] || echo "done in $((elapsed_s / 60)) min $((elapsed_s % 60)) s"
