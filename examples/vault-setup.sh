#!/usr/bin/env bash
# Sets up a real Vault or OpenBao for vault-sync running in a Kubernetes
# cluster (as the CronJob in cronjob/): a KV v2 mount, the least-privilege
# policy examples/vault-policy.hcl, and Kubernetes auth with role
# vault-sync-operator bound to ServiceAccount vault-sync/vault-sync.
#
# Run it once, as a Vault operator (a token allowed to manage mounts, auth
# methods and policies), from any machine that can reach Vault:
#
#   export VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=...
#   KUBERNETES_HOST=https://kube-api.example.com:6443 \
#   KUBERNETES_CA_CERT=./cluster-ca.crt \
#   TOKEN_REVIEWER_JWT_FILE=./reviewer.jwt \
#     examples/vault-setup.sh
#
# OpenBao: VAULT_CLI=bao (bao reads BAO_ADDR/BAO_TOKEN, and VAULT_* too).
# DRY_RUN=1 prints the commands instead of running them.
#
# Idempotent: an existing mount or auth method is reused; the policy, the
# auth config and the role are (re)written. It never upgrades or deletes a
# mount.
#
# Settings (environment variables):
#   VAULT_CLI                 vault (default) or bao
#   KV_MOUNT                  KV v2 mount vault-sync writes to (default: secret).
#                             The policy's `secret/` paths are rewritten to it.
#                             With another mount, also run vault-sync with
#                             --index-mount KV_MOUNT (its index of owned paths
#                             lives at <mount>/vault-sync/index/<cluster>).
#   POLICY_NAME               default: vault-sync
#   POLICY_FILE               default: vault-policy.hcl next to this script
#   AUTH_PATH                 Kubernetes auth mount (default: kubernetes); a
#                             non-default one is given to vault-sync with
#                             --vault-auth-path
#   ROLE                      default: vault-sync-operator (vault-sync's
#                             --vault-role default)
#   SA_NAME, SA_NAMESPACE     the ServiceAccount vault-sync runs as
#                             (default: vault-sync, vault-sync)
#   TOKEN_TTL                 TTL of the tokens vault-sync gets (default: 1h;
#                             vault-sync logs in again if one expires mid-run)
#   AUDIENCE                  optional: the JWT audience the role requires
#
#   Kubernetes auth config (how Vault reviews the tokens vault-sync presents):
#   KUBERNETES_HOST           the API server URL as seen from Vault; required
#                             unless Vault runs inside the cluster
#                             (default there: https://kubernetes.default.svc)
#   KUBERNETES_CA_CERT        file: the API server's CA certificate
#   TOKEN_REVIEWER_JWT_FILE   file: a long-lived token of a ServiceAccount bound
#                             to ClusterRole system:auth-delegator. Omit it when
#                             Vault runs in the cluster and reviews with its own
#                             pod token; without it outside the cluster, Vault
#                             uses vault-sync's own JWT as reviewer, so that
#                             ServiceAccount then needs system:auth-delegator.
#
#   LOGIN_TEST_JWT_FILE       optional: a token of SA_NAMESPACE/SA_NAME (e.g.
#                             `kubectl create token vault-sync -n vault-sync`);
#                             when set, the script logs in with it at the end
#                             and shows the policies the token carries.
#
# Afterwards check the result from inside the cluster with `vault-sync check`.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

