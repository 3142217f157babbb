#!/usr/bin/env bash
# Run a local Corral ensemble (three members on 127.0.0.1), the way zkServer.sh runs one server.
#   bin/ensemble.sh up | down | status | kill N | start N | stop N | restart N | logs N [TAIL-OPTIONS]
#
# Member N is configured by conf/ensemble/zooN.cfg. Its pid file and log go to the config's
# dataDir (corral.pid, corral.log), next to the myid file that this script writes (N) before
# the first start. A relative dataDir is taken relative to the repository root, which is where
# the members run.
#
#   up          build target/release/corral if it is missing, start every member that is not
#               running, wait until one member reports "Mode: leader" and the others follower or
#               observer. If a member exits or no leader is elected in time, print why, stop
#               the members this command started, and fail.
#   down        stop every member (SIGTERM, SIGKILL after 10 s)
#   status      one line per member: id, pid or "stopped", client address, mode, zxid and
#               node count from srvr. Exit status 0 if every member runs, 3 if not.
#   kill N      SIGKILL member N (failure drills)
#   start N     start member N and wait until it serves (or, if it is the only member
#               running, until it answers on its client port)
#   stop N      SIGTERM member N and wait for it to exit (SIGKILL after 10 s)
#   restart N   stop N, then start N
#   logs N      tail member N's log; options go to tail (default -n 100), e.g. "logs 2 -f"
#
# Environment:
#   CORRAL_BIN               the corral binary (default: target/release/corral, built on demand)
#   CORRAL_ENSEMBLE_CONF     directory holding zoo1.cfg, zoo2.cfg, ... (default: conf/ensemble)
#   CORRAL_ENSEMBLE_TIMEOUT  seconds that up / start wait for the ensemble (default: 60)
#
# The script only ever signals processes named in its own pid files, and only while the
# process's command line still names the member's config file (a stale pid file whose pid was
# reused by another process is left alone).
set -euo pipefail

die() { echo "ensemble: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 up | down | status | kill N | start N | stop N | restart N | logs N [TAIL-OPTIONS]" >&2
  exit 2
}
abs_path() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

here=$(cd "$(dirname "$0")/.." && pwd -P)
conf_dir=$(abs_path "${CORRAL_ENSEMBLE_CONF:-$here/conf/ensemble}")
[ -d "$conf_dir" ] || die "config directory $conf_dir not found"
conf_dir=$(cd "$conf_dir" && pwd -P)
if [ -n "${CORRAL_BIN:-}" ]; then
  case "$CORRAL_BIN" in
    */*) bin=$(abs_path "$CORRAL_BIN") ;;
    *) bin=$(command -v -- "$CORRAL_BIN") || die "CORRAL_BIN=$CORRAL_BIN: not found on PATH" ;;
  esac
else
  bin=$here/target/release/corral
fi
wait_secs=${CORRAL_ENSEMBLE_TIMEOUT:-60}
case "$wait_secs" in '' | *[!0-9]*) die "CORRAL_ENSEMBLE_TIMEOUT must be a whole number of seconds, not '$wait_secs'" ;; esac
stop_secs=10
cd "$here"

# ---- members -------------------------------------------------------------------------------
# Arrays indexed by member id N.
members=()
cfg=() data_dir=() pid_file=() log_file=() addr=() port=() log_start=()

cfg_value() { # file key -> last value of key, whitespace trimmed
  sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1" | tail -n 1 | sed 's/[[:space:]]*$//'
}

load_member() { # N: read conf_dir/zooN.cfg
  local n=$1 f=$conf_dir/zoo$1.cfg d p a line spec
  d=$(cfg_value "$f" dataDir)
  [ -n "$d" ] || die "$f has no dataDir"
  case "$d" in /*) ;; *) d=$here/$d ;; esac
  # The client address: clientPort / clientPortAddress, else this member's server.N line
  # (server.N=host:quorumPort:electionPort[:role][;[clientHost:]clientPort]).
  p=$(cfg_value "$f" clientPort)
  a=$(cfg_value "$f" clientPortAddress)
  line=$(cfg_value "$f" "server\\.$n")
  if [ -z "$p" ] && [ -n "$line" ]; then
    case "$line" in
      *";"*)
        spec=${line#*;}
        spec=${spec//[[:space:]]/}
        case "$spec" in
          *:*) p=${spec##*:}; [ -n "$a" ] || a=${spec%:*} ;;
          *) p=$spec ;;
        esac
        ;;
    esac
  fi
  [ -n "$p" ] || die "$f: no client port for member $n: set clientPort, or end its server.$n line with ;127.0.0.1:PORT"
  case "$p" in *[!0-9]*) die "$f: client port '$p' of member $n is not a number" ;; esac
  case "$a" in '' | 0.0.0.0) a=127.0.0.1 ;; esac
  cfg[n]=$f data_dir[n]=$d pid_file[n]=$d/corral.pid log_file[n]=$d/corral.log addr[n]=$a port[n]=$p
}

load_members() {
  local f n m
  for f in "$conf_dir"/zoo*.cfg; do
    n=${f##*/zoo}; n=${n%.cfg}
    case "$n" in '' | *[!0-9]* | 0*) continue ;; esac
    members+=("$n")
  done
  [ "${#members[@]}" -gt 0 ] || die "no member configs (zoo1.cfg, zoo2.cfg, ...) in $conf_dir"
  mapfile -t members < <(printf '%s\n' "${members[@]}" | sort -n)
  for n in "${members[@]}"; do load_member "$n"; done
  for n in "${members[@]}"; do
    for m in "${members[@]}"; do
      [ "$m" -lt "$n" ] || continue
      [ "${data_dir[m]}" != "${data_dir[n]}" ] || die "members $m and $n share dataDir ${data_dir[n]}"
      [ "${addr[m]}:${port[m]}" != "${addr[n]}:${port[n]}" ] || die "members $m and $n share client port ${addr[n]}:${port[n]}"
    done
  done
}

