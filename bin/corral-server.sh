#!/usr/bin/env bash
# Start, stop, restart or query one Corral server, the way zkServer.sh does.
#   bin/corral-server.sh start|stop|restart|status|start-foreground [CONFIG]
# CONFIG defaults to conf/zoo.cfg. The pid file and log go to the config's dataDir
# (corral.pid, corral.log). CORRAL_BIN overrides the binary (default: target/release/corral,
# built on demand).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
cfg=${2:-$here/conf/zoo.cfg}
bin=${CORRAL_BIN:-$here/target/release/corral}

die() { echo "corral-server: $*" >&2; exit 1; }
[ -f "$cfg" ] || die "config file $cfg not found"

cfg_value() { # key -> last value in the config, whitespace trimmed
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$cfg" | tail -n 1 | sed 's/[[:space:]]*$//'
}
data_dir=$(cfg_value dataDir)
[ -n "$data_dir" ] || die "$cfg has no dataDir"
case "$data_dir" in /*) ;; *) data_dir="$PWD/$data_dir" ;; esac
pid_file="$data_dir/corral.pid"
log_file="$data_dir/corral.log"
port=$(cfg_value clientPort)
addr=$(cfg_value clientPortAddress)
addr=${addr:-127.0.0.1}
[ "$addr" = "0.0.0.0" ] && addr=127.0.0.1

ensure_bin() {
  if [ ! -x "$bin" ]; then
    echo "building corral (cargo build --release)..."
    (cd "$here" && cargo build --release --quiet)
  fi
}

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid; pid=$(cat "$pid_file")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

four() { # word -> reply, empty if the server does not answer
  exec 3<>"/dev/tcp/$addr/$port" 2>/dev/null || return 1
  printf '%s' "$1" >&3
  timeout 2 cat <&3 || true
  exec 3<&- 3>&-
}

start() {
  ensure_bin
  if pid=$(running_pid); then die "already running as process $pid"; fi
  mkdir -p "$data_dir"
  nohup "$bin" server "$cfg" >>"$log_file" 2>&1 </dev/null &
  echo $! >"$pid_file"
  for _ in $(seq 1 100); do
    if [ "$(four ruok 2>/dev/null)" = "imok" ]; then echo "STARTED (pid $(cat "$pid_file"), log $log_file)"; return 0; fi
    kill -0 "$(cat "$pid_file")" 2>/dev/null || { tail -n 20 "$log_file" >&2; die "server exited during start-up"; }
    sleep 0.1
  done
  die "server did not answer ruok; see $log_file"
}

stop() {
  if ! pid=$(running_pid); then echo "no server running (pid file $pid_file)"; rm -f "$pid_file"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -f "$pid_file"
  echo "STOPPED"
}

status() {
  if ! pid=$(running_pid); then echo "not running"; return 3; fi
  local mode; mode=$(four srvr | sed -n 's/^Mode: //p')
  echo "running (pid $pid), client port $addr:$port, mode: ${mode:-unknown}"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  start-foreground) ensure_bin; exec "$bin" server "$cfg" ;;
  *) echo "usage: $0 start|stop|restart|status|start-foreground [CONFIG]" >&2; exit 2 ;;
esac
