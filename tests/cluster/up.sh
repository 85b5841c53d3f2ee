#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster that runs Pods, and the Vault
# and Pushgateway its Pods talk to, all inside a network namespace of its own
# (/run/netns/$VS_NETNS): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd (+ runc), the kubelet, an OpenBao dev server
# (Kubernetes auth against this API server, set up by examples/vault-setup.sh;
# a file audit device) and a Prometheus Pushgateway. Nothing listens outside
# the namespace, and nothing routes out of it: its only interfaces are
# loopback and a veth pair whose both ends are inside it.
#
# Builds the vault-sync image from the release binary (image/build.sh) and
# imports it into the node as $VS_IMAGE.
#
# Writes tests/cluster/.env (`export` lines: VS_NETNS, KUBECONFIG,
# VAULT_ADDR, VAULT_TOKEN, VAULT_AUDIT_LOG, PUSHGATEWAY_URL, VS_IMAGE, ...).
# Commands meant for the cluster run as `nsenter --net=/run/netns/$VS_NETNS ...`.
# Reuses a cluster that is running and ready (re-importing the image).
#
#   VAULT_SYNC_CLUSTER_DIR   state dir (default tests/cluster/.run)
#   VAULT_SYNC_NETNS         namespace name (default vault-sync-e2e)
#   CLUSTER_READY_TIMEOUT    seconds to wait for each server (default 120)
#
# Stop it with tests/cluster/down.sh. When a step fails, the script names it
# and its log, shows the log's end, and stops what it started.

# Variables are written out by name (${!v}).
# shellcheck disable=SC2034
set -euo pipefail

# shellcheck source=tests/cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
T0="$(now)"

# The cluster's OpenBao is not the host stack's: a caller that sourced
# tests/stack/.env (tests/run.sh does) must not point the bao CLI, which
# prefers BAO_* over VAULT_*, at a server outside the namespace.
unset BAO_ADDR BAO_TOKEN BAO_CACERT BAO_CAPATH BAO_NAMESPACE \
  VAULT_CACERT VAULT_CAPATH VAULT_NAMESPACE VAULT_CLIENT_CERT VAULT_CLIENT_KEY

READY_TIMEOUT="${CLUSTER_READY_TIMEOUT:-120}"
if [ -z "$CLUSTER_DIR" ] || [ "$CLUSTER_DIR" = / ]; then die "refusing state dir '$CLUSTER_DIR'"; fi
[ "$(id -u)" = 0 ] || die "needs root (network namespace, containerd, kubelet)"
# Unix socket paths are limited to 107 bytes; the longest one up.sh makes is
# containerd's ttrpc socket.
[ "${#CLUSTER_DIR}" -le 70 ] ||
  die "state dir path too long for unix sockets ($CLUSTER_DIR); set VAULT_SYNC_CLUSTER_DIR to a shorter one"

LOGS="$CLUSTER_DIR/logs"
PKI="$CLUSTER_DIR/pki"
ENV_FILE="$CLUSTER_DIR/cluster.env"
CTR_SOCK="$CLUSTER_DIR/containerd/containerd.sock"
KUBECONFIG="$CLUSTER_DIR/admin.kubeconfig"
KUBE_API_URL="https://127.0.0.1:$KUBE_PORT"
VAULT_ADDR="http://127.0.0.1:$BAO_PORT"
VAULT_TOKEN=root
PUSHGATEWAY_URL="http://127.0.0.1:$PG_PORT"
VAULT_AUDIT_LOG="$CLUSTER_DIR/bao-audit.log"
VAULT_UNSEAL_KEY_FILE="$CLUSTER_DIR/bao-unseal.key"
KUBECTL="$(command -v kubectl || echo "$BIN_DIR/kubectl")"

# --- step bookkeeping --------------------------------------------------------

