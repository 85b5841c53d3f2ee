#!/usr/bin/env bash
# Regenerates the shell completion scripts in this directory from the
# vault-sync binary (`vault-sync completions <shell>`). Run it after any
# change to the CLI's flags or subcommands; the `completions` test in
# tests/it fails while these files are stale.
#
#   completions/generate.sh                 # builds target/debug/vault-sync first
#   completions/generate.sh path/to/vault-sync
#   VAULT_SYNC_BIN=path/to/vault-sync completions/generate.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

bin="${1:-${VAULT_SYNC_BIN:-}}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet --bin vault-sync)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/vault-sync"
fi
[ -x "$bin" ] || { echo "generate.sh: $bin is not an executable" >&2; exit 1; }

# shell -> file, as the test in tests/it/completions.rs expects them.
while read -r shell file; do
  # A clean environment: the output must not depend on the caller's.
  env -i "$bin" completions "$shell" >"$here/$file.tmp"
  mv "$here/$file.tmp" "$here/$file"
  echo "completions/$file"
done <<'LIST'
bash vault-sync.bash
zsh _vault-sync
fish vault-sync.fish
powershell _vault-sync.ps1
elvish vault-sync.elv
LIST
