# shellcheck shell=bash
# Helpers shared by tests/cluster/{install,image,up,down}.sh. Source it; do
# not run it.

CLUSTER_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SRC_DIR/../.." && pwd)"
CLUSTER_DIR="${VAULT_SYNC_CLUSTER_DIR:-$REPO_ROOT/tests/cluster/.run}"
case "$CLUSTER_DIR" in
  /*) ;;
  *) CLUSTER_DIR="$PWD/$CLUSTER_DIR" ;;
esac
CLUSTER_DIR="${CLUSTER_DIR%/}"
# Unix socket paths are limited to 107 bytes and containerd's deepest one
# needs about 37 beyond the state dir: a checkout deep in the file system
# (a CI runner's) gets a short state dir of its own instead, named after
# the checkout so that two checkouts never share one.
if [ -z "${VAULT_SYNC_CLUSTER_DIR:-}" ] && [ "${#CLUSTER_DIR}" -gt 70 ]; then
  CLUSTER_DIR="/run/vault-sync-cluster-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
fi
# shellcheck disable=SC2034  # used by up.sh and down.sh
REPO_ENV_FILE="$REPO_ROOT/tests/cluster/.env"
# Marker that makes a directory ours to delete (guards `rm -rf`).
CLUSTER_MARKER=".vault-sync-cluster"

# The network namespace everything runs in (a name under /run/netns).
VS_NETNS="${VAULT_SYNC_NETNS:-vault-sync-e2e}"
NETNS_PATH="/run/netns/$VS_NETNS"
# The node's address: on a veth pair that lives entirely inside the
# namespace (this kernel has no dummy device). The API server needs a
# non-loopback address to advertise and the kubelet a non-loopback node IP;
# nothing routes beyond the pair.
NODE_IP=10.213.0.1
NODE_NAME=vault-sync-node

# Fixed ports: they are private to the namespace, so they never clash with
# the host or with tests/stack/.
ETCD_PORT=2379
ETCD_PEER_PORT=2380
KUBE_PORT=6443
KCM_PORT=10257
SCHED_PORT=10259
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
BAO_PORT=8200
PG_PORT=9091

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${VAULT_SYNC_STACK_CACHE:-$HOME/.cache/vault-sync-stack}"
BIN_DIR="$CACHE_ROOT/kube-$KUBE_VERSION-etcd-$ETCD_VERSION/bin"
# Helm, for the chart's tests (cronjob/chart): built from its Go module by
# install.sh, cached apart from the Kubernetes binaries (it does not follow
# their version).
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
HELM="$CACHE_ROOT/helm-$HELM_VERSION/helm"

# The image the test overlay names (tests/cluster/kustomization.yaml).
VS_IMAGE="${VS_IMAGE:-localhost/vault-sync:e2e}"
PAUSE_IMAGE="localhost/vault-sync-e2e/pause:1.0"

# Start order; down.sh stops them in reverse (the kubelet first, containerd
# and the servers it needs last; kube-apiserver before etcd).
CLUSTER_PROCS=(containerd etcd kube-apiserver bao pushgateway kube-controller-manager kube-scheduler kubelet)

# Sysctls the kubelet sets on start (kubelet's setupKernelTunables); down.sh
# puts back the values up.sh found.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Host paths the kubelet, containerd or CNI create whatever their flags say;
# up.sh records which were absent, down.sh removes exactly those.
HOST_PATHS=(/run/containerd /var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni /run/netns)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
  printf '[cluster] ERROR: %s\n' "$*" >&2
  exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Runs a command inside the namespace.
in_ns() { nsenter --net="$NETNS_PATH" "$@"; }

# The binary name that /proc/PID/cmdline's argv[0] must end with.
proc_binary() {
  case "$1" in
    pushgateway) echo prometheus-pushgateway ;;
    *) echo "$1" ;;
  esac
}

pid_file() { echo "$CLUSTER_DIR/pids/$1"; }

recorded_pid() {
  local f pid
  f="$(pid_file "$1")"
  [ -s "$f" ] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [ -n "$pid" ] || return 1
  echo "$pid"
}

# True when PID is alive and its argv[0] is the expected binary (a recycled
# PID of an unrelated process is never signalled).
pid_is() {
  local pid="$1" bin="$2" argv0
  [ -r "/proc/$pid/cmdline" ] || return 1
  argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)" || return 1
  [ "$(basename -- "$argv0")" = "$bin" ]
}

live_pid() {
  local pid
  pid="$(recorded_pid "$1")" || return 1
  pid_is "$pid" "$(proc_binary "$1")" || return 1
  echo "$pid"
}

# curl that never uses a proxy, run inside the namespace.
ncurl() { in_ns curl --noproxy '*' -sS --max-time 5 "$@"; }

# Stops NAME by its recorded PID: SIGTERM, up to GRACE seconds, SIGKILL.
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

cluster_dir_is_ours() {
  [ ! -e "$CLUSTER_DIR" ] && return 0
  [ -d "$CLUSTER_DIR" ] || return 1
  [ -e "$CLUSTER_DIR/$CLUSTER_MARKER" ] && return 0
  [ -z "$(ls -A "$CLUSTER_DIR")" ]
}

# Mount points at or under any of the given directories, deepest first.
mounts_under() {
  local d
  for d in "$@"; do
    awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
  done | sort -u -r
}
