#!/usr/bin/env bash
# Benchmark: vault-sync's scale and speed against the floor (issue "Benchmark:
# scale and speed against the floor"). See tests/bench/README.md.
#
# Starts (or reuses) the real local stack, builds the release binary and the
# `floor` example, seeds NAMESPACES x DEPLOYMENTS Deployments (each with
# SECRETS_PER_DEPLOYMENT Secrets of KEYS keys, auto-discovery via envFrom),
# and measures `vault-sync run` for: cold, no-op, drift, prune, a
# --concurrency sweep of cold, cold/no-op with --read-secrets list, cold/no-op
# with heavy Secret values, and a scaled cold/no-op. After each run the floor
# (examples/floor.rs) does the same Vault work on equivalent state.
#
# Writes target/bench/report.json and prints a Markdown table on stdout
# (progress goes to stderr).
#
# Parameters (environment, defaults in brackets):
#   NAMESPACES [20]  DEPLOYMENTS [50] per namespace  SECRETS_PER_DEPLOYMENT [2]
#   KEYS [5]  VALUE_BYTES [32]  SEED [42]  CLUSTER [bench]
#   CONCURRENCY [16]  REPEATS [3] (no-op, and cold/drift/prune resets)
#   SWEEP ["1 4 16 64"]  (empty: skip)  SWEEP_REPEATS [1]
#   SCALE_DEPLOYMENTS [10000] (0: skip)  SCALE_NAMESPACES [20]
#   SCALE_SEED_BUDGET [300] seconds: seeding stops after the namespace that
#     exceeds it, and the scaled run uses what was seeded
#   SCALE_ONLY [0]  1: only the scaled runs (no default scenario, sweep or
#     heavy runs; the default scenario's namespaces are the scaled ones')
#   SCALE_RUNS ["cold noop drift noop-list"]  which scale-* runs to make
#     (noop-list also needs READ_SECRETS_LIST=1; without cold, Vault must
#     already hold the synced paths: SCALE_REUSE=1 after a BENCH_KEEP=1 run)
#   BENCH_FLOOR [1]  0: skip the floor runs (ratio and floor_s null); only
#     when the time for them is not there, e.g. peak RSS at 100,000 paths
#   SCALE_REUSE [0]  1: keep the Kubernetes objects a previous scaled run
#     left (BENCH_KEEP=1) instead of emptying and re-seeding them; Vault is
#     still cleaned, so scale-cold starts empty. Seeding 100,000 paths takes
#     longer than the runs it feeds.
#   READ_SECRETS_LIST [1]  1: also measure cold, no-op and scaled no-op with
#     --read-secrets list (runs cold-list, noop-list, scale-noop-list)
#   HEAVY_VALUE_BYTES [8192] (0: skip)  value length of the heavy-values
#     runs (heavy-cold, heavy-noop): the default scenario re-seeded with it
#   BENCH_VAULT [stack]  stack: the stack's OpenBao, as configured by up.sh;
#     own: a dedicated OpenBao dev server (the stack's bao binary) started and
#     stopped by this script: no other users' requests, its own audit log.
#     Its listener sets max_request_json_strings = BENCH_JSON_STRINGS
#     [0 = OpenBao's default of 1000 strings per request body; -1 = no limit]
#   BENCH_KEEP [0]  1: leave the bench namespaces and Vault paths in place
#   BENCH_SKIP_BUILD [0]  1: use the binaries already in target/release
#   BENCH_BIN [target/release/vault-sync]  the vault-sync binary measured
#     (e.g. a copy of an earlier build, for before/after on the same data)
#   BENCH_OUT [target/bench]  where report.json, runs.jsonl and work/ go
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"