VAULT_CLI="${VAULT_CLI:-vault}"
KV_MOUNT="${KV_MOUNT:-secret}"
KV_MOUNT="${KV_MOUNT%/}"
POLICY_NAME="${POLICY_NAME:-vault-sync}"
POLICY_FILE="${POLICY_FILE:-$SCRIPT_DIR/vault-policy.hcl}"
AUTH_PATH="${AUTH_PATH:-kubernetes}"
AUTH_PATH="${AUTH_PATH%/}"
ROLE="${ROLE:-vault-sync-operator}"
SA_NAME="${SA_NAME:-vault-sync}"
SA_NAMESPACE="${SA_NAMESPACE:-vault-sync}"
TOKEN_TTL="${TOKEN_TTL:-1h}"
AUDIENCE="${AUDIENCE:-}"
KUBERNETES_HOST="${KUBERNETES_HOST:-}"
KUBERNETES_CA_CERT="${KUBERNETES_CA_CERT:-}"
TOKEN_REVIEWER_JWT_FILE="${TOKEN_REVIEWER_JWT_FILE:-}"
LOGIN_TEST_JWT_FILE="${LOGIN_TEST_JWT_FILE:-}"
DRY_RUN="${DRY_RUN:-0}"

log() { printf '[vault-setup] %s\n' "$*" >&2; }
die() {
  printf '[vault-setup] ERROR: %s\n' "$*" >&2
  exit 1
}

# v ARGS...: runs the Vault CLI (or prints the command with DRY_RUN=1).
v() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ %s' "$VAULT_CLI" >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
  else
    "$VAULT_CLI" "$@"
  fi
}

command -v "$VAULT_CLI" >/dev/null 2>&1 || die "'$VAULT_CLI' not found; install it or set VAULT_CLI (vault or bao)"
command -v jq >/dev/null 2>&1 || die "jq not found; install it (apt-get install jq)"
[ -r "$POLICY_FILE" ] || die "policy file '$POLICY_FILE' not readable"
for f in "$KUBERNETES_CA_CERT" "$TOKEN_REVIEWER_JWT_FILE" "$LOGIN_TEST_JWT_FILE"; do
  [ -z "$f" ] || [ -r "$f" ] || die "file '$f' not readable"
done
if [ -z "$KUBERNETES_HOST" ]; then
  # Inside a pod, the in-cluster API server; elsewhere it must be given.
  [ -n "${KUBERNETES_SERVICE_HOST:-}" ] || die "set KUBERNETES_HOST to the API server URL as Vault reaches it"
  KUBERNETES_HOST="https://kubernetes.default.svc"
fi

# Reads need a live server even in DRY_RUN: they decide what to create.
if [ "$DRY_RUN" = 1 ]; then
  log "DRY_RUN=1: reading Vault, printing the writes instead of running them"
fi
"$VAULT_CLI" status >/dev/null 2>&1 || {
  rc=$?
  # 2 = sealed; 1 = error (unreachable, bad address or TLS).
  [ "$rc" = 2 ] && die "Vault at ${VAULT_ADDR:-${BAO_ADDR:-?}} is sealed"
  die "cannot reach Vault (${VAULT_ADDR:-${BAO_ADDR:-VAULT_ADDR unset}}); check VAULT_ADDR/VAULT_CACERT"
}

# 1. KV v2 mount. An existing KV v1 mount is left alone (upgrading is one-way
#    and rewrites its layout): vault-sync supports KV v1 too, but ownership
#    metadata, check-and-set and soft deletes need v2.
mounts="$("$VAULT_CLI" secrets list -format=json)"
mount_type="$(jq -r --arg m "$KV_MOUNT/" '.[$m].type // empty' <<<"$mounts")"
mount_version="$(jq -r --arg m "$KV_MOUNT/" '.[$m].options.version // "1"' <<<"$mounts")"
case "$mount_type" in
  "")
    log "enabling KV v2 at $KV_MOUNT/"
    v secrets enable -path="$KV_MOUNT" -version=2 kv
    ;;
  kv | generic)
    if [ "$mount_version" = 2 ]; then
      log "KV v2 mount $KV_MOUNT/ exists; reused"
    else
      log "WARNING: $KV_MOUNT/ is KV v1. vault-sync works with it, but without ownership"
      log "         metadata. To upgrade (one-way): $VAULT_CLI kv enable-versioning $KV_MOUNT/"
    fi
    ;;
  *) die "$KV_MOUNT/ is a '$mount_type' secrets engine, not KV; choose another KV_MOUNT" ;;
