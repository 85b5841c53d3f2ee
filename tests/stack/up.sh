#!/usr/bin/env bash
# Starts the real local stack for vault-sync's end-to-end tests, all on
# 127.0.0.1 and free ports: etcd + kube-apiserver, an OpenBao dev server with a
# file audit device, and a Prometheus Pushgateway. Configures Kubernetes auth
# in OpenBao for the ServiceAccount vault-sync/vault-sync and proves a login.
#
# Writes tests/stack/.env (and a copy in the state dir) with `export` lines the
# tests source. Reuses a stack that is still running and ready.
#
#   VAULT_SYNC_STACK_DIR     state dir (default tests/stack/.run)
#   STACK_READY_TIMEOUT      seconds to wait for each server (default 60)
#
# Stop it with tests/stack/down.sh.

# The stack's variables are assigned here and written out by name (${!v}).
# shellcheck disable=SC2034
set -euo pipefail

T0="$(date +%s.%N)"
# shellcheck source=tests/stack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

READY_TIMEOUT="${STACK_READY_TIMEOUT:-60}"
if [ -z "$STACK_DIR" ] || [ "$STACK_DIR" = / ]; then die "refusing state dir '$STACK_DIR'"; fi

BIN_DIR="$("$STACK_SRC_DIR/install.sh" | tail -n1)"
for b in kube-apiserver etcd bao; do
  [ -x "$BIN_DIR/$b" ] || die "install.sh did not provide $b in '$BIN_DIR'"
done
BAO_REAL="$(readlink -f "$BIN_DIR/bao")"
PUSHGATEWAY_BIN="$(command -v prometheus-pushgateway)" || die "prometheus-pushgateway not installed"
if [ -x "$BIN_DIR/kubectl" ]; then KUBECTL="$BIN_DIR/kubectl"; else KUBECTL="$(command -v kubectl)"; fi

ENV_FILE="$STACK_DIR/stack.env"
CERTS="$STACK_DIR/certs"
LOGS="$STACK_DIR/logs"

# --- helpers that need the stack's env --------------------------------------

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }

# The real bao binary, talking to our dev server as root; ignores whatever
# VAULT_*/BAO_* settings the caller has.
baoc() {
  env -u VAULT_NAMESPACE -u BAO_NAMESPACE -u VAULT_CACERT -u BAO_CACERT \
    -u VAULT_CAPATH -u BAO_CAPATH -u VAULT_SKIP_VERIFY -u BAO_SKIP_VERIFY \
    VAULT_ADDR="$VAULT_ADDR" BAO_ADDR="$VAULT_ADDR" \
    VAULT_TOKEN="${BAO_AS_TOKEN:-root}" BAO_TOKEN="${BAO_AS_TOKEN:-root}" \
    "$BAO_REAL" "$@"
}