export NAMESPACES="${NAMESPACES:-20}"
export DEPLOYMENTS="${DEPLOYMENTS:-50}"
export SECRETS_PER_DEPLOYMENT="${SECRETS_PER_DEPLOYMENT:-2}"
export KEYS="${KEYS:-5}"
export VALUE_BYTES="${VALUE_BYTES:-32}"
export SEED="${SEED:-42}"
export CLUSTER="${CLUSTER:-bench}"
CONCURRENCY="${CONCURRENCY:-16}"
REPEATS="${REPEATS:-3}"
SWEEP="${SWEEP-1 4 16 64}"
SWEEP_REPEATS="${SWEEP_REPEATS:-1}"
SCALE_DEPLOYMENTS="${SCALE_DEPLOYMENTS:-10000}"
SCALE_NAMESPACES="${SCALE_NAMESPACES:-20}"
SCALE_SEED_BUDGET="${SCALE_SEED_BUDGET:-300}"
SCALE_ONLY="${SCALE_ONLY:-0}"
SCALE_REUSE="${SCALE_REUSE:-0}"
SCALE_RUNS="${SCALE_RUNS:-cold noop drift noop-list}"
BENCH_FLOOR="${BENCH_FLOOR:-1}"
READ_SECRETS_LIST="${READ_SECRETS_LIST:-1}"
HEAVY_VALUE_BYTES="${HEAVY_VALUE_BYTES:-8192}"
BENCH_KEEP="${BENCH_KEEP:-0}"
BENCH_VAULT="${BENCH_VAULT:-stack}"
BENCH_JSON_STRINGS="${BENCH_JSON_STRINGS:-0}"

OUT="${BENCH_OUT:-$ROOT/target/bench}"
WORK="$OUT/work"
RUNS="$OUT/runs.jsonl"
BIN="${BENCH_BIN:-$ROOT/target/release/vault-sync}"
FLOOR="$ROOT/target/release/examples/floor"
PY=(python3 "$ROOT/tests/bench/bench.py")
SYNC_NAME=vsbench-sync   # token display names: the audit log is filtered
FLOOR_NAME=vsbench-floor # by them ("token-<name>"), others' requests excluded

log() { printf '[bench %(%T)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
now() { echo "$EPOCHREALTIME"; }
to_floor() { sed "s#^clusters/$CLUSTER/#floor/#" "$1"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

[ -x /usr/bin/time ] || {
  log "installing GNU time (for peak RSS)"
  apt-get install -y time >/dev/null 2>&1 || die "/usr/bin/time missing and apt-get install time failed"
}
for t in jq python3 curl; do command -v "$t" >/dev/null || die "$t is required"; done

# --- stack and build ----------------------------------------------------------

log "starting or reusing the local stack"
tests/stack/up.sh >&2
# shellcheck source=/dev/null
. tests/stack/.env
export KUBECONFIG KUBE_API_URL KUBE_CA_FILE KUBE_ADMIN_TOKEN VAULT_ADDR VAULT_AUDIT_LOG
ROOT_TOKEN="$VAULT_TOKEN"
VAULT_NOTE="the stack's OpenBao ($VAULT_ADDR), default listener limits"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
OWN_PID=""
stop_own_vault() {
  if [ -n "$OWN_PID" ] && kill -0 "$OWN_PID" 2>/dev/null; then
    kill -TERM "$OWN_PID" 2>/dev/null || true
    wait "$OWN_PID" 2>/dev/null || true
  fi
}
trap stop_own_vault EXIT

case "$BENCH_VAULT" in
  stack) ;;
  own)
    OWN="$OUT/own-vault"
    rm -rf "$OWN"
    mkdir -p "$OWN"
    dev_port="$(free_port)"
    own_port="$(free_port)"
    cat >"$OWN/config.hcl" <<HCL
listener "tcp" {
  address                  = "127.0.0.1:$own_port"
  tls_disable              = true
  max_request_json_strings = $BENCH_JSON_STRINGS
}
audit "file" "to-file" {
  options {
    file_path = "$OWN/audit.log"
  }
}
HCL
    log "starting a dedicated OpenBao dev server on 127.0.0.1:$own_port (max_request_json_strings=$BENCH_JSON_STRINGS)"
    HOME="$OWN" setsid env -u VAULT_ADDR -u BAO_ADDR -u VAULT_TOKEN -u BAO_TOKEN "$BAO_BIN" server -dev \
      -dev-root-token-id=root -dev-listen-address="127.0.0.1:$dev_port" -config="$OWN/config.hcl" \
      >"$OWN/bao.log" 2>&1 </dev/null &
    OWN_PID=$!
    VAULT_ADDR="http://127.0.0.1:$own_port"
    VAULT_AUDIT_LOG="$OWN/audit.log"
    ROOT_TOKEN=root
    for _ in $(seq 100); do
      curl -sf --noproxy '*' "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -sf --noproxy '*' "$VAULT_ADDR/v1/sys/health" >/dev/null || die "own OpenBao did not start: $(tail -5 "$OWN/bao.log")"
    jq -n --rawfile p examples/vault-policy.hcl '{policy: $p}' |
      curl -sf --noproxy '*' -H "X-Vault-Token: $ROOT_TOKEN" -X PUT "$VAULT_ADDR/v1/sys/policies/acl/vault-sync" -d @- ||
      die "cannot load policy vault-sync into the own OpenBao"
    VAULT_NOTE="a dedicated OpenBao dev server ($BAO_BIN), listener max_request_json_strings=$BENCH_JSON_STRINGS"
    ;;
  *) die "BENCH_VAULT must be stack or own" ;;