member_arg() { # validates a member id argument
  local n=${1:-}
  case "$n" in '' | *[!0-9]*) usage ;; esac
  [ -n "${cfg[n]:-}" ] || die "no member $n (no $conf_dir/zoo$n.cfg)"
}

# ---- processes -----------------------------------------------------------------------------
proc_args() { # pid -> its command line; empty for a zombie
  if [ -r "/proc/$1/cmdline" ]; then
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
  else
    ps -ww -o args= -p "$1" 2>/dev/null | grep -v '<defunct>' || true
  fi
}

is_member_process() { # N pid: pid is alive and runs member N's config (not a zombie or a reused pid)
  kill -0 "$2" 2>/dev/null || return 1
  case "$(proc_args "$2")" in *" server ${cfg[$1]}"*) return 0 ;; *) return 1 ;; esac
}

member_pid() { # N -> pid of the running member, from its pid file; fails if not running
  local pid
  [ -f "${pid_file[$1]}" ] || return 1
  pid=$(cat "${pid_file[$1]}" 2>/dev/null) || return 1
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  is_member_process "$1" "$pid" || return 1
  echo "$pid"
}

stale_note() { # N -> explains a pid file that does not name a running member, if there is one
  local pid
  [ -f "${pid_file[$1]}" ] || return 0
  pid=$(cat "${pid_file[$1]}" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -n "$(proc_args "$pid")" ]; then
    echo " (pid file ${pid_file[$1]} names process $pid, which is not this member's server; left alone)"
  fi
}

ensure_bin() {
  [ -x "$bin" ] && return 0
  if [ -n "${CORRAL_BIN:-}" ]; then die "CORRAL_BIN=$bin is not an executable file"; fi
  echo "building corral (cargo build --release)..."
  cargo build --release --quiet || die "cargo build --release failed"
  [ -x "$bin" ] || die "cargo build --release did not produce $bin"
}

prepare() { # N: data dir and myid
  local n=$1 d=${data_dir[$1]} id
  mkdir -p "$d" || die "cannot create data dir $d of member $n"
  if [ -f "$d/myid" ]; then
    id=$(tr -d '[:space:]' <"$d/myid")
    [ "$id" = "$n" ] || die "$d/myid holds '$id', but that is member $n's data dir (${cfg[n]}); fix or remove the file"
  else
    printf '%s\n' "$n" >"$d/myid" || die "cannot write $d/myid"
  fi
}

# shellcheck disable=SC2016 # $1.. expand in the inner bash
port_in_use() { # addr port: something accepts connections there
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' port_in_use "$1" "$2" 2>/dev/null
}

launch() { # N: start member N in the background (caller checked that it is not running)
  local n=$1 size=0
  if port_in_use "${addr[n]}" "${port[n]}"; then
    die "member $n's client port ${addr[n]}:${port[n]} is taken by a process that is not member $n of this ensemble"
  fi
  [ -f "${log_file[n]}" ] && size=$(wc -c <"${log_file[n]}")
  log_start[n]=$((size + 1))
  nohup "$bin" server "${cfg[n]}" >>"${log_file[n]}" 2>&1 </dev/null &
  echo $! >"${pid_file[n]}"
  echo "member $n: started (pid $!, client ${addr[n]}:${port[n]}, log ${log_file[n]})"
}