etcd_ready() { scurl "$STACK_ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; }
kube_apiserver_ready() {
  [ "$(scurl -o /dev/null -w '%{http_code}' --cacert "$KUBE_CA_FILE" \
    -H "Authorization: Bearer $KUBE_ADMIN_TOKEN" "$KUBE_API_URL/readyz" 2>/dev/null)" = 200 ]
}
bao_ready() { [ "$(scurl -o /dev/null -w '%{http_code}' "$VAULT_ADDR/v1/sys/health" 2>/dev/null)" = 200 ]; }
pushgateway_ready() { [ "$(scurl -o /dev/null -w '%{http_code}' "$PUSHGATEWAY_URL/-/ready" 2>/dev/null)" = 200 ]; }

fail_with_log() {
  local name="$1" msg="$2"
  printf '[stack] ERROR: %s\n[stack] ---- last 30 lines of %s ----\n' "$msg" "$LOGS/$name.log" >&2
  tail -n 30 "$LOGS/$name.log" >&2 2>/dev/null || true
  printf '[stack] ---- end of %s ----\n' "$name" >&2
  exit 1
}

# wait_ready NAME: polls NAME_ready until it passes, the process dies, or
# READY_TIMEOUT seconds pass.
wait_ready() {
  local name="$1" start i
  start="$(now)"
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    if "${name//-/_}_ready"; then
      log "$name ready after $(elapsed "$start")s (pid $(recorded_pid "$name"))"
      return 0
    fi
    pid_running "$(recorded_pid "$name")" || fail_with_log "$name" "$name exited before becoming ready"
    sleep 0.1
  done
  fail_with_log "$name" "$name not ready after ${READY_TIMEOUT}s"
}

# start NAME BINARY ARGS...: runs it in its own session (so it survives the
# caller's process group), logs to logs/NAME.log, records its PID.
start() {
  local name="$1"
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo "$!" >"$(pid_file "$name")"
}

# Kubernetes objects, Kubernetes auth in OpenBao, then a real login as the
# tool's ServiceAccount. Idempotent; also refreshes the reviewer JWT.
configure_k8s_auth() {
  kc apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: vault-sync
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: token-reviewer
  namespace: vault-sync
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: vault-sync
  namespace: vault-sync
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vault-sync-token-reviewer
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:auth-delegator
subjects:
  - kind: ServiceAccount
    name: token-reviewer
    namespace: vault-sync
YAML
  kc create token token-reviewer -n vault-sync --duration=24h >"$STACK_DIR/reviewer.jwt"

  baoc policy write vault-sync "$REPO_ROOT/examples/vault-policy.hcl" >/dev/null
  baoc auth list -format=json | jq -e 'has("kubernetes/")' >/dev/null ||
    baoc auth enable kubernetes >/dev/null
  baoc write auth/kubernetes/config \
    kubernetes_host="$KUBE_API_URL" \
    kubernetes_ca_cert=@"$KUBE_CA_FILE" \
    token_reviewer_jwt=@"$STACK_DIR/reviewer.jwt" \
    disable_local_ca_jwt=true >/dev/null
  baoc write auth/kubernetes/role/vault-sync-operator \
    bound_service_account_names=vault-sync \
    bound_service_account_namespaces=vault-sync \
    policies=vault-sync ttl=1h >/dev/null
}

# Logs in as ServiceAccount vault-sync/vault-sync and checks the token carries
# the vault-sync policy and that the policy grants what it should.
prove_login() {
  local jwt out token caps
  jwt="$(kc create token vault-sync -n vault-sync)" || return 1
  out="$(baoc write -format=json auth/kubernetes/login role=vault-sync-operator jwt="$jwt" 2>&1)" || {
    printf '[stack] kubernetes login failed:\n%s\n' "$out" >&2
    return 1
  }
  jq -e '.auth.policies | index("vault-sync")' <<<"$out" >/dev/null || {
    printf '[stack] login token lacks policy vault-sync:\n%s\n' "$out" >&2
    return 1
  }
  token="$(jq -r '.auth.client_token' <<<"$out")"
  caps="$(BAO_AS_TOKEN="$token" baoc token capabilities secret/data/probe 2>&1)" || {
    printf '[stack] capabilities-self with the login token failed: %s\n' "$caps" >&2
    return 1
  }
  case "$caps" in
    *create*update*) ;;
    *)
      printf '[stack] policy vault-sync grants only "%s" on secret/data/probe\n' "$caps" >&2
      return 1
      ;;
  esac
  BAO_AS_TOKEN="$token" baoc token revoke -self >/dev/null 2>&1 || true
}