esac
export VAULT_ADDR VAULT_AUDIT_LOG

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building release binary and floor example"
  cargo build --release --locked --bin vault-sync --example floor >&2
fi
if [ ! -x "$BIN" ] || [ ! -x "$FLOOR" ]; then die "missing $BIN or $FLOOR"; fi

mkdir -p "$OUT" "$WORK"
: >"$RUNS"

vault_token() { # display name -> a token with the tool's least-privilege policy
  curl -sS --noproxy '*' -H "X-Vault-Token: $ROOT_TOKEN" -X POST "$VAULT_ADDR/v1/auth/token/create" \
    -d "{\"policies\":[\"vault-sync\"],\"display_name\":\"$1\",\"ttl\":\"12h\"}" |
    jq -er .auth.client_token
}
SYNC_TOKEN="$(vault_token "$SYNC_NAME")" || die "cannot create the bench token (is policy vault-sync loaded?)"
FLOOR_TOKEN="$(vault_token "$FLOOR_NAME")" || die "cannot create the floor token"

# --- helpers -------------------------------------------------------------------

# Removes everything the bench wrote to Vault (root token; not measured).
vault_clean() {
  printf '%s\n' "clusters/$CLUSTER/" bench/ floor/ "vault-sync/index/$CLUSTER" >"$WORK/clean.txt"
  VAULT_TOKEN="$ROOT_TOKEN" "$FLOOR" clean --paths "$WORK/clean.txt" --concurrency 32 >"$WORK/clean.json" ||
    die "vault clean failed: $(cat "$WORK/clean.json")"
}

# vault-sync run with the bench's fixed flags (unmeasured resets).
sync_run() {
  env -u PUSHGATEWAY_URL -u VAULT_SYNC_CLUSTER_NAME -u RUST_LOG \
    VAULT_TOKEN="$SYNC_TOKEN" VAULT_SYNC_AUTH=token \
    "$BIN" run --cluster-name "$CLUSTER" -l bench=true --max-deletes 1000 -q -o json
}