new_log() { # N: what member N logged since launch, last 20 lines, indented
  tail -c "+${log_start[$1]:-1}" "${log_file[$1]}" 2>/dev/null | tail -n 20 | sed 's/^/    /'
}

wait_gone() { # N pid: wait up to stop_secs for member N's process to go
  local end=$((SECONDS + stop_secs))
  while is_member_process "$1" "$2"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

signal_and_wait() { # N pid signal: send the signal, wait for the process to go
  kill "-$3" "$2" 2>/dev/null || true
  wait_gone "$1" "$2"
}

stop_member() { # N [pid]: SIGTERM and wait; pid if the caller already looked it up
  local n=$1 pid=${2:-}
  if [ -z "$pid" ] && ! pid=$(member_pid "$n"); then
    echo "member $n: not running$(stale_note "$n")"
    return 0
  fi
  if ! signal_and_wait "$n" "$pid" TERM; then
    echo "member $n: pid $pid did not exit within ${stop_secs}s of SIGTERM; sending SIGKILL"
    signal_and_wait "$n" "$pid" KILL || die "member $n: pid $pid survived SIGKILL"
  fi
  rm -f "${pid_file[n]}"
  echo "member $n: stopped (pid $pid)"
}

# ---- four-letter words ---------------------------------------------------------------------
# shellcheck disable=SC2016 # $1.. expand in the inner bash
four() { # addr port word -> the reply; empty if nothing answers within 3 s
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; printf "%s" "$3" >&3; cat <&3' four "$1" "$2" "$3" 2>/dev/null || true
}

srvr_field() { # reply field -> value of "field: value"
  printf '%s\n' "$1" | sed -n "s/^$2: //p" | head -n 1 | tr -d '\r'
}

mode_of() { # srvr reply -> mode, or "not serving"
  local m; m=$(srvr_field "$1" Mode)
  echo "${m:-not serving}"
}

# ---- commands ------------------------------------------------------------------------------
status() {
  local n pid reply mode zxid nodes rc=0
  printf '%-6s  %-8s  %-21s  %-12s  %-18s  %s\n' member pid client mode zxid nodes
  for n in "${members[@]}"; do
    pid=$(member_pid "$n") || { pid=stopped; rc=3; }
    reply=$(four "${addr[n]}" "${port[n]}" srvr)
    mode=$(mode_of "$reply")
    zxid=$(srvr_field "$reply" Zxid)
    nodes=$(srvr_field "$reply" "Node count")
    printf '%-6s  %-8s  %-21s  %-12s  %-18s  %s\n' "$n" "$pid" "${addr[n]}:${port[n]}" "$mode" "${zxid:--}" "${nodes:--}"
  done
  return "$rc"
}

rollback() { # member ids: stop those of the members this command started that still run
  local n running=()
  for n in "$@"; do
    if member_pid "$n" >/dev/null; then running+=("$n"); fi
  done
  [ "${#running[@]}" -gt 0 ] || return 0
  echo "stopping the members this command started: ${running[*]}" >&2
  for n in "${running[@]}"; do stop_member "$n" >&2 || true; done
}

up() {
  local n pid started=() dead leaders others modes reply mode standalone end
  ensure_bin
  for n in "${members[@]}"; do
    prepare "$n"
    if ! member_pid "$n" >/dev/null && port_in_use "${addr[n]}" "${port[n]}"; then
      die "member $n's client port ${addr[n]}:${port[n]} is taken by a process that is not member $n of this ensemble"
    fi
  done
  for n in "${members[@]}"; do
    if pid=$(member_pid "$n"); then
      echo "member $n: already running (pid $pid)"
    else
      launch "$n"
      started+=("$n")
    fi
  done
  trap 'echo "interrupted" >&2; rollback "${started[@]}"; exit 130' INT TERM
  echo "waiting up to ${wait_secs}s for a leader..."
  end=$((SECONDS + wait_secs))
  while :; do
    dead=()
    for n in "${members[@]}"; do member_pid "$n" >/dev/null || dead+=("$n"); done
    if [ "${#dead[@]}" -gt 0 ]; then
      for n in "${dead[@]}"; do
        echo "member $n exited during start-up; its log (${log_file[n]}) ends:" >&2
        new_log "$n" >&2
        rm -f "${pid_file[n]}"
      done
      trap - INT TERM
      rollback "${started[@]}"
      die "up failed: member(s) ${dead[*]} exited (errors above)"
    fi
    leaders=0 others=0 standalone=0 modes=""
    for n in "${members[@]}"; do
      reply=$(four "${addr[n]}" "${port[n]}" srvr)
      mode=$(mode_of "$reply")
      modes="$modes $n=${mode// /-}"
      case "$mode" in
        leader) leaders=$((leaders + 1)) ;;
        follower | observer) others=$((others + 1)) ;;
        standalone) standalone=$((standalone + 1)) ;;
      esac
    done
    if [ "$leaders" -eq 1 ] && [ "$others" -eq $((${#members[@]} - 1)) ]; then
      trap - INT TERM
      echo "ensemble is up:"
      status || true
      return 0
    fi
    if [ "$standalone" -eq "${#members[@]}" ]; then
      trap - INT TERM
      echo "note: every member runs standalone (no server.N lines in its config): this is not an ensemble"
      status || true
      return 0
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      echo "no leader after ${wait_secs}s; modes:$modes" >&2
      status >&2 || true
      for n in "${members[@]}"; do
        echo "member $n's log (${log_file[n]}) ends:" >&2
        new_log "$n" >&2
      done
      trap - INT TERM
      rollback "${started[@]}"
      die "up failed: no leader elected within ${wait_secs}s (CORRAL_ENSEMBLE_TIMEOUT)"
    fi
    sleep 0.2
  done
}

start_one() { # N: start member N and wait until it serves
  local n=$1 pid m others=0 reply mode end
  ensure_bin
  prepare "$n"
  if pid=$(member_pid "$n"); then die "member $n is already running (pid $pid)"; fi
  launch "$n"
  pid=$(cat "${pid_file[n]}")
  for m in "${members[@]}"; do
    if [ "$m" != "$n" ] && member_pid "$m" >/dev/null; then others=$((others + 1)); fi
  done
  end=$((SECONDS + wait_secs))
  while :; do
    if ! is_member_process "$n" "$pid"; then
      echo "member $n exited during start-up; its log (${log_file[n]}) ends:" >&2
      new_log "$n" >&2
      rm -f "${pid_file[n]}"
      die "start $n failed"
    fi
    reply=$(four "${addr[n]}" "${port[n]}" srvr)
    mode=$(mode_of "$reply")
    if [ "$mode" != "not serving" ]; then
      echo "member $n: serving, mode $mode"
      return 0
    fi
    if [ -n "$reply" ] && [ "$others" -eq 0 ]; then
      echo "member $n: running but not serving: no other member runs, so it has no quorum"
      return 0
    fi
    if [ "$SECONDS" -ge "$end" ]; then
      echo "member $n: running (pid $pid) but not serving after ${wait_secs}s; see: $0 status, $0 logs $n" >&2
      return 1
    fi
    sleep 0.2
  done
}

kill_one() { # N: SIGKILL
  local n=$1 pid
  pid=$(member_pid "$n") || die "member $n is not running$(stale_note "$n")"
  signal_and_wait "$n" "$pid" KILL || die "member $n: pid $pid survived SIGKILL"
  rm -f "${pid_file[n]}"
  echo "member $n: killed (SIGKILL, pid $pid)"
}

down() { # SIGTERM every member at once, then wait for each
  local n pids=()
  for n in "${members[@]}"; do
    pids[n]=$(member_pid "$n") || pids[n]=""
    if [ -n "${pids[n]}" ]; then kill -TERM "${pids[n]}" 2>/dev/null || true; fi
  done
  for n in "${members[@]}"; do stop_member "$n" "${pids[n]}"; done
}

logs() { # N [tail options]
  local n=$1
  shift
  [ -f "${log_file[n]}" ] || die "member $n has no log yet (${log_file[n]})"
  if [ "$#" -eq 0 ]; then set -- -n 100; fi
  exec tail "$@" -- "${log_file[n]}"
}

cmd=${1:-}
case "$cmd" in
  up | down | status)
    [ "$#" -eq 1 ] || usage
    load_members
    "$cmd"
    ;;
  kill | start | stop | restart)
    [ "$#" -eq 2 ] || usage
    load_members
    member_arg "$2"
    case "$cmd" in
      kill) kill_one "$2" ;;
      start) start_one "$2" ;;
      stop) stop_member "$2" ;;
      restart) stop_member "$2"; start_one "$2" ;;
    esac
    ;;
  logs)
    [ "$#" -ge 2 ] || usage
    load_members
    member_arg "$2"
    logs "$2" "${@:3}"
    ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) usage ;;
esac