esac

# 2. The policy, with `secret/` replaced by the chosen mount.
log "writing policy $POLICY_NAME (from $POLICY_FILE, mount $KV_MOUNT/)"
policy="$(sed -e "s#\"secret/#\"$KV_MOUNT/#g" "$POLICY_FILE")"
if [ "$DRY_RUN" = 1 ]; then
  v policy write "$POLICY_NAME" - <<<"$policy"
else
  v policy write "$POLICY_NAME" - <<<"$policy" >/dev/null
fi

# 3. Kubernetes auth method.
if jq -e --arg a "$AUTH_PATH/" 'has($a)' <<<"$("$VAULT_CLI" auth list -format=json)" >/dev/null; then
  log "auth method at auth/$AUTH_PATH/ exists; reused"
else
  log "enabling Kubernetes auth at auth/$AUTH_PATH/"
  v auth enable -path="$AUTH_PATH" kubernetes
fi

# 4. How Vault validates the tokens it is shown (TokenReview against the API server).
config=(kubernetes_host="$KUBERNETES_HOST")
[ -z "$KUBERNETES_CA_CERT" ] || config+=(kubernetes_ca_cert=@"$KUBERNETES_CA_CERT")
if [ -n "$TOKEN_REVIEWER_JWT_FILE" ]; then
  # An explicit reviewer: do not fall back to a local pod token.
  config+=(token_reviewer_jwt=@"$TOKEN_REVIEWER_JWT_FILE" disable_local_ca_jwt=true)
fi
log "configuring auth/$AUTH_PATH/config (kubernetes_host=$KUBERNETES_HOST)"
v write "auth/$AUTH_PATH/config" "${config[@]}"

# 5. The role vault-sync logs in with.
role=(
  bound_service_account_names="$SA_NAME"
  bound_service_account_namespaces="$SA_NAMESPACE"
  token_policies="$POLICY_NAME"
  token_ttl="$TOKEN_TTL"
)
[ -z "$AUDIENCE" ] || role+=(audience="$AUDIENCE")
log "writing role auth/$AUTH_PATH/role/$ROLE for ServiceAccount $SA_NAMESPACE/$SA_NAME"
v write "auth/$AUTH_PATH/role/$ROLE" "${role[@]}"

# 6. Optional proof: log in as the ServiceAccount and show the token's policies.
if [ -n "$LOGIN_TEST_JWT_FILE" ] && [ "$DRY_RUN" != 1 ]; then
  log "test login as $SA_NAMESPACE/$SA_NAME"
  login="$("$VAULT_CLI" write -format=json "auth/$AUTH_PATH/login" role="$ROLE" jwt=@"$LOGIN_TEST_JWT_FILE")" ||
    die "login with LOGIN_TEST_JWT_FILE failed (see the message above)"
  jq -e --arg p "$POLICY_NAME" '.auth.policies | index($p)' <<<"$login" >/dev/null ||
    die "the login token lacks policy $POLICY_NAME"
  log "login ok: policies $(jq -r '.auth.policies | join(", ")' <<<"$login"), ttl $(jq -r '.auth.lease_duration' <<<"$login")s"
  # Revoke the test token (its value is never printed).
  VAULT_TOKEN="$(jq -r '.auth.client_token' <<<"$login")" BAO_TOKEN="$(jq -r '.auth.client_token' <<<"$login")" \
    "$VAULT_CLI" token revoke -self >/dev/null 2>&1 || true
fi

cat >&2 <<EOF
[vault-setup] done. vault-sync in the cluster then runs with:
[vault-setup]   --vault-auth kubernetes --vault-role $ROLE$([ "$AUTH_PATH" = kubernetes ] || printf ' --vault-auth-path %s' "$AUTH_PATH")$([ "$KV_MOUNT" = secret ] || printf ' --index-mount %s' "$KV_MOUNT")
[vault-setup] (inside a pod, kubernetes auth is the default). Verify with: vault-sync check
EOF