# measure NAME PATHS FLOOR_MODE FLOOR_PATHS_FILE FLOOR_SUBSET_FILE CONC EXTRA_JSON [SYNC_ARGS]
#   Runs vault-sync once (measured), then the floor; appends one JSON line.
#   SYNC_ARGS: extra vault-sync arguments, split on spaces (may be empty).
#   The floor writes values of $VALUE_BYTES bytes (override it per call).
measure() {
  local name="$1" paths="$2" fmode="$3" fpaths="$4" fsubset="$5" conc="$6" extra="$7" sync_args="${8:-}"
  local off km0 km1 cpu0 cpu1 fcpu0 fcpu1 t0 t1 rc frc ft0 ft1 foff
  local sargs=()
  read -r -a sargs <<<"$sync_args"
  off="$(stat -c %s "$VAULT_AUDIT_LOG")"
  km0="$("${PY[@]}" kube-metrics)"
  cpu0="$("${PY[@]}" cpu)"
  t0="$(now)"
  set +e
  /usr/bin/time -f '%M %U %S' -o "$WORK/time.txt" \
    env -u PUSHGATEWAY_URL -u VAULT_SYNC_CLUSTER_NAME -u RUST_LOG \
    VAULT_TOKEN="$SYNC_TOKEN" VAULT_SYNC_AUTH=token \
    "$BIN" run --cluster-name "$CLUSTER" -l bench=true --max-deletes 1000 -q -o json \
    --concurrency "$conc" "${sargs[@]}" >"$WORK/$name.out.json" 2>"$WORK/$name.err"
  rc=$?
  set -e
  t1="$(now)"
  cpu1="$("${PY[@]}" cpu)"
  km1="$("${PY[@]}" kube-metrics)"
  local rss_kb tool_cpu
  read -r rss_kb tool_cpu < <(tail -n1 "$WORK/time.txt" | awk '{ printf "%d %.2f\n", $1, $2 + $3 }')
  local audit
  audit="$("${PY[@]}" audit --log "$VAULT_AUDIT_LOG" --offset "$off" --display-name "token-$SYNC_NAME")"
  if [ "$rc" != 0 ]; then
    log "vault-sync $name exited $rc: $(head -c 600 "$WORK/$name.err")"
    if grep -q "high complexity" "$WORK/$name.out.json" "$WORK/$name.err" 2>/dev/null; then
      log "OpenBao refused a request body as too complex (max_request_json_strings, see tests/bench/README.md)"
    fi
  fi

  # The floor, same concurrency, right after.
  local subset_args=()
  [ -n "$fsubset" ] && subset_args=(--subset "$fsubset")
  foff="$(stat -c %s "$VAULT_AUDIT_LOG")"
  fcpu0="$("${PY[@]}" cpu)"
  ft0="$(now)"
  set +e
  if [ "$BENCH_FLOOR" = 1 ]; then
    /usr/bin/time -f '%M %U %S' -o "$WORK/ftime.txt" env VAULT_TOKEN="$FLOOR_TOKEN" \
      "$FLOOR" "$fmode" --paths "$fpaths" "${subset_args[@]}" --concurrency "$conc" \
      --keys "$KEYS" --value-bytes "$VALUE_BYTES" >"$WORK/floor.json" 2>"$WORK/floor.err"
    frc=$?
  else
    echo '0 0 0' >"$WORK/ftime.txt"
    echo '{}' >"$WORK/floor.json"
    frc=0
  fi
  set -e
  ft1="$(now)"
  fcpu1="$("${PY[@]}" cpu)"
  local frss_kb floor_cpu
  read -r frss_kb floor_cpu < <(tail -n1 "$WORK/ftime.txt" | awk '{ printf "%d %.2f\n", $1, $2 + $3 }')
  [ "$frc" = 0 ] || log "floor $fmode exited $frc: $(head -c 600 "$WORK/floor.err")"
  local faudit
  faudit="$("${PY[@]}" audit --log "$VAULT_AUDIT_LOG" --offset "$foff" --display-name "token-$FLOOR_NAME")"

  jq -cn \
    --arg name "$name" --argjson paths "$paths" --argjson conc "$conc" --arg sargs "${sargs[*]}" \
    --argjson wall "$(secs "$t0" "$t1")" \
    --argjson floor "$([ "$BENCH_FLOOR" = 1 ] && secs "$ft0" "$ft1" || echo null)" \
    --argjson rss "$((rss_kb * 1024))" --argjson rc "$rc" \
    --argjson frss "$((frss_kb * 1024))" --argjson frc "$frc" \
    --argjson tcpu "$tool_cpu" --argjson fcpu "$floor_cpu" \
    --argjson cpu0 "$cpu0" --argjson cpu1 "$cpu1" --argjson fcpu0 "$fcpu0" --argjson fcpu1 "$fcpu1" \
    --argjson audit "$audit" --argjson faudit "$faudit" \
    --argjson km0 "$km0" --argjson km1 "$km1" \
    --argjson summary "$(jq -c '.summary // {}' "$WORK/$name.out.json" 2>/dev/null || echo '{}')" \
    --argjson errors "$(jq -c '[.errors[]?.message] + [.changes[]? | select(.result == "failed" or .action == "error") | .message] | unique | .[:3]' "$WORK/$name.out.json" 2>/dev/null || echo '[]')" \
    --argjson fself "$(cat "$WORK/floor.json" 2>/dev/null || echo '{}')" \
    --argjson extra "$extra" '
    # API server request deltas (all users; vault-sync uses only these four)
    ($km1 | to_entries | map({key, value: (.value - ($km0[.key] // 0))}) | map(select(.value > 0))
      | from_entries) as $kd
    | ([$kd | to_entries[] | select(.key | test("^(LIST|GET) (deployments|statefulsets|daemonsets|jobs|cronjobs|secrets)$")) | .value]
       | add // 0) as $kube
    | {
        name: $name, paths: $paths, concurrency: $conc,
        sync_args: ($sargs | split(" ") | map(select(. != ""))),
        wall_s: $wall, floor_s: $floor,
        vault_requests: ($audit | {read, write, delete, list, total, other}),
        vault_requests_by_operation: $audit.by_operation,
        data_writes: ([$audit.by_operation | to_entries[]
                       | select(.key == "update data" or .key == "create data") | .value] | add // 0),
        floor_requests: ($faudit | {read, write, delete, list, total}),
        floor_internal_s: $fself.wall_s,
        kube_requests: ($kube | floor),
        kube_requests_source: "kube-apiserver apiserver_request_total delta (LIST and GET of the five workload kinds and of secrets; all clients)",
        kube_requests_other: ($kd | with_entries(select(.key | test("^(LIST|GET) (deployments|statefulsets|daemonsets|jobs|cronjobs|secrets)$") | not))
                              | map_values(floor)),
        cpu_s: ({tool: $tcpu} + ($cpu1 | with_entries(.value = ((.value - $cpu0[.key]) * 100 | round / 100)))),
        floor_cpu_s: ({tool: $fcpu} + ($fcpu1 | with_entries(.value = ((.value - $fcpu0[.key]) * 100 | round / 100)))),
        cpu_source: "tool: user+sys of the process (/usr/bin/time); servers: utime+stime deltas from /proc (all their work in the window)",
        peak_rss_bytes: $rss, exit_code: $rc,
        floor_peak_rss_bytes: $frss, floor_exit_code: $frc,
        plan_summary: $summary, errors: $errors
      } + $extra' >>"$RUNS"
  log "$name${sync_args:+ ($sync_args)}: vault-sync $(secs "$t0" "$t1")s (exit $rc, $((rss_kb / 1024)) MiB, $(jq -r .total <<<"$audit") Vault req); floor $(secs "$ft0" "$ft1")s ($(jq -r .total <<<"$faudit") req)"
}

# kube_estimate DEPLOYMENTS SECRETS OWNER_GETS -> JSON fragment
kube_estimate() {
  jq -cn --argjson d "$1" --argjson s "$2" --argjson o "$3" \
    '{kube_requests_estimated: ((if $d == 0 then 1 else (($d + 99) / 100 | floor) end) + 4 + $s + $o),
      kube_requests_estimate: "pages of 100 + one LIST per other workload kind (4) + distinct Secret GETs + orphan-owner Deployment GETs"}'
}

# kube_estimate_list DEPLOYMENTS NAMESPACES SECRETS_PER_NAMESPACE -> JSON fragment
#   --read-secrets list: Secret LIST pages of 100 per namespace per batch. A
#   lower bound: a namespace that spans two batches is listed twice.
kube_estimate_list() {
  jq -cn --argjson d "$1" --argjson n "$2" --argjson s "$3" \
    '{kube_requests_estimated: ((if $d == 0 then 1 else (($d + 99) / 100 | floor) end) + 4
        + $n * (if $s == 0 then 1 else (($s + 99) / 100 | floor) end)),
      kube_requests_estimate: "pages of 100 + one LIST per other workload kind (4) + Secret LIST pages per namespace per batch (lower bound: a namespace spanning two batches is listed twice)"}'
}

# --- default scenario ------------------------------------------------------------

T_START="$(now)"
if [ "$SCALE_ONLY" = 1 ]; then
  log "SCALE_ONLY=1: skipping the default scenario"
  jq -n --arg version "$("$BIN" --version)" --arg cores "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg bao "$(curl -s --noproxy '*' "$VAULT_ADDR/v1/sys/health" | jq -r .version)" \
    --argjson keys "$KEYS" --argjson vb "$VALUE_BYTES" --arg cluster "$CLUSTER" --argjson conc "$CONCURRENCY" \
    --argjson reps "$REPEATS" --arg vault_note "$VAULT_NOTE" '{
      description: "scaled runs only (SCALE_ONLY=1)", keys_per_secret: $keys, value_bytes: $vb,
      cluster_name: $cluster, concurrency: $conc, repeats: $reps, vault: $vault_note,
      vault_sync_version: $version, openbao_version: $bao, host_cores: $cores,
      load_average_at_start: $load, date: (now | todate)}' >"$WORK/scenario.json"
else
log "cleaning: bench namespaces and Vault paths (clusters/$CLUSTER/, bench/, floor/, index)"
"${PY[@]}" clean
vault_clean

log "seeding $NAMESPACES x $DEPLOYMENTS Deployments, $SECRETS_PER_DEPLOYMENT Secrets each"
SEEDED="$("${PY[@]}" seed)"
log "seeded: $SEEDED"
"${PY[@]}" paths >"$WORK/paths.txt"
"${PY[@]}" paths --prefix floor/ >"$WORK/floor-paths.txt"
N_PATHS="$(wc -l <"$WORK/paths.txt")"
N_DEPLOY=$((NAMESPACES * DEPLOYMENTS))
N_SECRETS=$((N_DEPLOY * SECRETS_PER_DEPLOYMENT))


jq -n --argjson seeded "$SEEDED" \
  --arg version "$("$BIN" --version)" --arg cores "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg bao "$(curl -s --noproxy '*' "$VAULT_ADDR/v1/sys/health" | jq -r .version)" \
  --argjson ns "$NAMESPACES" --argjson dep "$DEPLOYMENTS" --argjson spd "$SECRETS_PER_DEPLOYMENT" \
  --argjson keys "$KEYS" --argjson vb "$VALUE_BYTES" --arg seed "$SEED" --arg cluster "$CLUSTER" \
  --argjson conc "$CONCURRENCY" --argjson reps "$REPEATS" --argjson paths "$N_PATHS" \
  --arg vault_note "$VAULT_NOTE" '{
    description: "\($ns) namespaces x \($dep) Deployments, \($spd) Secrets x \($keys) keys (\($vb) B values) each, auto-discovery via envFrom -> \($paths) Vault paths",
    namespaces: $ns, deployments_per_namespace: $dep, secrets_per_deployment: $spd,
    keys_per_secret: $keys, value_bytes: $vb, seed: $seed, cluster_name: $cluster,
    annotation: "vault-sync.io/path: secret/bench/<ns>/<deploy>",
    vault_paths: "secret/clusters/\($cluster)/bench/<ns>/<deploy>/<secret>", paths: $paths,
    selector: "-l bench=true (all namespaces)", concurrency: $conc, repeats: $reps,
    vault_auth: "token with policy vault-sync (examples/vault-policy.hcl)",
    vault: $vault_note,
    pushgateway: "not used (PUSHGATEWAY_URL unset for the measured runs)",
    seeding: $seeded, vault_sync_version: $version, openbao_version: $bao,
    host_cores: $cores, load_average_at_start: $load,
    date: (now | todate)
  }' >"$WORK/scenario.json"

EST_SYNC="$(kube_estimate "$N_DEPLOY" "$N_SECRETS" 0)"
EST_LIST="$(kube_estimate_list "$N_DEPLOY" "$NAMESPACES" $((DEPLOYMENTS * SECRETS_PER_DEPLOYMENT)))"
LIST_ARGS="--read-secrets list"

# cold: all creates; Vault reset before each repeat.
for r in $(seq 1 "$REPEATS"); do
  vault_clean
  measure cold "$N_PATHS" create "$WORK/floor-paths.txt" "" "$CONCURRENCY" \
    "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$EST_SYNC")"
