#!/usr/bin/env bash
# Generates prometheusrule.yaml (a PrometheusRule for the Prometheus
# Operator) from alerts.yaml (plain Prometheus rules), and the Helm chart's
# copy of alerts.yaml (cronjob/chart/files/alerts.yaml, which its optional
# PrometheusRule renders), so that they never drift apart. alerts.yaml is
# the source; edit it, then run this.
#
#   cronjob/monitoring/generate.sh            # rewrite prometheusrule.yaml
#   cronjob/monitoring/generate.sh --check    # fail if it is out of date (tests/run.sh)
#   cronjob/monitoring/generate.sh --schedule-seconds 600 --multiple 4 --out DIR
#       # write both files to DIR with VaultSyncNotSucceeding's threshold set
#       # to 4 × 600 s instead of 3 × 300 s
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

check=0
out=""
schedule=300
multiple=3
while (($#)); do
  case "$1" in
    --check) check=1 ;;
    --out) out="$2"; shift ;;
    --schedule-seconds) schedule="$2"; shift ;;
    --multiple) multiple="$2"; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "generate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$schedule$multiple" in
  *[!0-9]*) echo "generate.sh: --schedule-seconds and --multiple take whole numbers" >&2; exit 2 ;;
esac

source="$here/alerts.yaml"
threshold_count=$(grep -c '> 3 \* 300$' "$source" || true)
if [ "$threshold_count" != 2 ]; then
  echo "generate.sh: expected the threshold '> 3 * 300' twice in alerts.yaml, found $threshold_count" >&2
  exit 1
fi

# alerts.yaml with the threshold of this invocation.
rules() {
  sed "s/> 3 \* 300\$/> $multiple * $schedule/" "$source"
}

# The PrometheusRule: the same groups under `spec:`, comments kept out.
prometheus_rule() {
  cat <<'EOF'
# Generated from alerts.yaml by generate.sh: do not edit; edit alerts.yaml
# and run cronjob/monitoring/generate.sh.
#
# The vault-sync alerts for the Prometheus Operator. Label it so that your
# Prometheus' ruleSelector picks it up (often `release: <helm release>`).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: vault-sync
  namespace: vault-sync
  labels:
    app.kubernetes.io/name: vault-sync
    app.kubernetes.io/part-of: vault-sync
spec:
EOF
  rules | sed -n '/^groups:/,$p' | sed 's/^/  /'
}

chart_copy="$here/../chart/files/alerts.yaml"
if ((check)); then
  if ! diff -u "$here/prometheusrule.yaml" <(prometheus_rule); then
    echo "generate.sh: prometheusrule.yaml is out of date; run cronjob/monitoring/generate.sh" >&2
    exit 1
  fi
  if ! diff -u "$chart_copy" "$source"; then
    echo "generate.sh: cronjob/chart/files/alerts.yaml is out of date; run cronjob/monitoring/generate.sh" >&2
    exit 1
  fi
  exit 0
fi
if [ -n "$out" ]; then
  mkdir -p "$out"
  rules >"$out/alerts.yaml"
  prometheus_rule >"$out/prometheusrule.yaml"
  echo "wrote $out/alerts.yaml and $out/prometheusrule.yaml (threshold $multiple × ${schedule}s)"
else
  prometheus_rule >"$here/prometheusrule.yaml"
  mkdir -p "$(dirname "$chart_copy")"
  cp "$source" "$chart_copy"
fi
