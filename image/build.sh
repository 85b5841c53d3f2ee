#!/usr/bin/env bash
# Builds the vault-sync container image without a container daemon, as an
# OCI archive (an OCI image layout in a tar):
#
#   image/build.sh [IMAGE_REF]      (default localhost/vault-sync:<version>)
#
# 1. `cargo build --release --locked` (skipped with VS_BINARY=/path/to/binary);
# 2. image/rootfs.sh stages the root filesystem, as the Containerfile does;
# 3. image/mkimage.py packs it with the Containerfile's final-stage settings
#    (USER, ENTRYPOINT, ENV, LABEL), build args VERSION (Cargo.toml),
#    REVISION (git HEAD) and SOURCE (VS_IMAGE_SOURCE, else the Containerfile's
#    default).
#
# Writes target/image/vault-sync.oci.tar and target/image/image.json (name,
# digest, sizes), and prints image.json. Deterministic: the same binary and
# settings give the same digest. Load it with
#   ctr -n k8s.io images import target/image/vault-sync.oci.tar
# or push it with `skopeo copy oci-archive:target/image/vault-sync.oci.tar docker://...`.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
[ -n "$version" ] || { echo "image/build.sh: no version in Cargo.toml" >&2; exit 1; }
ref="${1:-localhost/vault-sync:$version}"
arg_version="$(sed -n 's/^ARG VERSION=//p' Containerfile)"
if [ "$arg_version" != "$version" ]; then
  echo "image/build.sh: Containerfile has ARG VERSION=$arg_version but Cargo.toml says $version; update the Containerfile" >&2
  exit 1
fi
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

if [ -n "${VS_BINARY:-}" ]; then
  binary="$VS_BINARY"
else
  cargo build --release --locked --bin vault-sync >&2
  binary=target/release/vault-sync
fi

out=target/image
rm -rf "$out/rootfs"
mkdir -p "$out"
image/rootfs.sh "$out/rootfs" "$binary"
args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision")
[ -z "${VS_IMAGE_SOURCE:-}" ] || args+=(--build-arg "SOURCE=$VS_IMAGE_SOURCE")
python3 image/mkimage.py "$out/rootfs" "$out/vault-sync.oci.tar" --name "$ref" \
  --containerfile Containerfile "${args[@]}" >"$out/image.json.tmp"
mv "$out/image.json.tmp" "$out/image.json"
cat "$out/image.json"
