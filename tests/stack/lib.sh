# shellcheck shell=bash
# Helpers shared by tests/stack/up.sh and tests/stack/down.sh. Source it; do
# not run it.

STACK_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$STACK_SRC_DIR/../.." && pwd)"
STACK_DIR="${VAULT_SYNC_STACK_DIR:-$REPO_ROOT/tests/stack/.run}"
case "$STACK_DIR" in
  /*) ;;
  *) STACK_DIR="$PWD/$STACK_DIR" ;;
esac
STACK_DIR="${STACK_DIR%/}"
# shellcheck disable=SC2034  # used by up.sh and down.sh
REPO_ENV_FILE="$REPO_ROOT/tests/stack/.env"
# Marker that makes a directory ours to delete (guards `rm -rf` against a
# mistaken VAULT_SYNC_STACK_DIR).
STACK_MARKER=".vault-sync-stack"

# Stop order matters: kube-apiserver lingers retrying when etcd is gone first.
STACK_PROCS=(kube-apiserver etcd bao pushgateway)

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
  printf '[stack] ERROR: %s\n' "$*" >&2
  exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The binary name that /proc/PID/cmdline's argv[0] must end with.
proc_binary() {
  case "$1" in
    pushgateway) echo prometheus-pushgateway ;;
    *) echo "$1" ;;
  esac
}

pid_file() { echo "$STACK_DIR/pids/$1"; }

recorded_pid() {
  local f
  f="$(pid_file "$1")"
  [ -s "$f" ] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$f")"
  [ -n "$pid" ] || return 1
  echo "$pid"
}

# True when PID is alive and its argv[0] is the expected binary (so a recycled
# PID of an unrelated process is never signalled).
pid_is() {
  local pid="$1" bin="$2" argv0
  [ -r "/proc/$pid/cmdline" ] || return 1
  argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)" || return 1
  [ "$(basename -- "$argv0")" = "$bin" ]
}

# True while PID exists and is not a zombie (whatever it runs).
pid_running() {
  [ -n "$1" ] && [ -n "$(tr -d '\0' <"/proc/$1/cmdline" 2>/dev/null)" ]
}

# Prints the recorded PID of NAME if that process is still ours and running.
live_pid() {
  local pid
  pid="$(recorded_pid "$1")" || return 1
  pid_is "$pid" "$(proc_binary "$1")" || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# curl that never uses a proxy or the machine's default CA bundle implicitly.
scurl() { curl --noproxy '*' -sS --max-time 5 "$@"; }

# Stops NAME by its recorded PID: SIGTERM, wait up to $2 seconds (default 15),
# then SIGKILL. No-op when nothing of ours runs under that PID.
stop_proc() {
  local name="$1" grace="${2:-15}" pid bin i
  bin="$(proc_binary "$name")"
  pid="$(recorded_pid "$name")" || return 0
  if ! pid_is "$pid" "$bin"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_is "$pid" "$bin" || break
    sleep 0.1
  done
  if pid_is "$pid" "$bin"; then
    log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pid_is "$pid" "$bin" || break
      sleep 0.1
    done
  fi
  pid_is "$pid" "$bin" && die "$name (pid $pid) is still running"
  rm -f "$(pid_file "$name")"
}

stop_all() {
  local name
  for name in "${STACK_PROCS[@]}"; do
    stop_proc "$name"
  done
}

# Removes tests/stack/.env if it describes the stack in $STACK_DIR (a stack
# started with another VAULT_SYNC_STACK_DIR may own it).
remove_repo_env_if_ours() {
  rm -f "$REPO_ENV_FILE.tmp"
  [ -f "$REPO_ENV_FILE" ] || return 0
  if grep -qxF "export STACK_DIR=$(printf '%q' "$STACK_DIR")" "$REPO_ENV_FILE"; then
    rm -f "$REPO_ENV_FILE"
  fi
}

# True if the state dir may be deleted: missing, empty, or carrying our marker.
stack_dir_is_ours() {
  [ ! -e "$STACK_DIR" ] && return 0
  [ -d "$STACK_DIR" ] || return 1
  [ -e "$STACK_DIR/$STACK_MARKER" ] && return 0
  [ -z "$(ls -A "$STACK_DIR")" ]
}