STEP="start"
STEP_LOG=""
# step NAME: the step now running; its output goes to logs/NAME.log.
step() {
  STEP="$1"
  STEP_LOG="$LOGS/$1.log"
  log "step: $1"
}
on_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  trap - EXIT
  printf '[cluster] ERROR: up.sh failed at step "%s" (exit %s); log: %s\n' "$STEP" "$rc" "${STEP_LOG:-none}" >&2
  if [ -n "$STEP_LOG" ] && [ -f "$STEP_LOG" ]; then
    printf '[cluster] ---- last 40 lines of %s ----\n' "$STEP_LOG" >&2
    # (The dev server's log holds its unseal key: never shown.)
    tail -n 40 "$STEP_LOG" | sed -E 's/(Unseal Key|Root Token): .*/\1: (hidden)/' >&2 || true
    printf '[cluster] ---- end ----\n' >&2
  fi
  if [ "${CLUSTER_KEEP_ON_FAILURE:-0}" != 1 ]; then
    log "stopping what up.sh started (logs kept in $LOGS; CLUSTER_KEEP_ON_FAILURE=1 keeps it running)"
    "$CLUSTER_SRC_DIR/down.sh" >&2 || true
  fi
  exit "$rc"
}

# run_logged CMD...: runs CMD with its output appended to the step's log.
run_logged() { "$@" >>"$STEP_LOG" 2>&1; }

kc() { in_ns "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
ctr_() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }
baoc() {
  env -u VAULT_NAMESPACE -u BAO_NAMESPACE -u VAULT_CACERT -u BAO_CACERT -u VAULT_SKIP_VERIFY \
    VAULT_ADDR="$VAULT_ADDR" BAO_ADDR="$VAULT_ADDR" VAULT_TOKEN=root BAO_TOKEN=root \
    nsenter --net="$NETNS_PATH" "$BAO_BIN" "$@"
}

# start NAME BINARY ARGS...: in the namespace, in its own session; output to
# logs/NAME.log; PID recorded.
start() {
  local name="$1"
  shift
  setsid nsenter --net="$NETNS_PATH" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo "$!" >"$(pid_file "$name")"
}

# wait_for NAME CHECK...: until CHECK passes, NAME's process dies, or the
# timeout; on failure the step's log is NAME's log.
wait_for() {
  local name="$1" t i
  shift
  t="$(now)"
  STEP_LOG="$LOGS/$name.log"
  for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
    if "$@" >/dev/null 2>&1; then
      log "  $name ready after $(elapsed "$t")s"
      return 0
    fi
    if [ -n "$(recorded_pid "$name" 2>/dev/null)" ] && ! live_pid "$name" >/dev/null; then
      log "$name exited before it was ready"
      return 1
    fi
    sleep 0.2
  done
  log "$name not ready after ${READY_TIMEOUT}s"
  return 1
}

http_ok() { [ "$(ncurl -o /dev/null -w '%{http_code}' "$@" 2>/dev/null)" = 200 ]; }
etcd_ready() { ncurl "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { http_ok --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(admin_token)" "$KUBE_API_URL/readyz"; }
bao_ready() { http_ok "$VAULT_ADDR/v1/sys/health"; }
pushgateway_ready() { http_ok "$PUSHGATEWAY_URL/-/ready"; }
containerd_ready() { ctr --address "$CTR_SOCK" version; }
node_ready() {
  local out
  out="$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints}' 2>/dev/null)"
  [ "$out" = "True " ]
}
admin_token() { head -n1 "$CLUSTER_DIR/tokens.csv" | cut -d, -f1; }