done

# cold-list: the same with --read-secrets list.
if [ "$READ_SECRETS_LIST" = 1 ]; then
  for r in $(seq 1 "$REPEATS"); do
    vault_clean
    measure cold-list "$N_PATHS" create "$WORK/floor-paths.txt" "" "$CONCURRENCY" \
      "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$EST_LIST")" "$LIST_ARGS"
  done
fi

# --concurrency sweep of cold.
for c in $SWEEP; do
  for r in $(seq 1 "$SWEEP_REPEATS"); do
    vault_clean
    measure "cold-c$c" "$N_PATHS" create "$WORK/floor-paths.txt" "" "$c" \
      "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$EST_SYNC")"
  done
done

# no-op: nothing changed; the floor reads the paths vault-sync wrote.
for r in $(seq 1 "$REPEATS"); do
  measure noop "$N_PATHS" read "$WORK/paths.txt" "" "$CONCURRENCY" \
    "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$EST_SYNC")"
done
if [ "$READ_SECRETS_LIST" = 1 ]; then
  for r in $(seq 1 "$REPEATS"); do
    measure noop-list "$N_PATHS" read "$WORK/paths.txt" "" "$CONCURRENCY" \
      "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$EST_LIST")" "$LIST_ARGS"
  done
fi

# drift: one key of every 10th Secret changes (a new value each repeat, so
# each repeat starts from a synced state without a reset).
for r in $(seq 1 "$REPEATS"); do
  "${PY[@]}" drift --round "$r" >"$WORK/changed.txt"
  to_floor "$WORK/changed.txt" >"$WORK/floor-changed.txt"
  measure drift "$N_PATHS" update "$WORK/floor-paths.txt" "$WORK/floor-changed.txt" "$CONCURRENCY" \
    "$(jq -c --argjson r "$r" --argjson n "$(wc -l <"$WORK/changed.txt")" \
      '. + {repeat: $r, changed: $n}' <<<"$EST_SYNC")"
