#!/usr/bin/env bash
# vault-sync quick start: the first command on a fresh machine.
#
#   examples/quickstart.sh
#
# What it does, in order (each step prints a header):
#   1. checks for cargo (and tells you how to install Rust if it is missing);
#   2. installs and starts the local stack: kube-apiserver + etcd, an OpenBao
#      dev server and a Prometheus Pushgateway, all on 127.0.0.1
#      (tests/stack/install.sh, tests/stack/up.sh; a running stack is reused);
#   3. builds vault-sync (release; QUICKSTART_DEBUG=1 for a faster debug build);
#   4. applies every manifest in examples/ to namespace vault-sync-examples,
#      including troubleshooting.yaml, which is broken on purpose;
#   5. `vault-sync check` (connectivity, login, mounts, permissions);
#   6. `vault-sync plan`, `vault-sync run`, `vault-sync plan` again;
#   7. shows what is now in Vault: paths and key NAMES only, never values,
#      and the ownership metadata of one path.
#
# vault-sync logs in to OpenBao the way it does in a cluster: Kubernetes auth
# as ServiceAccount vault-sync/vault-sync, role vault-sync-operator, with the
# least-privilege policy examples/vault-policy.hcl. It never uses the root token.
#
# Idempotent: run it again and it reuses the stack and the build, re-applies
# the manifests (unchanged), and the second `run` writes nothing.
#
# Needs: bash, cargo, python3 + pip, Go (installed by apt if missing), and
# root or sudo for apt-get when a package is missing. Stop the stack with
# tests/stack/down.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NS=vault-sync-examples
# The troubleshooting examples carry this label; the last plan leaves them out.
GOOD_ONLY='vault-sync.io/example!=troubleshooting'
MANIFESTS=(
  examples/basic.yaml
  examples/multiple-secrets.yaml
  examples/auto-discovery.yaml
  examples/preserve-on-delete.yaml
  examples/troubleshooting.yaml
)

T_START="$(date +%s)"
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
section() { printf '\n%s===== %s =====%s (+%ss)\n' "$BOLD" "$*" "$PLAIN" "$(($(date +%s) - T_START))"; }
say() { printf '%s\n' "$*"; }
die() {
  printf '\nquickstart: ERROR: %s\n' "$*" >&2
  exit 1
}

TMP_DIR="$(mktemp -d)"
trap 'rm -rf "$TMP_DIR"' EXIT

# --- 1. Rust ------------------------------------------------------------------
section "1/9 Rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH" # installed by rustup, not yet on PATH
fi
if ! command -v cargo >/dev/null 2>&1; then
  cat >&2 <<'EOF'