write_env_files() {
  local v tmp="$ENV_FILE.tmp"
  {
    echo "# vault-sync test cluster; generated by tests/cluster/up.sh at $(date -u +%FT%TZ)"
    echo "# Run cluster commands as: nsenter --net=/run/netns/\$VS_NETNS <command>"
    # BAO_ADDR too: the bao CLI prefers it to VAULT_ADDR, and a shell that
    # sourced the host stack's env has it set to that stack.
    BAO_ADDR="$VAULT_ADDR"
    for v in VS_NETNS KUBECONFIG VAULT_ADDR BAO_ADDR VAULT_TOKEN VAULT_AUDIT_LOG PUSHGATEWAY_URL \
      VS_IMAGE VS_IMAGE_DIGEST VAULT_UNSEAL_KEY_FILE KUBE_API_URL CLUSTER_DIR BAO_BIN \
      KUBECTL HELM CTR_SOCK NODE_NAME NODE_IP; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
  cp "$ENV_FILE" "$REPO_ENV_FILE.tmp"
  mv "$REPO_ENV_FILE.tmp" "$REPO_ENV_FILE"
}

# Builds the vault-sync image (release binary) and imports it into the node.
build_and_import_image() {
  step image
  run_logged "$REPO_ROOT/image/build.sh" "$VS_IMAGE"
  VS_IMAGE_DIGEST="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' \
    "$REPO_ROOT/target/image/image.json")"
  run_logged ctr_ images import "$REPO_ROOT/target/image/vault-sync.oci.tar"
  ctr_ images ls -q | grep -qxF "$VS_IMAGE" || { log "image $VS_IMAGE missing after import"; return 1; }
  log "  image $VS_IMAGE $VS_IMAGE_DIGEST"
}

summary() {
  log "$1 in $(elapsed "$T0")s"
  cat >&2 <<EOF
[cluster]   namespace       /run/netns/$VS_NETNS (node $NODE_NAME, $NODE_IP)
[cluster]   kube-apiserver  $KUBE_API_URL (kubeconfig $KUBECONFIG)
[cluster]   openbao (dev)   $VAULT_ADDR (audit log $VAULT_AUDIT_LOG)
[cluster]   pushgateway     $PUSHGATEWAY_URL
[cluster]   image           $VS_IMAGE $VS_IMAGE_DIGEST
[cluster]   env file        $REPO_ENV_FILE
[cluster]   use it with     . $REPO_ENV_FILE; nsenter --net=/run/netns/\$VS_NETNS kubectl get pods -A
[cluster]   stop with       tests/cluster/down.sh
EOF
}

trap on_exit EXIT

# --- reuse a running cluster -------------------------------------------------

if [ -f "$ENV_FILE" ] && [ -e "$NETNS_PATH" ]; then
  reuse=1
  for name in "${CLUSTER_PROCS[@]}"; do
    live_pid "$name" >/dev/null || reuse=0
  done
  if [ "$reuse" = 1 ]; then
    # shellcheck source=/dev/null
    . "$ENV_FILE"
    if apiserver_ready && node_ready && bao_ready && pushgateway_ready; then
      mkdir -p "$LOGS"
      build_and_import_image
      write_env_files
      summary "cluster already running (reused)"
      exit 0
    fi
  fi
  log "cluster in $CLUSTER_DIR is not (fully) running; starting afresh"
fi

# --- fresh start -------------------------------------------------------------

cluster_dir_is_ours || die "$CLUSTER_DIR exists and was not made by up.sh (no $CLUSTER_MARKER); refusing to delete it"
if [ -e "$NETNS_PATH" ] && [ ! -e "$CLUSTER_DIR/netns-created" ]; then
  die "network namespace $VS_NETNS exists but was not made by up.sh; set VAULT_SYNC_NETNS or remove it (ip netns del $VS_NETNS)"
fi
# Whatever a previous run left (stopped or half-started) goes first.
"$CLUSTER_SRC_DIR/down.sh" >/dev/null 2>&1 || "$CLUSTER_SRC_DIR/down.sh"
rm -rf "$CLUSTER_DIR"
mkdir -p "$CLUSTER_DIR"/{pids,logs,pki,containerd,cni/net.d,kubelet,manifests,pod-logs,images,bao-home}
touch "$CLUSTER_DIR/$CLUSTER_MARKER"

step install
BIN_DIR="$(run_logged "$CLUSTER_SRC_DIR/install.sh" && tail -n1 "$STEP_LOG")"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet bao pause; do
  [ -x "$BIN_DIR/$b" ] || { log "install.sh did not provide $b in $BIN_DIR"; false; }
done
[ -x "$HELM" ] || { log "install.sh did not provide helm at $HELM"; false; }
BAO_BIN="$(readlink -f "$BIN_DIR/bao")"
PUSHGATEWAY_BIN="$(command -v prometheus-pushgateway)"
KUBECTL="$(command -v kubectl || echo "$BIN_DIR/kubectl")"

# What the machine looked like, so that down.sh can put it back.
step record-host
: >"$STEP_LOG"
for p in "${HOST_PATHS[@]}"; do
  [ -e "$p" ] || echo "$p"
done >"$CLUSTER_DIR/host-paths-created"
for s in "${KUBELET_SYSCTLS[@]}"; do
  printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
done >"$CLUSTER_DIR/sysctls-before"
for h in /sys/fs/cgroup/*/; do
  [ -d "$h/kubepods" ] && echo "$h" >>"$CLUSTER_DIR/kubepods-preexisting"
done
if [ -s "$CLUSTER_DIR/kubepods-preexisting" ]; then
  log "kubepods cgroups already exist (another kubelet?): $(tr '\n' ' ' <"$CLUSTER_DIR/kubepods-preexisting")"
  false
fi

step netns
ip netns add "$VS_NETNS" >>"$STEP_LOG" 2>&1
touch "$CLUSTER_DIR/netns-created"
run_logged in_ns ip link set lo up
run_logged in_ns ip link add va type veth peer name vb
run_logged in_ns ip addr add "$NODE_IP/24" dev va
run_logged in_ns ip link set va up
run_logged in_ns ip link set vb up

step certs
(
  cd "$PKI"
  openssl genrsa -out ca.key 2048
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=vault-sync-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
  cat >serving.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$NODE_IP,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
EXT
  cat >client.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
  openssl genrsa -out apiserver.key 2048
  openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 365 \
    -extfile serving.ext -out apiserver.crt
  openssl genrsa -out kubelet-client.key 2048
  openssl req -new -key kubelet-client.key -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" -out kubelet-client.csr
  openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 365 \
    -extfile client.ext -out kubelet-client.crt
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
  chmod 600 ./*.key
) >>"$STEP_LOG" 2>&1
{
  printf '%s,admin,admin-uid,system:masters\n' "$(openssl rand -hex 32)"
  printf '%s,system:node:%s,node-uid,system:nodes\n' "$(openssl rand -hex 32)" "$NODE_NAME"
  printf '%s,system:kube-controller-manager,kcm-uid\n' "$(openssl rand -hex 32)"
  printf '%s,system:kube-scheduler,scheduler-uid\n' "$(openssl rand -hex 32)"
} >"$CLUSTER_DIR/tokens.csv"
chmod 600 "$CLUSTER_DIR/tokens.csv"
kubeconfig() { # FILE LINE-OF-tokens.csv
  local token
  token="$(sed -n "${2}p" "$CLUSTER_DIR/tokens.csv" | cut -d, -f1)"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: vault-sync-e2e
    cluster:
      server: $KUBE_API_URL
      certificate-authority: $PKI/ca.crt
users:
  - name: user
    user:
      token: $token
contexts:
  - name: vault-sync-e2e
    context:
      cluster: vault-sync-e2e
      user: user
current-context: vault-sync-e2e
EOF
  chmod 600 "$1"
}
kubeconfig "$KUBECONFIG" 1
kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" 2
kubeconfig "$CLUSTER_DIR/kcm.kubeconfig" 3
kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" 4

step configs
: >"$STEP_LOG"
cat >"$CLUSTER_DIR/containerd/config.toml" <<EOF
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$CLUSTER_DIR/containerd/state"
# This machine's root lacks CAP_SYS_RESOURCE: containerd and runc must not
# try to lower oom_score_adj (runc create fails with "can't get final
# child's PID from pipe: EOF" otherwise).
oom_score = 0
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  address = "$CLUSTER_DIR/containerd/debug.sock"
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CLUSTER_DIR/containerd/opt"
EOF
# Only so that the node reports NetworkReady: every Pod here uses
# hostNetwork, so no CNI plugin ever runs.
cat >"$CLUSTER_DIR/cni/net.d/10-vault-sync-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "vault-sync-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "vse2ecni0", "isGateway": false, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam",
              "ranges": [[{"subnet": "10.214.0.0/24"}]]}},
    {"type": "loopback"}
  ]
}
EOF
cat >"$CLUSTER_DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
# This machine runs cgroup v1 (1.37 refuses it unless told).
failCgroupV1: false
failSwapOn: false
# Root here lacks CAP_SYS_RESOURCE: do not touch oom_score_adj.
oomScoreAdj: 0
makeIPTablesUtilChains: false
address: 0.0.0.0
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
staticPodPath: $CLUSTER_DIR/manifests
resolvConf: /etc/resolv.conf
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
# No registry to pull an evicted image back from.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
podLogsDir: $CLUSTER_DIR/pod-logs
EOF
cat >"$CLUSTER_DIR/bao-audit.hcl" <<EOF
audit "file" "to-file" {
  options {
    file_path = "$VAULT_AUDIT_LOG"
  }
}
EOF

step pause-image
run_logged mkdir -p "$CLUSTER_DIR/images/pause-rootfs"
run_logged install -m 0755 "$BIN_DIR/pause" "$CLUSTER_DIR/images/pause-rootfs/pause"
run_logged python3 "$REPO_ROOT/image/mkimage.py" "$CLUSTER_DIR/images/pause-rootfs" \
  "$CLUSTER_DIR/images/pause.tar" --name "$PAUSE_IMAGE" --entrypoint '["/pause"]'

step containerd
start containerd /usr/bin/containerd --config "$CLUSTER_DIR/containerd/config.toml"
wait_for containerd containerd_ready
step import-images
run_logged ctr_ images import "$CLUSTER_DIR/images/pause.tar"

step control-plane
start etcd "$BIN_DIR/etcd" --name vault-sync-e2e --data-dir "$CLUSTER_DIR/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "vault-sync-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls "" --unsafe-no-fsync
# --advertise-address: the node's address (the endpoint reconciler refuses
# loopback, and there is no default route to pick one from).
start kube-apiserver "$BIN_DIR/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --secure-port "$KUBE_PORT" --advertise-address "$NODE_IP" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --token-auth-file "$CLUSTER_DIR/tokens.csv" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-cluster-ip-range 10.0.0.0/24 \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --kubelet-client-certificate "$PKI/kubelet-client.crt" --kubelet-client-key "$PKI/kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --cert-dir "$CLUSTER_DIR/apiserver-certs"
# The dev server prints its unseal key at start: kept (0600) for the sealed-
# Vault test, never printed. HOME: its ~/.vault-token goes to the state dir.
start bao env -u VAULT_ADDR -u BAO_ADDR -u VAULT_TOKEN -u BAO_TOKEN \
  -u VAULT_DEV_ROOT_TOKEN_ID -u BAO_DEV_ROOT_TOKEN_ID HOME="$CLUSTER_DIR/bao-home" \
  "$BIN_DIR/bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$BAO_PORT" \
  -config="$CLUSTER_DIR/bao-audit.hcl"
start pushgateway "$PUSHGATEWAY_BIN" --web.listen-address="127.0.0.1:$PG_PORT" --persistence.file=""
wait_for etcd etcd_ready
wait_for bao bao_ready
wait_for pushgateway pushgateway_ready
# The banner with the key may come a moment after the API answers.
unseal_key_logged() {
  (umask 077 && sed -n 's/^Unseal Key: //p' "$LOGS/bao.log" | head -n1 >"$VAULT_UNSEAL_KEY_FILE")
  [ -s "$VAULT_UNSEAL_KEY_FILE" ]
}
wait_for bao unseal_key_logged
wait_for kube-apiserver apiserver_ready

step controllers-and-node
# No Deployment or ReplicaSet controller: Deployments are vault-sync's input
# here, and their Pods could not pull an image anyway (no registry).
start kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig "$CLUSTER_DIR/kcm.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/kcm.kubeconfig" \
  --authorization-kubeconfig "$CLUSTER_DIR/kcm.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --leader-elect=false --controllers '*,-deployment-controller,-replicaset-controller'
start kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig "$CLUSTER_DIR/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false
start kubelet "$BIN_DIR/kubelet" --config "$CLUSTER_DIR/kubelet-config.yaml" \
  --kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" --root-dir "$CLUSTER_DIR/kubelet" \
  --cert-dir "$CLUSTER_DIR/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
wait_for kubelet node_ready

step vault-setup
# Vault's own identity for reviewing tokens (TokenReview), as a Vault
# outside the cluster has it: a ServiceAccount bound to system:auth-delegator.
run_logged kc -n kube-system create serviceaccount vault-token-reviewer
run_logged kc create clusterrolebinding vault-token-reviewer \
  --clusterrole=system:auth-delegator --serviceaccount=kube-system:vault-token-reviewer
(umask 077 && kc -n kube-system create token vault-token-reviewer --duration=24h >"$CLUSTER_DIR/reviewer.jwt")
# The same script a user runs (README "The Vault side").
run_logged env VAULT_CLI="$BAO_BIN" VAULT_ADDR="$VAULT_ADDR" VAULT_TOKEN=root \
  KUBERNETES_HOST="$KUBE_API_URL" KUBERNETES_CA_CERT="$PKI/ca.crt" \
  TOKEN_REVIEWER_JWT_FILE="$CLUSTER_DIR/reviewer.jwt" \
  nsenter --net="$NETNS_PATH" "$REPO_ROOT/examples/vault-setup.sh"

build_and_import_image

write_env_files
trap - EXIT
summary "cluster ready"