done

# prune: every 10th Deployment deleted; reset (Deployments re-created, paths
# re-written) before the next repeat.
for r in $(seq 1 "$REPEATS"); do
  "${PY[@]}" delete >"$WORK/orphaned.txt"
  to_floor "$WORK/orphaned.txt" >"$WORK/floor-orphaned.txt"
  n_orph="$(wc -l <"$WORK/orphaned.txt")"
  n_gone=$((n_orph / SECRETS_PER_DEPLOYMENT))
  measure prune "$N_PATHS" prune "$WORK/floor-paths.txt" "$WORK/floor-orphaned.txt" "$CONCURRENCY" \
    "$(jq -c --argjson r "$r" --argjson n "$n_orph" '. + {repeat: $r, orphaned: $n}' \
      <<<"$(kube_estimate $((N_DEPLOY - n_gone)) $((N_SECRETS - n_orph)) "$n_gone")")"
  if [ "$r" -lt "$REPEATS" ]; then
    "${PY[@]}" restore
    sync_run >"$WORK/restore.json" 2>&1 || die "restore run failed: $(head -c 600 "$WORK/restore.json")"
    VAULT_TOKEN="$FLOOR_TOKEN" "$FLOOR" put --paths "$WORK/floor-orphaned.txt" >/dev/null
  fi