cargo is not installed. Install Rust with rustup (https://rustup.rs):

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . "$HOME/.cargo/env"

then run examples/quickstart.sh again.
EOF
  exit 1
fi
cargo --version

# --- 2. Local stack -----------------------------------------------------------
section "2/9 Local stack: install (first time: builds kube-apiserver and etcd, several minutes)"
tests/stack/install.sh >/dev/null

section "2/9 Local stack: start (or reuse the one already running)"
tests/stack/up.sh
# KUBECONFIG, VAULT_ADDR/BAO_ADDR, VAULT_TOKEN (the dev root token, used here
# only to list Vault afterwards), BAO_BIN, PUSHGATEWAY_URL, ...
# shellcheck source=/dev/null
. tests/stack/.env
# Settings from your shell that would point vault-sync or bao elsewhere.
unset VAULT_NAMESPACE BAO_NAMESPACE VAULT_CACERT BAO_CACERT VAULT_CAPATH BAO_CAPATH \
  VAULT_SKIP_VERIFY BAO_SKIP_VERIFY VAULT_SYNC_CLUSTER_NAME VAULT_SYNC_AUTH \
  VAULT_SYNC_ROLE VAULT_SYNC_AUTH_PATH VAULT_SYNC_JWT_FILE VAULT_SYNC_JWT VAULT_SYNC_INDEX_MOUNT \
  VAULT_SYNC_LOG_FORMAT RUST_LOG

if ! command -v jq >/dev/null 2>&1; then
  say "jq is missing; installing it with apt-get"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
fi
if [ -x "$STACK_BIN_DIR/kubectl" ]; then KUBECTL="$STACK_BIN_DIR/kubectl"; else
  KUBECTL="$(command -v kubectl)" || die "kubectl not found (tests/stack/install.sh builds one when none is installed)"
fi
kubectl() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
# The real OpenBao CLI, as root of the dev server: only for looking at Vault.
bao() { "$BAO_BIN" "$@"; }

# --- 3. Build -----------------------------------------------------------------
if [ "${QUICKSTART_DEBUG:-0}" = 1 ]; then
  section "3/9 Build vault-sync (debug, QUICKSTART_DEBUG=1)"
  cargo build --locked
  VAULT_SYNC="$PWD/target/debug/vault-sync"
else
  section "3/9 Build vault-sync (release; first time a few minutes, QUICKSTART_DEBUG=1 is faster)"
  cargo build --release --locked
  VAULT_SYNC="$PWD/target/release/vault-sync"
fi
"$VAULT_SYNC" --version

# vault-sync as it runs in a cluster: Kubernetes auth with a short-lived token
# of ServiceAccount vault-sync/vault-sync (not the root token, which is unset
# for it). --push-label keeps this script's metrics in their own Pushgateway
# group.
JWT_FILE="$TMP_DIR/vault-sync.jwt"
kubectl create token "$VAULT_SYNC_SA_NAME" -n "$VAULT_SYNC_SA_NAMESPACE" --duration=10m >"$JWT_FILE"
chmod 600 "$JWT_FILE"
vault_sync() {
  env -u VAULT_TOKEN -u BAO_TOKEN "$VAULT_SYNC" \
    --vault-auth kubernetes --vault-role "$VAULT_SYNC_K8S_ROLE" --vault-jwt-file "$JWT_FILE" \
    --push-label source=quickstart "$@"
}

# expect_exit CODE WHY -- ARGS...: runs vault-sync ARGS, shows its exit code,
# and stops the script if the code is not CODE.
expect_exit() {
  local want="$1" why="$2" rc
  shift 3
  printf '$ vault-sync %s\n\n' "$*"
  set +e
  vault_sync "$@"
  rc=$?
  set -e
  printf '\n-> exit code %s (expected %s: %s)\n' "$rc" "$want" "$why"
  [ "$rc" = "$want" ] || die "vault-sync $1 exited $rc, expected $want"
}

# --- 4. Manifests -------------------------------------------------------------
section "4/9 Apply the example manifests to namespace $NS"
for f in "${MANIFESTS[@]}"; do
  say "# $f"
  kubectl apply -f "$f"
done

# --- 5. check -----------------------------------------------------------------
section "5/9 vault-sync check: connectivity, login, mounts and permissions"
cat <<'EOF'
`check` changes nothing. It checks Kubernetes access and RBAC, that Vault is
reachable and unsealed, the login, the mounts the annotations point at, and
that the policy grants what `run` needs. Exit code: 0 all passed, 1 otherwise.

EOF
expect_exit 0 "everything run needs is in place" -- check -n "$NS"

# --- 6. plan ------------------------------------------------------------------
section "6/9 vault-sync plan: what would change (key names only, never values)"
cat <<'EOF'
`plan` reads Kubernetes and Vault and writes nothing. Exit codes:
  0  no changes      2  changes pending (writes or deletions)      1  errors
troubleshooting.yaml is broken on purpose (a missing Secret, a missing key),
so this plan exits 1 even where paths are pending creation ("+"): errors win.
On a second run of this script the good paths are unchanged (hidden; -v
shows them) and only the two errors remain.

EOF
expect_exit 1 "the two troubleshooting examples are errors" -- plan -n "$NS"

# --- 7. run -------------------------------------------------------------------
section "7/9 vault-sync run: apply exactly that plan"
cat <<'EOF'
`run` applies exactly that plan: it writes what differs and deletes orphans
(paths whose Deployment is gone; none here), nothing else. A broken
Deployment never blocks the others. Exit code: 0 everything applied, 1
anything failed or was in error, so 1 here again because of the
troubleshooting examples. The INFO lines on stderr name each path written;
on a second run of this script there are none.

EOF
expect_exit 1 "all good paths applied; the two troubleshooting errors remain" -- run -n "$NS"

# --- 8. plan again ------------------------------------------------------------
section "8/9 vault-sync plan again, without the troubleshooting examples"
cat <<EOF
Leaving the broken examples out with a label selector (-l '$GOOD_ONLY'),
Vault now matches the Deployments: exit code 0. -v also lists the unchanged
paths ("=") and turns on debug logging.

EOF
expect_exit 0 "nothing to do" -- plan -n "$NS" -l "$GOOD_ONLY" -v

# --- 9. Vault -----------------------------------------------------------------
section "9/9 What is in Vault now (paths and key names only)"
# Prints PATH, version and key names of every secret under $1, recursively.
# Values are never printed: jq keeps only `.data.data | keys`.
list_tree() {
  local dir="$1" entries entry
  entries="$(bao kv list -format=json "$dir" 2>/dev/null)" || return 0
  while IFS= read -r entry; do
    case "$entry" in
      */) list_tree "$dir/${entry%/}" ;;
      *)
        bao kv get -format=json "$dir/$entry" | jq -r --arg p "$dir/$entry" '
          "\($p)  (version \(.data.metadata.version))\n    keys:  \((.data.data // {}) | keys | join(", "))\n    owner: \(.data.metadata.custom_metadata["vault-sync.io/owner"] // "-")"'
        ;;
    esac
  done < <(jq -r '.[]' <<<"$entries")
}
say "\$ bao kv list secret/examples (recursively) + bao kv get -format=json PATH | jq '.data.data | keys'"
say
list_tree secret/examples
cat <<'EOF'