write_env_files() {
  local tmp="$ENV_FILE.tmp" v
  {
    echo "# vault-sync test stack; generated by tests/stack/up.sh at $(date -u +%FT%TZ)"
    for v in STACK_DIR KUBECONFIG KUBE_API_URL KUBE_CA_FILE KUBE_ADMIN_TOKEN \
      VAULT_ADDR BAO_ADDR VAULT_TOKEN PUSHGATEWAY_URL VAULT_AUDIT_LOG BAO_BIN \
      VAULT_SYNC_K8S_ROLE VAULT_SYNC_SA_NAMESPACE VAULT_SYNC_SA_NAME \
      STACK_BIN_DIR BAO_TLS_CERT BAO_TLS_KEY STACK_CA_FILE STACK_ETCD_URL; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
  cp "$ENV_FILE" "$REPO_ENV_FILE.tmp"
  mv "$REPO_ENV_FILE.tmp" "$REPO_ENV_FILE"
}

summary() {
  log "$1 in $(elapsed "$T0")s"
  cat >&2 <<EOF
[stack]   kube-apiserver  $KUBE_API_URL   (kubeconfig $KUBECONFIG, context vault-sync-test)
[stack]   etcd            $STACK_ETCD_URL
[stack]   openbao (dev)   $VAULT_ADDR   (root token 'root'; audit log $VAULT_AUDIT_LOG)
[stack]   pushgateway     $PUSHGATEWAY_URL
[stack]   env file        $REPO_ENV_FILE
[stack]   stop with       tests/stack/down.sh
EOF
}

# --- reuse a running stack ---------------------------------------------------

if [ -f "$ENV_FILE" ]; then
  reuse=1
  for name in "${STACK_PROCS[@]}"; do
    live_pid "$name" >/dev/null || reuse=0
  done
  if [ "$reuse" = 1 ]; then
    # shellcheck source=/dev/null
    . "$ENV_FILE"
    if etcd_ready && kube_apiserver_ready && bao_ready && pushgateway_ready; then
      # The reviewer JWT expires after 24 h; refresh the config if login fails.
      if ! prove_login 2>/dev/null; then
        log "kubernetes login failed on the running stack; reconfiguring"
        configure_k8s_auth
        prove_login || die "kubernetes auth login as vault-sync/vault-sync failed"
      fi
      write_env_files
      summary "stack already running (reused)"
      exit 0
    fi
  fi
  log "stack in $STACK_DIR is not (fully) running; starting afresh"
fi

# --- fresh start -------------------------------------------------------------

stack_dir_is_ours || die "$STACK_DIR exists and was not made by up.sh (no $STACK_MARKER); refusing to delete it"
stop_all
remove_repo_env_if_ours
rm -rf "$STACK_DIR"
mkdir -p "$STACK_DIR"/{pids,logs,certs,bao-home}
touch "$STACK_DIR/$STACK_MARKER"

# From here on, a failure stops whatever was started (logs are kept).
on_exit() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    log "up.sh failed; stopping what it started (logs kept in $LOGS)"
    stop_all || true
  fi
  return "$rc"
}
trap on_exit EXIT

