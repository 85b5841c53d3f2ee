#!/usr/bin/env bash
# The release command: builds what a release ships, under
# target/release-artifacts/:
#
#   vault-sync-<version>-x86_64-unknown-linux-gnu.tar.gz
#       vault-sync-<version>-x86_64-unknown-linux-gnu/
#         vault-sync               release build (cargo build --release --locked),
#                                  dynamically linked against glibc
#         completions/             bash, zsh, fish, PowerShell, elvish
#         man/man1/*.1             one page per command (examples/manpages.rs)
#         LICENSE README.md CHANGELOG.md
#   vault-sync-<version>-image.oci.tar   only when an image archive was built
#                                        (see "OCI image" below)
#   vault-sync-<version>.tgz             the Helm chart, when helm is at hand
#                                        (see "Helm chart" below)
#   SHA256SUMS                           over all of the above
#
# The tarball is reproducible: entries sorted by name, owner and group 0
# (numeric), modes 0755/0644, every mtime SOURCE_DATE_EPOCH (default: the
# commit time of HEAD), gzip without a name or timestamp. The same tree and
# toolchain give the same bytes.
#
# Usage: tests/release.sh        (prints the artifacts, their sizes and the time)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
t_start="$(date +%s)"
say() { printf 'release: %s\n' "$*"; }

target=x86_64-unknown-linux-gnu
host="$(rustc -vV | sed -n 's/^host: //p')"
if [ "$host" != "$target" ]; then
  say "this builds $target binaries on a $target host; this host is $host" >&2
  exit 1
fi
version="$(sed -n '/^\[package\]/,/^\[/{s/^version = "\(.*\)"$/\1/p}' Cargo.toml)"
[ -n "$version" ] || { say "no [package] version in Cargo.toml" >&2; exit 1; }
name="vault-sync-$version-$target"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || true)"
  [ -n "$SOURCE_DATE_EPOCH" ] || { say "no git commit: set SOURCE_DATE_EPOCH" >&2; exit 1; }
fi
export SOURCE_DATE_EPOCH
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  say "warning: the work tree has uncommitted changes; this is not the commit's release" >&2
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/release-artifacts"
stage="$target_dir/release-stage"
rm -rf "$out" "$stage"
mkdir -p "$out" "$stage/$name/completions" "$stage/$name/man/man1"

say "cargo build --release --locked ($version, $target)"
cargo build --release --locked --bin vault-sync
bin="$target_dir/release/vault-sync"

say "man pages (examples/manpages.rs)"
cargo run --quiet --locked --example manpages -- "$stage/$name/man/man1" >/dev/null

# The shipped completions must be what this binary prints (the same check
# as tests/it/completions.rs, here against the release build).
while read -r shell file; do
  env -i "$bin" completions "$shell" >"$stage/$name/completions/$file"
  if ! cmp -s "$stage/$name/completions/$file" "completions/$file"; then
    say "completions/$file is stale: run completions/generate.sh" >&2
    exit 1
  fi
done <<'LIST'
bash vault-sync.bash
zsh _vault-sync
fish vault-sync.fish
powershell _vault-sync.ps1
elvish vault-sync.elv
LIST

install -m 0755 "$bin" "$stage/$name/vault-sync"
install -m 0644 LICENSE README.md CHANGELOG.md "$stage/$name/"
find "$stage/$name" -type d -exec chmod 0755 {} +
find "$stage/$name" -type f ! -name vault-sync -exec chmod 0644 {} +

tarball="$name.tar.gz"
tar --sort=name --format=gnu --numeric-owner --owner=0 --group=0 \
  --mtime="@$SOURCE_DATE_EPOCH" -C "$stage" -cf - "$name" | gzip -9 -n >"$out/$tarball"

# --- OCI image ----------------------------------------------------------------
# The image the cluster tests run (image/build.sh, run by tests/cluster/up.sh):
# if an OCI image archive exists at $VAULT_SYNC_IMAGE_ARCHIVE (default
# target/image/vault-sync.oci.tar), it is shipped as
# vault-sync-<version>-image.oci.tar, and the digest of its image manifest
# (index.json's first manifest) is recorded in IMAGE_DIGEST. Without one,
# the release is the tarball alone, and this says so.
image_archive="${VAULT_SYNC_IMAGE_ARCHIVE:-$target_dir/image/vault-sync.oci.tar}"
if [ -f "$image_archive" ]; then
  image="vault-sync-$version-image.oci.tar"
  cp "$image_archive" "$out/$image"
  digest="$(tar -xOf "$out/$image" index.json | jq -r '.manifests[0].digest')"
  case "$digest" in
    sha256:*) printf '%s  %s\n' "$digest" "$image" >"$out/IMAGE_DIGEST" ;;
    *) say "$image_archive: no manifest digest in index.json" >&2; exit 1 ;;
  esac
  say "image $image: $digest"
else
  say "no OCI image archive at $image_archive: release without an image"
fi

# --- Helm chart ----------------------------------------------------------------
# cronjob/chart packaged (`helm package`) as vault-sync-<version>.tgz, when a
# helm is at hand ($HELM, as tests/cluster/.env exports it, or on PATH);
# without one the chart still installs from a checkout.
helm_bin="${HELM:-$(command -v helm || true)}"
if [ -n "$helm_bin" ]; then
  "$helm_bin" package cronjob/chart --destination "$out" >/dev/null
  [ -s "$out/vault-sync-$version.tgz" ] || { say "helm package gave no vault-sync-$version.tgz (chart version differs?)" >&2; exit 1; }
  say "chart vault-sync-$version.tgz"
else
  say "no helm (\$HELM or on PATH): release without the packaged chart"
fi

(cd "$out" && shopt -s nullglob && sha256sum -- *.tar.gz *.oci.tar *.tgz >SHA256SUMS)

# What the binary needs of glibc: the newest GLIBC_ symbol version it links.
glibc="$(objdump -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1 || true)"
rm -rf "$stage"

say "artifacts in ${out#"$root"/}/ (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH):"
(cd "$out" && for f in *; do printf '  %-52s %10s bytes\n' "$f" "$(stat -c %s "$f")"; done)
say "binary needs ${glibc:-an unknown glibc} or newer (built with $(ldd --version | head -1))"
say "done in $(($(date +%s) - t_start)) s"