Not there, by design: secret/examples/broken-* (errors: nothing is written to
a path that cannot be written whole), auto-optional-missing (optional and
absent) and auto-registry (referenced only by imagePullSecrets).

Ownership lives in each path's KV v2 custom_metadata (user keys are kept
beside it). For secret/examples/preserved:
EOF
say "\$ bao kv metadata get -format=json secret/examples/preserved | jq .data.custom_metadata"
bao kv metadata get -format=json secret/examples/preserved | jq '.data.custom_metadata'

if [ -n "${PUSHGATEWAY_URL:-}" ]; then
  say
  say "Metrics that \`run\` pushed to the Pushgateway ($PUSHGATEWAY_URL), group job=vault-sync source=quickstart:"
  curl --noproxy '*' -sS --max-time 5 "$PUSHGATEWAY_URL/api/v1/metrics" |
    jq -r '.data[] | select(.labels.job == "vault-sync" and .labels.source == "quickstart")
           | to_entries[] | select(.key | startswith("vault_sync_")) | "  \(.key)"' | sort -u ||
    say "  (could not read the Pushgateway)"
fi

# --- Safety check -------------------------------------------------------------
section "Check: no example secret value appears in vault-sync's or the listing's output"
# Captures the same kinds of output again and looks for every value of the
# example Secrets in it (the values stay inside this pipeline).
transcript="$TMP_DIR/transcript"
{
  vault_sync plan -n "$NS" -v || true
  vault_sync plan -n "$NS" -o json || true
  list_tree secret/examples
  bao kv metadata get -format=json secret/examples/preserved | jq '.data.custom_metadata'
} >"$transcript" 2>&1
if grep -qF -f <(kubectl get secrets -n "$NS" -o json |
  jq -r '.items[].data // {} | .[] | @base64d' | awk 'length >= 8') "$transcript"; then
  die "a secret value appeared in the output above; please report this as a bug"
fi
say "ok: none of the $(kubectl get secrets -n "$NS" -o json | jq '[.items[].data // {} | keys[]] | length') example values appears."

section "Done in $(($(date +%s) - T_START))s"
cat <<EOF
The local stack keeps running (other tools and tests can reuse it).
  Use it from your shell:  . tests/stack/.env     (then kubectl, bao, $VAULT_SYNC)
  Stop it:                 tests/stack/down.sh
  Run every test:          tests/run.sh
  Remove the examples:     kubectl delete deployments,secrets --all -n $NS
                           (not the namespace itself: with no controller manager in the
                           local stack it would stay Terminating; Vault paths stay too)

Next: README.md (annotations, paths, ownership, exit codes, JSON output) and
the comments at the top of each examples/*.yaml. For a real cluster's Vault,
see examples/vault-setup.sh and examples/vault-policy.hcl.
EOF