done

# --- heavy values ----------------------------------------------------------------

# The default scenario re-seeded with HEAVY_VALUE_BYTES-byte values: peak RSS
# should not grow with the Secret bytes (batches bound what is held at once).
if [ "$HEAVY_VALUE_BYTES" -gt 0 ]; then
  log "heavy values: cleaning, then seeding the default scenario with $HEAVY_VALUE_BYTES-byte values"
  "${PY[@]}" clean
  vault_clean
  H_SEEDED="$(VALUE_BYTES="$HEAVY_VALUE_BYTES" "${PY[@]}" seed)"
  log "seeded: $H_SEEDED"
  h_total=$((N_PATHS * KEYS * HEAVY_VALUE_BYTES))
  jq --argjson s "$H_SEEDED" --argjson vb "$HEAVY_VALUE_BYTES" --argjson p "$N_PATHS" --argjson t "$h_total" \
    '. + {heavy: {value_bytes: $vb, paths: $p, total_value_bytes: $t, seeding: $s}}' \
    "$WORK/scenario.json" >"$WORK/scenario.tmp" && mv "$WORK/scenario.tmp" "$WORK/scenario.json"
  H_EST="$(jq -c --argjson vb "$HEAVY_VALUE_BYTES" --argjson t "$h_total" \
    '. + {value_bytes: $vb, total_value_bytes: $t}' <<<"$EST_SYNC")"
  # The floor's creates get the same value length (measure passes $VALUE_BYTES).
  VALUE_BYTES="$HEAVY_VALUE_BYTES" measure heavy-cold "$N_PATHS" create "$WORK/floor-paths.txt" "" "$CONCURRENCY" "$H_EST"
  for r in $(seq 1 "$REPEATS"); do
    VALUE_BYTES="$HEAVY_VALUE_BYTES" measure heavy-noop "$N_PATHS" read "$WORK/paths.txt" "" "$CONCURRENCY" \
      "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$H_EST")"
  done
fi

fi # SCALE_ONLY

# --- scaled run ------------------------------------------------------------------

