#!/usr/bin/env bash
# Tests the release command as a user meets its result: runs
# tests/release.sh twice, then unpacks the tarball into an empty directory
# and uses it from there. Each check prints `ok` or `FAILED`; the last line
# is `release: N passed, N failed`, and the exit code is 1 if any failed.
#
#   1. the artifacts exist and SHA256SUMS verifies them;
#   2. a second run gives the same bytes (reproducible tarball);
#   3. every tarball entry is owned by 0/0 and dated SOURCE_DATE_EPOCH;
#   4. the unpacked `vault-sync --version` prints Cargo.toml's version;
#   5. the tarball holds the binary, completions, LICENSE, README and a man
#      page per command (each command of `vault-sync --help`);
#   6. `man -l` renders a page, and its NAME section names the command;
#   7. with a helm at hand, the packaged chart renders this release's image,
#      by tag and by the recorded digest.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
passed=0 failed=0
check() { # check NAME COMMAND...: runs COMMAND, records its outcome
  local what="$1" output; shift
  if output="$("$@" 2>&1)"; then
    passed=$((passed + 1)); printf 'release check: %-60s ok\n' "$what"
  else
    failed=$((failed + 1)); printf 'release check: %-60s FAILED\n%s\n' "$what" "$output"
  fi
}

# man-db renders pages (`man -l`); installed once if missing.
if ! command -v man >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null
fi

version="$(sed -n '/^\[package\]/,/^\[/{s/^version = "\(.*\)"$/\1/p}' Cargo.toml)"
name="vault-sync-$version-x86_64-unknown-linux-gnu"
out="${CARGO_TARGET_DIR:-$root/target}/release-artifacts"
epoch="$(git log -1 --format=%ct)"

tests/release.sh || { echo "release: 0 passed, 1 failed (tests/release.sh failed)"; exit 1; }
first="$(sha256sum "$out/$name.tar.gz" | cut -d' ' -f1)"

check "artifacts exist, SHA256SUMS verifies them" \
  bash -c "cd '$out' && test -s '$name.tar.gz' && grep -q ' $name.tar.gz\$' SHA256SUMS && sha256sum -c SHA256SUMS"

tests/release.sh >/dev/null 2>&1 || { echo "release: $passed passed, $((failed + 1)) failed (second tests/release.sh)"; exit 1; }
check "a second run gives the same tarball" \
  test "$(sha256sum "$out/$name.tar.gz" | cut -d' ' -f1)" = "$first"

listing="$(tar --numeric-owner --full-time -tvzf "$out/$name.tar.gz")"
owners_and_dates() {
  local date bad
  date="$(date -u -d "@$epoch" '+%Y-%m-%d %H:%M:%S')"
  bad="$(TZ=UTC tar --numeric-owner --full-time -tvzf "$out/$name.tar.gz" | awk -v d="$date" '$2 != "0/0" || ($4 " " $5) != d')"
  [ -z "$bad" ] || { echo "entries not 0/0 or not dated $date:"; echo "$bad"; return 1; }
}
check "entries owned by 0/0, dated the commit ($epoch)" owners_and_dates

unpack="$(mktemp -d)"
trap 'rm -rf "$unpack"' EXIT
tar -xzf "$out/$name.tar.gz" -C "$unpack"
dir="$unpack/$name"

check "unpacked vault-sync --version says $version" \
  bash -c "v=\"\$(env -i '$dir/vault-sync' --version)\" && echo \"\$v\" && case \"\$v\" in 'vault-sync $version '*) ;; *) exit 1 ;; esac"

contents() {
  local f cmd missing=0
  for f in vault-sync LICENSE README.md CHANGELOG.md completions/vault-sync.bash completions/_vault-sync \
    completions/vault-sync.fish completions/_vault-sync.ps1 completions/vault-sync.elv man/man1/vault-sync.1; do
    [ -s "$dir/$f" ] || { echo "missing: $f"; missing=1; }
  done
  [ -x "$dir/vault-sync" ] || { echo "vault-sync is not executable"; missing=1; }
  # Every command the binary lists has its page.
  for cmd in $(env -i "$dir/vault-sync" --help | sed -n '/^Commands:/,/^$/{s/^  \([a-z][a-z-]*\) .*/\1/p}'); do
    [ "$cmd" = help ] && continue
    [ -s "$dir/man/man1/vault-sync-$cmd.1" ] || { echo "no man page for $cmd"; missing=1; }
  done
  echo "$listing"
  return "$missing"
}
check "binary, completions, LICENSE, README, a man page per command" contents

man_name() { # man_name PAGE EXPECTED: the NAME section of PAGE starts with EXPECTED
  local text
  text="$(MANWIDTH=100 MAN_KEEP_FORMATTING=0 man -l "$dir/man/man1/$1" 2>&1 | col -b)"
  echo "$text" | head -12
  echo "$text" | sed -n '/^NAME$/,/^[A-Z]/p' | grep -Eq "^[[:space:]]*$2[[:space:]]+-[[:space:]]"
}
check "man -l vault-sync.1: NAME is vault-sync" man_name vault-sync.1 vault-sync
check "man -l vault-sync-plan.1: NAME is vault-sync-plan" man_name vault-sync-plan.1 vault-sync-plan

# The packaged chart installs this release's image: its default tag is the
# version, and the release's IMAGE_DIGEST pins it. Checked when a helm is at
# hand (tests/run.sh exports the one tests/cluster/install.sh builds).
chart_renders() {
  local helm_bin="${HELM:-$(command -v helm || true)}" chart="$out/vault-sync-$version.tgz" rendered
  [ -n "$helm_bin" ] || { echo "no helm"; return 1; }
  [ -s "$chart" ] || { echo "missing: ${chart##*/}"; return 1; }
  rendered="$("$helm_bin" template vault-sync "$chart" --set clusterName=ci,vault.address=https://vault:8200)" || return 1
  grep -F "image: \"ghcr.io/example/vault-sync:$version\"" <<<"$rendered" || { echo "no image tag $version"; return 1; }
  [ -s "$out/IMAGE_DIGEST" ] || return 0
  local digest
  digest="$(cut -d' ' -f1 "$out/IMAGE_DIGEST")"
  rendered="$("$helm_bin" template vault-sync "$chart" --set clusterName=ci,vault.address=https://vault:8200 \
    --set "image.digest=$digest")" || return 1
  grep -F "image: \"ghcr.io/example/vault-sync@$digest\"" <<<"$rendered"
}
if [ -n "${HELM:-}" ] || command -v helm >/dev/null; then
  check "the packaged chart installs this release's image (tag, digest)" chart_renders
fi

echo "release: $passed passed, $failed failed"
[ "$failed" = 0 ]