# 1. Certificates.
(
  cd "$CERTS"
  openssl genrsa -out ca.key 2048 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=vault-sync-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt 2>/dev/null
  cat >serving.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
  for cert in kube-apiserver bao-tls; do
    openssl genrsa -out "$cert.key" 2048 2>/dev/null
    openssl req -new -key "$cert.key" -subj "/CN=localhost" -out "$cert.csr" 2>/dev/null
    openssl x509 -req -in "$cert.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 365 -extfile serving.ext -out "$cert.crt" 2>/dev/null
  done
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  chmod 600 ./*.key
) || die "certificate generation failed"

STACK_CA_FILE="$CERTS/ca.crt"
KUBE_CA_FILE="$STACK_CA_FILE"
BAO_TLS_CERT="$CERTS/bao-tls.crt"
BAO_TLS_KEY="$CERTS/bao-tls.key"
KUBE_ADMIN_TOKEN="$(openssl rand -hex 32)"
printf '%s,admin,admin-uid,system:masters\n' "$KUBE_ADMIN_TOKEN" >"$STACK_DIR/tokens.csv"
chmod 600 "$STACK_DIR/tokens.csv"

ETCD_PORT="$(free_port)"
ETCD_PEER_PORT="$(free_port)"
KUBE_PORT="$(free_port)"
BAO_PORT="$(free_port)"
PG_PORT="$(free_port)"
STACK_ETCD_URL="http://127.0.0.1:$ETCD_PORT"
KUBE_API_URL="https://127.0.0.1:$KUBE_PORT"
VAULT_ADDR="http://127.0.0.1:$BAO_PORT"
BAO_ADDR="$VAULT_ADDR"
VAULT_TOKEN=root
PUSHGATEWAY_URL="http://127.0.0.1:$PG_PORT"
VAULT_AUDIT_LOG="$STACK_DIR/audit.log"
BAO_BIN="$BAO_REAL"
STACK_BIN_DIR="$BIN_DIR"
KUBECONFIG="$STACK_DIR/kubeconfig"
VAULT_SYNC_K8S_ROLE=vault-sync-operator
VAULT_SYNC_SA_NAMESPACE=vault-sync
VAULT_SYNC_SA_NAME=vault-sync

cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: vault-sync-test
    cluster:
      server: $KUBE_API_URL
      certificate-authority: $KUBE_CA_FILE
users:
  - name: admin
    user:
      token: $KUBE_ADMIN_TOKEN
contexts:
  - name: vault-sync-test
    context:
      cluster: vault-sync-test
      user: admin
current-context: vault-sync-test
EOF
chmod 600 "$KUBECONFIG"

cat >"$STACK_DIR/bao-audit.hcl" <<EOF
audit "file" "to-file" {
  options {
    file_path = "$VAULT_AUDIT_LOG"
  }
}
EOF

# 2-5. Start everything at once; kube-apiserver retries until etcd answers.
start etcd "$BIN_DIR/etcd" \
  --name default \
  --data-dir "$STACK_DIR/etcd-data" \
  --listen-client-urls "$STACK_ETCD_URL" \
  --advertise-client-urls "$STACK_ETCD_URL" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync
start kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers "$STACK_ETCD_URL" \
  --bind-address 127.0.0.1 \
  --secure-port "$KUBE_PORT" \
  --tls-cert-file "$CERTS/kube-apiserver.crt" \
  --tls-private-key-file "$CERTS/kube-apiserver.key" \
  --client-ca-file "$STACK_CA_FILE" \
  --token-auth-file "$STACK_DIR/tokens.csv" \
  --authorization-mode RBAC \
  --service-cluster-ip-range 10.0.0.0/24 \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$CERTS/sa.pub" \
  --service-account-signing-key-file "$CERTS/sa.key" \
  --disable-admission-plugins ServiceAccount \
  --cert-dir "$STACK_DIR/kube-cert-dir"
# VAULT_*/BAO_* from the caller's environment must not leak into the server,
# and its dev-mode ~/.vault-token goes into the state dir, not $HOME.
start bao env -u VAULT_ADDR -u BAO_ADDR -u VAULT_TOKEN -u BAO_TOKEN \
  -u VAULT_DEV_ROOT_TOKEN_ID -u BAO_DEV_ROOT_TOKEN_ID HOME="$STACK_DIR/bao-home" \
  "$BIN_DIR/bao" server -dev -dev-root-token-id=root \
  -dev-listen-address="127.0.0.1:$BAO_PORT" -config="$STACK_DIR/bao-audit.hcl"
start pushgateway "$PUSHGATEWAY_BIN" \
  --web.listen-address="127.0.0.1:$PG_PORT" --persistence.file=""

wait_ready bao
wait_ready pushgateway
wait_ready etcd

# OpenBao mounts and policy while kube-apiserver boots.
baoc secrets enable -path=kv1 -version=1 kv >/dev/null
baoc secrets enable -path=team -version=2 kv >/dev/null

wait_ready kube-apiserver

# 6-7. Kubernetes objects, Kubernetes auth, and the proof that it works.
configure_k8s_auth
prove_login || die "kubernetes auth login as vault-sync/vault-sync failed"

# 8. Env files.
write_env_files
trap - EXIT

# 9. Summary.
summary "stack ready"
