#!/usr/bin/env bash
# Stages the vault-sync image's root filesystem in DEST from a built binary:
#
#   image/rootfs.sh DEST BINARY
#
# Both image builds use it, so they describe the same image: image/build.sh
# (daemonless: packs DEST into an OCI archive with image/mkimage.py) and the
# Containerfile (COPY of DEST into `FROM scratch`).
#
# What vault-sync needs at run time, and nothing else:
#   /usr/local/bin/vault-sync           the binary
#   its shared libraries                as `ldd` lists them (glibc, libgcc_s),
#                                       copied from the build system, plus the
#                                       dynamic loader
#   /etc/ssl/certs/ca-certificates.crt  the CA bundle (a Vault with a public CA)
#   /etc/passwd, /etc/group             root and nonroot (65532), the user it
#                                       runs as
#   /tmp                                empty (a read-only root is fine: vault-sync
#                                       writes no files unless --metrics-file)
set -euo pipefail

DEST="${1:?usage: image/rootfs.sh DEST BINARY}"
BINARY="${2:?usage: image/rootfs.sh DEST BINARY}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

[ -x "$BINARY" ] || { echo "rootfs.sh: $BINARY is not an executable" >&2; exit 1; }
[ -r "$CA_BUNDLE" ] || { echo "rootfs.sh: no CA bundle at $CA_BUNDLE (apt-get install ca-certificates)" >&2; exit 1; }
if [ -e "$DEST" ] && [ -n "$(ls -A "$DEST")" ]; then
  echo "rootfs.sh: $DEST is not empty" >&2
  exit 1
fi

umask 022
mkdir -p "$DEST"/{usr/local/bin,etc/ssl/certs,tmp}
chmod 1777 "$DEST/tmp"
install -m 0755 "$BINARY" "$DEST/usr/local/bin/vault-sync"

# Every library the binary loads, at the path ldd resolves it to, as a
# regular file (symlinks resolved), and the loader named by PT_INTERP.
libs="$(ldd "$BINARY")" || { echo "rootfs.sh: ldd $BINARY failed (a static binary needs no libraries; remove this step)" >&2; exit 1; }
while read -r lib; do
  [ -n "$lib" ] || continue
  mkdir -p "$DEST$(dirname "$lib")"
  install -m 0644 "$(readlink -f "$lib")" "$DEST$lib"
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs" | sort -u)
chmod 0755 "$DEST"/lib*/ld-linux* "$DEST"/lib*/*/ld-linux* 2>/dev/null || true

install -m 0644 "$CA_BUNDLE" "$DEST/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$DEST/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$DEST/etc/group"
chmod 0644 "$DEST/etc/passwd" "$DEST/etc/group"