if [ "$SCALE_DEPLOYMENTS" -gt 0 ]; then
  s_ns="$SCALE_NAMESPACES"
  s_dep=$(((SCALE_DEPLOYMENTS + s_ns - 1) / s_ns))
  scale_has() { [[ " $SCALE_RUNS " == *" $1 "* ]]; }
  # Without cold, the runs start from what a kept run synced.
  if scale_has cold || [ "$SCALE_REUSE" != 1 ]; then vault_clean; fi
  if [ "$SCALE_REUSE" = 1 ] && [ -s "$ROOT/target/bench-scale-seeded.json" ]; then
    S_SEEDED="$(jq -c '. + {reused: true}' "$ROOT/target/bench-scale-seeded.json")"
    log "scaled run: reusing the objects seeded before: $S_SEEDED"
  else
    log "scaled run: cleaning, then seeding $s_ns x $s_dep Deployments (budget ${SCALE_SEED_BUDGET}s)"
    "${PY[@]}" clean
    S_SEEDED="$(NAMESPACES="$s_ns" DEPLOYMENTS="$s_dep" "${PY[@]}" seed --budget "$SCALE_SEED_BUDGET")"
    printf '%s\n' "$S_SEEDED" >"$ROOT/target/bench-scale-seeded.json"
    log "seeded: $S_SEEDED"
  fi
  s_ns="$(jq -r .namespaces <<<"$S_SEEDED")"
  NAMESPACES="$s_ns" DEPLOYMENTS="$s_dep" "${PY[@]}" paths >"$WORK/s-paths.txt"
  NAMESPACES="$s_ns" DEPLOYMENTS="$s_dep" "${PY[@]}" paths --prefix floor/ >"$WORK/s-floor-paths.txt"
  s_paths="$(wc -l <"$WORK/s-paths.txt")"
  s_d=$((s_ns * s_dep))
  S_EST="$(kube_estimate "$s_d" $((s_d * SECRETS_PER_DEPLOYMENT)) 0)"
  S_EST_LIST="$(kube_estimate_list "$s_d" "$s_ns" $((s_dep * SECRETS_PER_DEPLOYMENT)))"
  jq --argjson s "$S_SEEDED" --argjson p "$s_paths" \
    '. + {scaled: ($s + {paths: $p, requested_deployments: '"$SCALE_DEPLOYMENTS"'})}' \
    "$WORK/scenario.json" >"$WORK/scenario.tmp" && mv "$WORK/scenario.tmp" "$WORK/scenario.json"
  if scale_has cold; then
    measure scale-cold "$s_paths" create "$WORK/s-floor-paths.txt" "" "$CONCURRENCY" "$S_EST"
  fi
  scale_has noop && for r in $(seq 1 "$REPEATS"); do
    measure scale-noop "$s_paths" read "$WORK/s-paths.txt" "" "$CONCURRENCY" \
      "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$S_EST")"
  done
  # scale-drift: every 10th Secret changes. The round is new for every
  # bench run (seconds since the epoch), not only apart from the default
  # drift's: with SCALE_REUSE a fixed round patched the Secrets to the
  # values an earlier bench had already synced, and "drift" wrote nothing.
  drift_base=$(( $(date +%s) * 10 ))
  scale_has drift && for r in $(seq 1 "$REPEATS"); do
    NAMESPACES="$s_ns" DEPLOYMENTS="$s_dep" "${PY[@]}" drift --round $((drift_base + r)) >"$WORK/s-changed.txt"
    to_floor "$WORK/s-changed.txt" >"$WORK/s-floor-changed.txt"
    measure scale-drift "$s_paths" update "$WORK/s-floor-paths.txt" "$WORK/s-floor-changed.txt" "$CONCURRENCY" \
      "$(jq -c --argjson r "$r" --argjson n "$(wc -l <"$WORK/s-changed.txt")" \
        '. + {repeat: $r, changed: $n}' <<<"$S_EST")"
  done
  if [ "$READ_SECRETS_LIST" = 1 ] && scale_has noop-list; then
    for r in $(seq 1 "$REPEATS"); do
      measure scale-noop-list "$s_paths" read "$WORK/s-paths.txt" "" "$CONCURRENCY" \
        "$(jq -c --argjson r "$r" '. + {repeat: $r}' <<<"$S_EST_LIST")" "$LIST_ARGS"
    done
  fi
fi

jq --argjson t "$(secs "$T_START" "$(now)")" '. + {bench_total_s: $t}' "$WORK/scenario.json" \
  >"$WORK/scenario.tmp" && mv "$WORK/scenario.tmp" "$WORK/scenario.json"

if [ "$BENCH_KEEP" != 1 ]; then
  log "cleaning up (BENCH_KEEP=1 keeps the data)"
  "${PY[@]}" clean
  vault_clean
fi

"${PY[@]}" report --runs "$RUNS" --scenario "$WORK/scenario.json" --out "$OUT/report.json"
log "report: $OUT/report.json"
