#!/usr/bin/env bash
# Installs what the single-node test cluster needs beyond tests/stack/:
#   - Debian packages: containerd, runc, containernetworking-plugins, iptables;
#   - kubelet, kube-controller-manager and kube-scheduler, built from the same
#     Go wrapper module as tests/stack/install.sh's kube-apiserver and cached
#     beside it (~/.cache/vault-sync-stack/kube-<v>-etcd-<v>/bin);
#   - the sandbox ("pause") program, a static C binary, cached there too;
#   - helm ($HELM_VERSION), from its Go module, cached in
#     ~/.cache/vault-sync-stack/helm-<v>/.
#
# Idempotent: each piece is built only when missing. Prints the bin dir last.
set -euo pipefail

# shellcheck source=tests/cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ilog() { printf '[cluster/install] %s\n' "$*" >&2; }

# kube-apiserver, etcd, bao, the Pushgateway, Go, jq, openssl, curl.
"$REPO_ROOT/tests/stack/install.sh" >/dev/null

need_apt=()
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
[ -x /usr/sbin/runc ] || need_apt+=(runc)
[ -x /usr/lib/cni/host-local ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
if ((${#need_apt[@]})); then
  ilog "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's containerd package would start a system service where systemd
# runs; the cluster runs its own instance with its own root and socket.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi

# The wrapper module tests/stack/install.sh made for kube-apiserver; `go
# build -mod=mod` adds what the node components need on top.
WRAPPER="$CACHE_ROOT/build/kube-$KUBE_VERSION"
[ -f "$WRAPPER/go.mod" ] || die "no Go wrapper module in $WRAPPER (tests/stack/install.sh makes it)"
minor="${KUBE_VERSION#v1.}"
minor="${minor%%.*}"
for c in kube-scheduler kube-controller-manager kubelet; do
  [ -x "$BIN_DIR/$c" ] && continue
  ilog "building $c $KUBE_VERSION (first time only; minutes)"
  t0="$(now)"
  (
    cd "$WRAPPER"
    GOFLAGS=-mod=mod go build -o "$BIN_DIR/$c.tmp" -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor" \
      "k8s.io/kubernetes/cmd/$c"
  )
  mv "$BIN_DIR/$c.tmp" "$BIN_DIR/$c"
  ilog "built $c in $(elapsed "$t0")s"
done

# Helm, for the chart's tests. `go install pkg@version` builds it from the
# module proxy in a module of its own (helm's go.mod), with the version it
# prints set as its release does.
if [ ! -x "$HELM" ]; then
  ilog "building helm $HELM_VERSION (first time only; minutes)"
  t0="$(now)"
  mkdir -p "$(dirname "$HELM")"
  gobin="$(mktemp -d)"
  GOBIN="$gobin" GOFLAGS= go install -ldflags "-s -w \
    -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$HELM"
  rmdir "$gobin"
  ilog "built helm in $(elapsed "$t0")s"
fi

# The sandbox container's only process: waits for a signal, reaps children.
if [ ! -x "$BIN_DIR/pause" ]; then
  ilog "building pause"
  gcc -static -O2 -s -o "$BIN_DIR/pause.tmp" "$CLUSTER_SRC_DIR/pause.c"
  mv "$BIN_DIR/pause.tmp" "$BIN_DIR/pause"
fi

echo "$BIN_DIR"
