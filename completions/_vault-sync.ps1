
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'vault-sync' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'vault-sync'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'vault-sync' {
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use')
            [CompletionResult]::new('--kube-timeout', '--kube-timeout', [CompletionResultType]::ParameterName, 'Bound on each Kubernetes API request (e.g. 30s, 2m)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--allow-path', '--allow-path', [CompletionResultType]::ParameterName, 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)')
            [CompletionResult]::new('--allow-paths-file', '--allow-paths-file', [CompletionResultType]::ParameterName, 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`')
            [CompletionResult]::new('--kinds', '--kinds', [CompletionResultType]::ParameterName, 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans')
            [CompletionResult]::new('--cluster-name', '--cluster-name', [CompletionResultType]::ParameterName, 'Cluster name: recorded as the owner''s cluster, and paths are written under `<mount>/clusters/<name>/`')
            [CompletionResult]::new('--index-mount', '--index-mount', [CompletionResultType]::ParameterName, 'KV v2 mount holding vault-sync''s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)')
            [CompletionResult]::new('--vault-addr', '--vault-addr', [CompletionResultType]::ParameterName, 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]')
            [CompletionResult]::new('--vault-auth', '--vault-auth', [CompletionResultType]::ParameterName, 'Auth method (default: kubernetes inside a pod, token elsewhere)')
            [CompletionResult]::new('--vault-role', '--vault-role', [CompletionResultType]::ParameterName, 'Role for the kubernetes or jwt auth method')
            [CompletionResult]::new('--vault-auth-path', '--vault-auth-path', [CompletionResultType]::ParameterName, 'Mount path of the auth method (default: the method''s name)')
            [CompletionResult]::new('--vault-jwt-file', '--vault-jwt-file', [CompletionResultType]::ParameterName, 'JWT for kubernetes/jwt auth (default: the pod''s service-account token)')
            [CompletionResult]::new('--vault-namespace', '--vault-namespace', [CompletionResultType]::ParameterName, 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)')
            [CompletionResult]::new('--vault-timeout', '--vault-timeout', [CompletionResultType]::ParameterName, 'Bound on each Vault operation, retries included (e.g. 30s, 2m)')
            [CompletionResult]::new('--pushgateway-url', '--pushgateway-url', [CompletionResultType]::ParameterName, 'Push metrics to this Prometheus Pushgateway at the end of the run')
            [CompletionResult]::new('--push-label', '--push-label', [CompletionResultType]::ParameterName, 'Extra grouping label for the push, `name=value` (repeatable)')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also write the metrics, in Prometheus text format, to this file (for node_exporter''s textfile collector)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Parallel Kubernetes and Vault requests')
            [CompletionResult]::new('--read-secrets', '--read-secrets', [CompletionResultType]::ParameterName, 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces'' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr (json: one object per line, for log pipelines)')
            [CompletionResult]::new('--require-push', '--require-push', [CompletionResultType]::ParameterName, 'A failed push fails the run (default: a warning)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Show what `run` would change (key names only, never values)')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Apply the plan: write what differs and delete orphans (paths vault-sync wrote that nothing wants any more; see --no-prune)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove Vault paths vault-sync wrote that nothing wants any more')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check Vault and Kubernetes connectivity, auth and permissions')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vault-sync;plan' {
            [CompletionResult]::new('--max-deletes', '--max-deletes', [CompletionResultType]::ParameterName, 'Refuse every deletion of a run that would delete more than this many paths (a guard against a mass deletion caused by a mistake)')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Also save the plan to FILE, for `run --plan FILE`: JSON with key names and what each change is pinned to (Secret resourceVersions, Vault versions and ownership), never a value or a digest of one')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use')
            [CompletionResult]::new('--kube-timeout', '--kube-timeout', [CompletionResultType]::ParameterName, 'Bound on each Kubernetes API request (e.g. 30s, 2m)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--allow-path', '--allow-path', [CompletionResultType]::ParameterName, 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)')
            [CompletionResult]::new('--allow-paths-file', '--allow-paths-file', [CompletionResultType]::ParameterName, 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`')
            [CompletionResult]::new('--kinds', '--kinds', [CompletionResultType]::ParameterName, 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans')
            [CompletionResult]::new('--cluster-name', '--cluster-name', [CompletionResultType]::ParameterName, 'Cluster name: recorded as the owner''s cluster, and paths are written under `<mount>/clusters/<name>/`')
            [CompletionResult]::new('--index-mount', '--index-mount', [CompletionResultType]::ParameterName, 'KV v2 mount holding vault-sync''s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)')
            [CompletionResult]::new('--vault-addr', '--vault-addr', [CompletionResultType]::ParameterName, 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]')
            [CompletionResult]::new('--vault-auth', '--vault-auth', [CompletionResultType]::ParameterName, 'Auth method (default: kubernetes inside a pod, token elsewhere)')
            [CompletionResult]::new('--vault-role', '--vault-role', [CompletionResultType]::ParameterName, 'Role for the kubernetes or jwt auth method')
            [CompletionResult]::new('--vault-auth-path', '--vault-auth-path', [CompletionResultType]::ParameterName, 'Mount path of the auth method (default: the method''s name)')
            [CompletionResult]::new('--vault-jwt-file', '--vault-jwt-file', [CompletionResultType]::ParameterName, 'JWT for kubernetes/jwt auth (default: the pod''s service-account token)')
            [CompletionResult]::new('--vault-namespace', '--vault-namespace', [CompletionResultType]::ParameterName, 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)')
            [CompletionResult]::new('--vault-timeout', '--vault-timeout', [CompletionResultType]::ParameterName, 'Bound on each Vault operation, retries included (e.g. 30s, 2m)')
            [CompletionResult]::new('--pushgateway-url', '--pushgateway-url', [CompletionResultType]::ParameterName, 'Push metrics to this Prometheus Pushgateway at the end of the run')
            [CompletionResult]::new('--push-label', '--push-label', [CompletionResultType]::ParameterName, 'Extra grouping label for the push, `name=value` (repeatable)')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also write the metrics, in Prometheus text format, to this file (for node_exporter''s textfile collector)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Parallel Kubernetes and Vault requests')
            [CompletionResult]::new('--read-secrets', '--read-secrets', [CompletionResultType]::ParameterName, 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces'' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr (json: one object per line, for log pipelines)')
            [CompletionResult]::new('--adopt', '--adopt', [CompletionResultType]::ParameterName, 'Take over existing Vault paths that no tool marked as its own')
            [CompletionResult]::new('--push-metrics', '--push-metrics', [CompletionResultType]::ParameterName, 'Push metrics for `plan` too (by default only `run` pushes)')
            [CompletionResult]::new('--no-prune', '--no-prune', [CompletionResultType]::ParameterName, 'Do not look for orphans: write only, delete nothing')
            [CompletionResult]::new('--destroy', '--destroy', [CompletionResultType]::ParameterName, 'Delete orphans with all versions and metadata (default: soft delete of the current version, undoable with `vault kv undelete`)')
            [CompletionResult]::new('--require-push', '--require-push', [CompletionResultType]::ParameterName, 'A failed push fails the run (default: a warning)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vault-sync;run' {
            [CompletionResult]::new('--max-deletes', '--max-deletes', [CompletionResultType]::ParameterName, 'Refuse every deletion of a run that would delete more than this many paths (a guard against a mass deletion caused by a mistake)')
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Apply exactly the changes of a plan saved with `plan --out FILE` and nothing else. A change whose Secrets, Vault version or ownership moved since is `stale` and not applied. The file''s --adopt, --no-prune and --destroy apply; its cluster, Vault address and -n/-l must match this run''s')
            [CompletionResult]::new('--max-plan-age', '--max-plan-age', [CompletionResultType]::ParameterName, 'With --plan: refuse a plan older than this (e.g. 30m, 1h; 0 disables the check)')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use')
            [CompletionResult]::new('--kube-timeout', '--kube-timeout', [CompletionResultType]::ParameterName, 'Bound on each Kubernetes API request (e.g. 30s, 2m)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--allow-path', '--allow-path', [CompletionResultType]::ParameterName, 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)')
            [CompletionResult]::new('--allow-paths-file', '--allow-paths-file', [CompletionResultType]::ParameterName, 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`')
            [CompletionResult]::new('--kinds', '--kinds', [CompletionResultType]::ParameterName, 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans')
            [CompletionResult]::new('--cluster-name', '--cluster-name', [CompletionResultType]::ParameterName, 'Cluster name: recorded as the owner''s cluster, and paths are written under `<mount>/clusters/<name>/`')
            [CompletionResult]::new('--index-mount', '--index-mount', [CompletionResultType]::ParameterName, 'KV v2 mount holding vault-sync''s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)')
            [CompletionResult]::new('--vault-addr', '--vault-addr', [CompletionResultType]::ParameterName, 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]')
            [CompletionResult]::new('--vault-auth', '--vault-auth', [CompletionResultType]::ParameterName, 'Auth method (default: kubernetes inside a pod, token elsewhere)')
            [CompletionResult]::new('--vault-role', '--vault-role', [CompletionResultType]::ParameterName, 'Role for the kubernetes or jwt auth method')
            [CompletionResult]::new('--vault-auth-path', '--vault-auth-path', [CompletionResultType]::ParameterName, 'Mount path of the auth method (default: the method''s name)')
            [CompletionResult]::new('--vault-jwt-file', '--vault-jwt-file', [CompletionResultType]::ParameterName, 'JWT for kubernetes/jwt auth (default: the pod''s service-account token)')
            [CompletionResult]::new('--vault-namespace', '--vault-namespace', [CompletionResultType]::ParameterName, 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)')
            [CompletionResult]::new('--vault-timeout', '--vault-timeout', [CompletionResultType]::ParameterName, 'Bound on each Vault operation, retries included (e.g. 30s, 2m)')
            [CompletionResult]::new('--pushgateway-url', '--pushgateway-url', [CompletionResultType]::ParameterName, 'Push metrics to this Prometheus Pushgateway at the end of the run')
            [CompletionResult]::new('--push-label', '--push-label', [CompletionResultType]::ParameterName, 'Extra grouping label for the push, `name=value` (repeatable)')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also write the metrics, in Prometheus text format, to this file (for node_exporter''s textfile collector)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Parallel Kubernetes and Vault requests')
            [CompletionResult]::new('--read-secrets', '--read-secrets', [CompletionResultType]::ParameterName, 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces'' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr (json: one object per line, for log pipelines)')
            [CompletionResult]::new('--adopt', '--adopt', [CompletionResultType]::ParameterName, 'Take over existing Vault paths that no tool marked as its own')
            [CompletionResult]::new('--push-metrics', '--push-metrics', [CompletionResultType]::ParameterName, 'Push metrics for `plan` too (by default only `run` pushes)')
            [CompletionResult]::new('--no-prune', '--no-prune', [CompletionResultType]::ParameterName, 'Do not look for orphans: write only, delete nothing')
            [CompletionResult]::new('--destroy', '--destroy', [CompletionResultType]::ParameterName, 'Delete orphans with all versions and metadata (default: soft delete of the current version, undoable with `vault kv undelete`)')
            [CompletionResult]::new('--require-push', '--require-push', [CompletionResultType]::ParameterName, 'A failed push fails the run (default: a warning)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vault-sync;prune' {
            [CompletionResult]::new('--max-deletes', '--max-deletes', [CompletionResultType]::ParameterName, 'Refuse every deletion of a run that would delete more than this many paths (a guard against a mass deletion caused by a mistake)')
            [CompletionResult]::new('--scan', '--scan', [CompletionResultType]::ParameterName, 'Path prefix to scan with --rebuild-index, e.g. `secret/apps`')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use')
            [CompletionResult]::new('--kube-timeout', '--kube-timeout', [CompletionResultType]::ParameterName, 'Bound on each Kubernetes API request (e.g. 30s, 2m)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--allow-path', '--allow-path', [CompletionResultType]::ParameterName, 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)')
            [CompletionResult]::new('--allow-paths-file', '--allow-paths-file', [CompletionResultType]::ParameterName, 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`')
            [CompletionResult]::new('--kinds', '--kinds', [CompletionResultType]::ParameterName, 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans')
            [CompletionResult]::new('--cluster-name', '--cluster-name', [CompletionResultType]::ParameterName, 'Cluster name: recorded as the owner''s cluster, and paths are written under `<mount>/clusters/<name>/`')
            [CompletionResult]::new('--index-mount', '--index-mount', [CompletionResultType]::ParameterName, 'KV v2 mount holding vault-sync''s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)')
            [CompletionResult]::new('--vault-addr', '--vault-addr', [CompletionResultType]::ParameterName, 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]')
            [CompletionResult]::new('--vault-auth', '--vault-auth', [CompletionResultType]::ParameterName, 'Auth method (default: kubernetes inside a pod, token elsewhere)')
            [CompletionResult]::new('--vault-role', '--vault-role', [CompletionResultType]::ParameterName, 'Role for the kubernetes or jwt auth method')
            [CompletionResult]::new('--vault-auth-path', '--vault-auth-path', [CompletionResultType]::ParameterName, 'Mount path of the auth method (default: the method''s name)')
            [CompletionResult]::new('--vault-jwt-file', '--vault-jwt-file', [CompletionResultType]::ParameterName, 'JWT for kubernetes/jwt auth (default: the pod''s service-account token)')
            [CompletionResult]::new('--vault-namespace', '--vault-namespace', [CompletionResultType]::ParameterName, 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)')
            [CompletionResult]::new('--vault-timeout', '--vault-timeout', [CompletionResultType]::ParameterName, 'Bound on each Vault operation, retries included (e.g. 30s, 2m)')
            [CompletionResult]::new('--pushgateway-url', '--pushgateway-url', [CompletionResultType]::ParameterName, 'Push metrics to this Prometheus Pushgateway at the end of the run')
            [CompletionResult]::new('--push-label', '--push-label', [CompletionResultType]::ParameterName, 'Extra grouping label for the push, `name=value` (repeatable)')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also write the metrics, in Prometheus text format, to this file (for node_exporter''s textfile collector)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Parallel Kubernetes and Vault requests')
            [CompletionResult]::new('--read-secrets', '--read-secrets', [CompletionResultType]::ParameterName, 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces'' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr (json: one object per line, for log pipelines)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal)')
            [CompletionResult]::new('--destroy', '--destroy', [CompletionResultType]::ParameterName, 'Delete orphans with all versions and metadata (default: soft delete of the current version, undoable with `vault kv undelete`)')
            [CompletionResult]::new('--rebuild-index', '--rebuild-index', [CompletionResultType]::ParameterName, 'Rebuild the index from the ownership metadata of every path under --scan, then prune as usual')
            [CompletionResult]::new('--require-push', '--require-push', [CompletionResultType]::ParameterName, 'A failed push fails the run (default: a warning)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vault-sync;check' {
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use')
            [CompletionResult]::new('--kube-timeout', '--kube-timeout', [CompletionResultType]::ParameterName, 'Bound on each Kubernetes API request (e.g. 30s, 2m)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--allow-path', '--allow-path', [CompletionResultType]::ParameterName, 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)')
            [CompletionResult]::new('--allow-paths-file', '--allow-paths-file', [CompletionResultType]::ParameterName, 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`')
            [CompletionResult]::new('--kinds', '--kinds', [CompletionResultType]::ParameterName, 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans')
            [CompletionResult]::new('--cluster-name', '--cluster-name', [CompletionResultType]::ParameterName, 'Cluster name: recorded as the owner''s cluster, and paths are written under `<mount>/clusters/<name>/`')
            [CompletionResult]::new('--index-mount', '--index-mount', [CompletionResultType]::ParameterName, 'KV v2 mount holding vault-sync''s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)')
            [CompletionResult]::new('--vault-addr', '--vault-addr', [CompletionResultType]::ParameterName, 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]')
            [CompletionResult]::new('--vault-auth', '--vault-auth', [CompletionResultType]::ParameterName, 'Auth method (default: kubernetes inside a pod, token elsewhere)')
            [CompletionResult]::new('--vault-role', '--vault-role', [CompletionResultType]::ParameterName, 'Role for the kubernetes or jwt auth method')
            [CompletionResult]::new('--vault-auth-path', '--vault-auth-path', [CompletionResultType]::ParameterName, 'Mount path of the auth method (default: the method''s name)')
            [CompletionResult]::new('--vault-jwt-file', '--vault-jwt-file', [CompletionResultType]::ParameterName, 'JWT for kubernetes/jwt auth (default: the pod''s service-account token)')
            [CompletionResult]::new('--vault-namespace', '--vault-namespace', [CompletionResultType]::ParameterName, 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)')
            [CompletionResult]::new('--vault-timeout', '--vault-timeout', [CompletionResultType]::ParameterName, 'Bound on each Vault operation, retries included (e.g. 30s, 2m)')
            [CompletionResult]::new('--pushgateway-url', '--pushgateway-url', [CompletionResultType]::ParameterName, 'Push metrics to this Prometheus Pushgateway at the end of the run')
            [CompletionResult]::new('--push-label', '--push-label', [CompletionResultType]::ParameterName, 'Extra grouping label for the push, `name=value` (repeatable)')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also write the metrics, in Prometheus text format, to this file (for node_exporter''s textfile collector)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Parallel Kubernetes and Vault requests')
            [CompletionResult]::new('--read-secrets', '--read-secrets', [CompletionResultType]::ParameterName, 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces'' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr (json: one object per line, for log pipelines)')
            [CompletionResult]::new('--require-push', '--require-push', [CompletionResultType]::ParameterName, 'A failed push fails the run (default: a warning)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vault-sync;completions' {
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Kubeconfig context to use')
            [CompletionResult]::new('--kube-timeout', '--kube-timeout', [CompletionResultType]::ParameterName, 'Bound on each Kubernetes API request (e.g. 30s, 2m)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation''s settings can narrow the scope')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Only workloads matching this label selector (e.g. `team=payments`)')
            [CompletionResult]::new('--allow-path', '--allow-path', [CompletionResultType]::ParameterName, 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)')
            [CompletionResult]::new('--allow-paths-file', '--allow-paths-file', [CompletionResultType]::ParameterName, 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`')
            [CompletionResult]::new('--kinds', '--kinds', [CompletionResultType]::ParameterName, 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans')
            [CompletionResult]::new('--cluster-name', '--cluster-name', [CompletionResultType]::ParameterName, 'Cluster name: recorded as the owner''s cluster, and paths are written under `<mount>/clusters/<name>/`')
            [CompletionResult]::new('--index-mount', '--index-mount', [CompletionResultType]::ParameterName, 'KV v2 mount holding vault-sync''s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)')
            [CompletionResult]::new('--vault-addr', '--vault-addr', [CompletionResultType]::ParameterName, 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]')
            [CompletionResult]::new('--vault-auth', '--vault-auth', [CompletionResultType]::ParameterName, 'Auth method (default: kubernetes inside a pod, token elsewhere)')
            [CompletionResult]::new('--vault-role', '--vault-role', [CompletionResultType]::ParameterName, 'Role for the kubernetes or jwt auth method')
            [CompletionResult]::new('--vault-auth-path', '--vault-auth-path', [CompletionResultType]::ParameterName, 'Mount path of the auth method (default: the method''s name)')
            [CompletionResult]::new('--vault-jwt-file', '--vault-jwt-file', [CompletionResultType]::ParameterName, 'JWT for kubernetes/jwt auth (default: the pod''s service-account token)')
            [CompletionResult]::new('--vault-namespace', '--vault-namespace', [CompletionResultType]::ParameterName, 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)')
            [CompletionResult]::new('--vault-timeout', '--vault-timeout', [CompletionResultType]::ParameterName, 'Bound on each Vault operation, retries included (e.g. 30s, 2m)')
            [CompletionResult]::new('--pushgateway-url', '--pushgateway-url', [CompletionResultType]::ParameterName, 'Push metrics to this Prometheus Pushgateway at the end of the run')
            [CompletionResult]::new('--push-label', '--push-label', [CompletionResultType]::ParameterName, 'Extra grouping label for the push, `name=value` (repeatable)')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also write the metrics, in Prometheus text format, to this file (for node_exporter''s textfile collector)')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Parallel Kubernetes and Vault requests')
            [CompletionResult]::new('--read-secrets', '--read-secrets', [CompletionResultType]::ParameterName, 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs')
            [CompletionResult]::new('--batch-size', '--batch-size', [CompletionResultType]::ParameterName, 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces'' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr (json: one object per line, for log pipelines)')
            [CompletionResult]::new('--require-push', '--require-push', [CompletionResultType]::ParameterName, 'A failed push fails the run (default: a warning)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More output (repeat for more); also shows unchanged paths')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'vault-sync;help' {
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Show what `run` would change (key names only, never values)')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Apply the plan: write what differs and delete orphans (paths vault-sync wrote that nothing wants any more; see --no-prune)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove Vault paths vault-sync wrote that nothing wants any more')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Check Vault and Kubernetes connectivity, auth and permissions')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'vault-sync;help;plan' {
            break
        }
        'vault-sync;help;run' {
            break
        }
        'vault-sync;help;prune' {
            break
        }
        'vault-sync;help;check' {
            break
        }
        'vault-sync;help;completions' {
            break
        }
        'vault-sync;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
