#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run): installs and starts the
# real local stack (kube-apiserver + etcd, OpenBao, Pushgateway), checks and
# unit-tests the alert rules with promtool, then runs rustfmt, clippy and the
# whole test suite against the stack; then starts the single-node test
# cluster (tests/cluster/: a kubelet that runs Pods, in a network namespace
# of its own), imports the image built from the release binary, and runs the
# CronJob tests (cargo test --test cluster) inside that namespace. Stops the
# cluster and the stack on exit, success or failure.
#
# A stack or cluster that was already running before this script started (a
# developer's tests/stack/up.sh or tests/cluster/up.sh) is reused and left
# running; set VAULT_SYNC_KEEP_STACK=1 / VAULT_SYNC_KEEP_CLUSTER=1 to keep one
# this script started, too.
set -euo pipefail
cd "$(dirname "$0")/.."

T_START="$(date +%s)"
section() { printf '\n===== %s ===== (+%ss)\n' "$*" "$(($(date +%s) - T_START))"; }

section "rust tooling"
cargo --version
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version
cargo clippy --version

section "stack: install"
tests/stack/install.sh

# Was a stack already up (someone else's) before we start one?
preexisting=0
(
  # shellcheck source=tests/stack/lib.sh
  . tests/stack/lib.sh
  [ -f "$STACK_DIR/stack.env" ] || exit 1
  for name in "${STACK_PROCS[@]}"; do live_pid "$name" >/dev/null || exit 1; done
) && preexisting=1

# The same for the test cluster.
cluster_preexisting=0
(
  # shellcheck source=tests/cluster/lib.sh
  . tests/cluster/lib.sh
  [ -f "$CLUSTER_DIR/cluster.env" ] || exit 1
  for name in "${CLUSTER_PROCS[@]}"; do live_pid "$name" >/dev/null || exit 1; done
) && cluster_preexisting=1
cluster_started=0

stop_stack() {
  local rc=$?
  if [ "$cluster_started" = 1 ]; then
    if [ "$cluster_preexisting" = 1 ] || [ "${VAULT_SYNC_KEEP_CLUSTER:-0}" = 1 ]; then
      section "cluster: left running (stop it with tests/cluster/down.sh)"
    else
      section "cluster: down"
      tests/cluster/down.sh || rc=1
    fi
  fi
  if [ "$preexisting" = 1 ] || [ "${VAULT_SYNC_KEEP_STACK:-0}" = 1 ]; then
    section "stack: left running (stop it with tests/stack/down.sh)"
  else
    section "stack: down"
    tests/stack/down.sh || rc=1
  fi
  if [ "$rc" = 0 ]; then
    section "ALL PASSED"
  else
    section "FAILED (exit $rc)"
  fi
  exit "$rc"
}
trap stop_stack EXIT

section "stack: up"
tests/stack/up.sh

# Tests read tests/stack/.env themselves too; exporting it makes the stack's
# variables visible to every cargo step.
# shellcheck source=/dev/null
. tests/stack/.env

section "alert rules: promtool check rules, promtool test rules"
promtool --version | head -1
# The PrometheusRule must be what generate.sh makes of alerts.yaml.
cronjob/monitoring/generate.sh --check
promtool check rules cronjob/monitoring/alerts.yaml
# The PrometheusRule's spec is a rules file too: check it as one.
rule_spec="$(mktemp --suffix=.yaml)"
sed -n '/^spec:/,$p' cronjob/monitoring/prometheusrule.yaml | sed '1d; s/^  //' >"$rule_spec"
promtool check rules "$rule_spec"
rm -f "$rule_spec"
for t in cronjob/monitoring/*test*.yaml; do
  promtool test rules "$t"
done

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The cluster tests are `test = false` (they run only inside the cluster's
# network namespace), which --all-targets leaves out: lint them by name.
cargo clippy --locked --test cluster -- -D warnings

section "cargo test"
cargo test --locked

section "fuzz: property tests of the annotation parser and path normaliser (bounded)"
# Every cargo test run already tries 2,000 inputs per property; this adds a
# longer run, bounded in cases and in time.
PROPTEST_CASES=50000 timeout 600 cargo test --locked --lib core::fuzz

section "cluster: install (containerd, runc, kubelet, kube-controller-manager, kube-scheduler)"
tests/cluster/install.sh >/dev/null

section "cluster: up (builds the image from the release binary)"
# The cluster has servers of its own: drop the host stack's variables so
# that nothing (the bao CLI prefers BAO_ADDR, say) reaches for the stack.
for v in $(sed -n 's/^export \([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' tests/stack/.env); do
  unset "$v"
done
cluster_started=1
tests/cluster/up.sh
# shellcheck source=/dev/null
. tests/cluster/.env

section "cluster tests: the CronJob in a Pod (inside network namespace $VS_NETNS)"
# Built outside the namespace (no network is needed, but keep cargo's own
# work out of it), run inside it: the cluster listens only there.
cargo test --locked --test cluster --no-run
nsenter --net="/run/netns/$VS_NETNS" cargo test --locked --offline --test cluster -- --show-output

# ---------------------------------------------------------------------------
# Release (issue #21): the release command and what its tarball gives a user.
section "release: tests/release.sh, then the tarball unpacked and used"
tests/release-check.sh
