#!/usr/bin/env bash
# Stops the stack started by tests/stack/up.sh: exactly the recorded PIDs, and
# only while they still run the expected binary. kube-apiserver goes first
# (with etcd gone it lingers retrying), then etcd, bao and the pushgateway;
# each gets SIGTERM, up to 15 s, then SIGKILL. Then removes the state (etcd
# data, certificates, tokens, env files), keeping logs/ for post-mortems.
# Idempotent: fine when nothing runs.
#
#   VAULT_SYNC_STACK_DIR     state dir (default tests/stack/.run)
set -euo pipefail

# shellcheck source=tests/stack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ -z "$STACK_DIR" ] || [ "$STACK_DIR" = / ]; then die "refusing state dir '$STACK_DIR'"; fi

stop_all

remove_repo_env_if_ours
if [ -d "$STACK_DIR" ]; then
  if stack_dir_is_ours; then
    find "$STACK_DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name "$STACK_MARKER" \
      -exec rm -rf {} +
  else
    log "$STACK_DIR was not made by up.sh (no $STACK_MARKER); leaving its files alone"
  fi
fi
log "stack stopped"
