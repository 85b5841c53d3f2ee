#!/usr/bin/env bash
# Stops the cluster started by tests/cluster/up.sh and puts the machine back
# as up.sh found it:
#   - stops exactly the recorded PIDs (only while they still run the expected
#     binary): the kubelet first, then every Pod container and its containerd
#     shim (found by our containerd's socket on their command line), then the
#     control plane (kube-apiserver before etcd), OpenBao, the Pushgateway and
#     containerd;
#   - unmounts what the kubelet and containerd mounted (deepest first);
#   - removes the kubepods cgroups, the network namespace, and the host paths
#     up.sh recorded as absent before it started (/run/containerd,
#     /var/lib/kubelet, ...);
#   - restores the sysctls the kubelet changed.
# Keeps logs/ for post-mortems. Idempotent: fine when nothing runs.
set -euo pipefail

# shellcheck source=tests/cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ -z "$CLUSTER_DIR" ] || [ "$CLUSTER_DIR" = / ]; then die "refusing state dir '$CLUSTER_DIR'"; fi
if [ ! -e "$CLUSTER_DIR/$CLUSTER_MARKER" ]; then
  log "no cluster state in $CLUSTER_DIR; nothing to stop"
  rm -f "$REPO_ENV_FILE"
  exit 0
fi
CTR_SOCK="$CLUSTER_DIR/containerd/containerd.sock"
problems=0
warn() {
  log "WARNING: $*"
  problems=1
}

stop_proc kubelet

# Pod containers and sandboxes, then their shims.
if live_pid containerd >/dev/null && [ -S "$CTR_SOCK" ]; then
  ctr_() { timeout 20 ctr --address "$CTR_SOCK" -n k8s.io "$@"; }
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for _ in $(seq 1 30); do
    [ -z "$(ctr_ tasks ls -q 2>/dev/null | head -n1)" ] && break
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
    sleep 0.2
  done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
fi
# Shims of our containerd: their command line names our socket.
for p in /proc/[0-9]*; do
  pid="${p#/proc/}"
  cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
  case "$cmd" in
    *containerd-shim*" -address $CTR_SOCK "*)
      log "stopping containerd shim (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      ;;
  esac
done
sleep 0.5

for ((i = ${#CLUSTER_PROCS[@]} - 1; i >= 0; i--)); do
  name="${CLUSTER_PROCS[$i]}"
  [ "$name" = kubelet ] && continue
  stop_proc "$name"
done
for p in /proc/[0-9]*; do
  cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
  case "$cmd" in
    *containerd-shim*" -address $CTR_SOCK "*)
      log "containerd shim ${p#/proc/} ignored SIGTERM; SIGKILL"
      kill -KILL "${p#/proc/}" 2>/dev/null || true
      ;;
  esac
done

# Mounts: under the state dir, and under host paths that up.sh created.
created=()
[ -f "$CLUSTER_DIR/host-paths-created" ] && mapfile -t created <"$CLUSTER_DIR/host-paths-created"
mount_roots=("$CLUSTER_DIR")
for p in "${created[@]}"; do
  [ "$p" = /run/netns ] || mount_roots+=("$p")
done
for m in $(mounts_under "${mount_roots[@]}"); do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "cannot unmount $m"
done

# cgroups the kubelet and runc made (cgroup v1: one tree per hierarchy; a
# unified one too on hybrid machines). Not when kubepods predated up.sh.
if [ ! -s "$CLUSTER_DIR/kubepods-preexisting" ] && [ -f "$CLUSTER_DIR/sysctls-before" ]; then
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h/kubepods" ] || continue
    for _ in 1 2 3 4 5; do
      find "$h/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$h/kubepods" ] || break
      sleep 0.5
    done
    [ -d "$h/kubepods" ] && warn "cgroup $h/kubepods remains"
  done
fi

# The network namespace (everything in it has stopped).
if [ -e "$CLUSTER_DIR/netns-created" ]; then
  if [ -e "$NETNS_PATH" ]; then
    ip netns del "$VS_NETNS" || warn "cannot delete network namespace $VS_NETNS"
  fi
  rm -f "$CLUSTER_DIR/netns-created"
fi

# Host paths that did not exist before up.sh.
for p in "${created[@]}"; do
  [ -e "$p" ] || continue
  if [ "$p" = /run/netns ]; then
    # `ip netns add` makes /run/netns a (shared) mount point of its own.
    [ -n "$(ls -A /run/netns)" ] && continue
    while mountpoint -q /run/netns; do umount /run/netns || break; done
    rmdir /run/netns 2>/dev/null || warn "cannot remove /run/netns"
  else
    rm -rf "$p" || warn "cannot remove $p"
  fi
done

# Sysctls: back to what up.sh found.
if [ -f "$CLUSTER_DIR/sysctls-before" ]; then
  while IFS='=' read -r key value; do
    [ -n "$key" ] || continue
    [ "$(sysctl -n "$key")" = "$value" ] || sysctl -q -w "$key=$value" || warn "cannot restore $key=$value"
  done <"$CLUSTER_DIR/sysctls-before"
fi

rm -f "$REPO_ENV_FILE"
left="$(mounts_under "$CLUSTER_DIR")"
[ -z "$left" ] || warn "mounts remain: $left"
find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name "$CLUSTER_MARKER" -exec rm -rf {} + ||
  warn "cannot remove all of $CLUSTER_DIR"
if [ "$problems" = 0 ]; then
  log "cluster stopped; machine restored"
else
  log "cluster stopped, with the warnings above"
  exit 1
fi
