# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vault_sync_global_optspecs
    string join \n kubeconfig= context= kube-timeout= n/namespace= l/selector= allow-path= allow-paths-file= kinds= cluster-name= index-mount= vault-addr= vault-auth= vault-role= vault-auth-path= vault-jwt-file= vault-namespace= vault-timeout= pushgateway-url= push-label= require-push metrics-file= concurrency= read-secrets= batch-size= o/output= log-format= v/verbose q/quiet h/help V/version
end

function __fish_vault_sync_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vault_sync_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vault_sync_using_subcommand
    set -l cmd (__fish_vault_sync_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vault-sync -n "__fish_vault_sync_needs_command" -l kubeconfig -d 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l context -d 'Kubeconfig context to use' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l kube-timeout -d 'Bound on each Kubernetes API request (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s n -l namespace -d 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation\'s settings can narrow the scope' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s l -l selector -d 'Only workloads matching this label selector (e.g. `team=payments`)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l allow-path -d 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l allow-paths-file -d 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`' -r -F
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l kinds -d 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l cluster-name -d 'Cluster name: recorded as the owner\'s cluster, and paths are written under `<mount>/clusters/<name>/`' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l index-mount -d 'KV v2 mount holding vault-sync\'s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-addr -d 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-auth -d 'Auth method (default: kubernetes inside a pod, token elsewhere)' -r -f -a "kubernetes\t''
token\t''
approle\t''
jwt\t''"
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-role -d 'Role for the kubernetes or jwt auth method' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-auth-path -d 'Mount path of the auth method (default: the method\'s name)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-jwt-file -d 'JWT for kubernetes/jwt auth (default: the pod\'s service-account token)' -r -F
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-namespace -d 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l vault-timeout -d 'Bound on each Vault operation, retries included (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l pushgateway-url -d 'Push metrics to this Prometheus Pushgateway at the end of the run' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l push-label -d 'Extra grouping label for the push, `name=value` (repeatable)' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l metrics-file -d 'Also write the metrics, in Prometheus text format, to this file (for node_exporter\'s textfile collector)' -r -F
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l concurrency -d 'Parallel Kubernetes and Vault requests' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l read-secrets -d 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs' -r -f -a "auto\t'`list` where RBAC grants `list` on secrets in every namespace read (one SelfSubjectAccessReview per namespace scope to find out), `get` otherwise. Resolved by [`choose_secret_reads`] before a run; the engine treats an unresolved `auto` as `get`'
get\t'One GET per needed Secret: needs only `get` on secrets'
list\t'Paged LISTs of each namespace, keeping the needed Secrets: far fewer requests and far less API server work, but needs `list`'"
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l batch-size -d 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces\' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less' -r
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l log-format -d 'Log format on stderr (json: one object per line, for log pipelines)' -r -f -a "text\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_needs_command" -l require-push -d 'A failed push fails the run (default: a warning)'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s v -l verbose -d 'More output (repeat for more); also shows unchanged paths'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s q -l quiet -d 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -s V -l version -d 'Print version'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -f -a "plan" -d 'Show what `run` would change (key names only, never values)'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -f -a "run" -d 'Apply the plan: write what differs and delete orphans (paths vault-sync wrote that nothing wants any more; see --no-prune)'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -f -a "prune" -d 'Remove Vault paths vault-sync wrote that nothing wants any more'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -f -a "check" -d 'Check Vault and Kubernetes connectivity, auth and permissions'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c vault-sync -n "__fish_vault_sync_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l max-deletes -d 'Refuse every deletion of a run that would delete more than this many paths (a guard against a mass deletion caused by a mistake)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l out -d 'Also save the plan to FILE, for `run --plan FILE`: JSON with key names and what each change is pinned to (Secret resourceVersions, Vault versions and ownership), never a value or a digest of one' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l kubeconfig -d 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l context -d 'Kubeconfig context to use' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l kube-timeout -d 'Bound on each Kubernetes API request (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -s n -l namespace -d 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation\'s settings can narrow the scope' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -s l -l selector -d 'Only workloads matching this label selector (e.g. `team=payments`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l allow-path -d 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l allow-paths-file -d 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l kinds -d 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l cluster-name -d 'Cluster name: recorded as the owner\'s cluster, and paths are written under `<mount>/clusters/<name>/`' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l index-mount -d 'KV v2 mount holding vault-sync\'s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-addr -d 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-auth -d 'Auth method (default: kubernetes inside a pod, token elsewhere)' -r -f -a "kubernetes\t''
token\t''
approle\t''
jwt\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-role -d 'Role for the kubernetes or jwt auth method' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-auth-path -d 'Mount path of the auth method (default: the method\'s name)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-jwt-file -d 'JWT for kubernetes/jwt auth (default: the pod\'s service-account token)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-namespace -d 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l vault-timeout -d 'Bound on each Vault operation, retries included (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l pushgateway-url -d 'Push metrics to this Prometheus Pushgateway at the end of the run' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l push-label -d 'Extra grouping label for the push, `name=value` (repeatable)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l metrics-file -d 'Also write the metrics, in Prometheus text format, to this file (for node_exporter\'s textfile collector)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l concurrency -d 'Parallel Kubernetes and Vault requests' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l read-secrets -d 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs' -r -f -a "auto\t'`list` where RBAC grants `list` on secrets in every namespace read (one SelfSubjectAccessReview per namespace scope to find out), `get` otherwise. Resolved by [`choose_secret_reads`] before a run; the engine treats an unresolved `auto` as `get`'
get\t'One GET per needed Secret: needs only `get` on secrets'
list\t'Paged LISTs of each namespace, keeping the needed Secrets: far fewer requests and far less API server work, but needs `list`'"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l batch-size -d 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces\' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l log-format -d 'Log format on stderr (json: one object per line, for log pipelines)' -r -f -a "text\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l adopt -d 'Take over existing Vault paths that no tool marked as its own'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l push-metrics -d 'Push metrics for `plan` too (by default only `run` pushes)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l no-prune -d 'Do not look for orphans: write only, delete nothing'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l destroy -d 'Delete orphans with all versions and metadata (default: soft delete of the current version, undoable with `vault kv undelete`)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -l require-push -d 'A failed push fails the run (default: a warning)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -s v -l verbose -d 'More output (repeat for more); also shows unchanged paths'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -s q -l quiet -d 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l max-deletes -d 'Refuse every deletion of a run that would delete more than this many paths (a guard against a mass deletion caused by a mistake)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l plan -d 'Apply exactly the changes of a plan saved with `plan --out FILE` and nothing else. A change whose Secrets, Vault version or ownership moved since is `stale` and not applied. The file\'s --adopt, --no-prune and --destroy apply; its cluster, Vault address and -n/-l must match this run\'s' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l max-plan-age -d 'With --plan: refuse a plan older than this (e.g. 30m, 1h; 0 disables the check)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l kubeconfig -d 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l context -d 'Kubeconfig context to use' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l kube-timeout -d 'Bound on each Kubernetes API request (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -s n -l namespace -d 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation\'s settings can narrow the scope' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -s l -l selector -d 'Only workloads matching this label selector (e.g. `team=payments`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l allow-path -d 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l allow-paths-file -d 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l kinds -d 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l cluster-name -d 'Cluster name: recorded as the owner\'s cluster, and paths are written under `<mount>/clusters/<name>/`' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l index-mount -d 'KV v2 mount holding vault-sync\'s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-addr -d 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-auth -d 'Auth method (default: kubernetes inside a pod, token elsewhere)' -r -f -a "kubernetes\t''
token\t''
approle\t''
jwt\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-role -d 'Role for the kubernetes or jwt auth method' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-auth-path -d 'Mount path of the auth method (default: the method\'s name)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-jwt-file -d 'JWT for kubernetes/jwt auth (default: the pod\'s service-account token)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-namespace -d 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l vault-timeout -d 'Bound on each Vault operation, retries included (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l pushgateway-url -d 'Push metrics to this Prometheus Pushgateway at the end of the run' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l push-label -d 'Extra grouping label for the push, `name=value` (repeatable)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l metrics-file -d 'Also write the metrics, in Prometheus text format, to this file (for node_exporter\'s textfile collector)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l concurrency -d 'Parallel Kubernetes and Vault requests' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l read-secrets -d 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs' -r -f -a "auto\t'`list` where RBAC grants `list` on secrets in every namespace read (one SelfSubjectAccessReview per namespace scope to find out), `get` otherwise. Resolved by [`choose_secret_reads`] before a run; the engine treats an unresolved `auto` as `get`'
get\t'One GET per needed Secret: needs only `get` on secrets'
list\t'Paged LISTs of each namespace, keeping the needed Secrets: far fewer requests and far less API server work, but needs `list`'"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l batch-size -d 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces\' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l log-format -d 'Log format on stderr (json: one object per line, for log pipelines)' -r -f -a "text\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l adopt -d 'Take over existing Vault paths that no tool marked as its own'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l push-metrics -d 'Push metrics for `plan` too (by default only `run` pushes)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l no-prune -d 'Do not look for orphans: write only, delete nothing'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l destroy -d 'Delete orphans with all versions and metadata (default: soft delete of the current version, undoable with `vault kv undelete`)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -l require-push -d 'A failed push fails the run (default: a warning)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -s v -l verbose -d 'More output (repeat for more); also shows unchanged paths'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -s q -l quiet -d 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l max-deletes -d 'Refuse every deletion of a run that would delete more than this many paths (a guard against a mass deletion caused by a mistake)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l scan -d 'Path prefix to scan with --rebuild-index, e.g. `secret/apps`' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l kubeconfig -d 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l context -d 'Kubeconfig context to use' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l kube-timeout -d 'Bound on each Kubernetes API request (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s n -l namespace -d 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation\'s settings can narrow the scope' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s l -l selector -d 'Only workloads matching this label selector (e.g. `team=payments`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l allow-path -d 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l allow-paths-file -d 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l kinds -d 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l cluster-name -d 'Cluster name: recorded as the owner\'s cluster, and paths are written under `<mount>/clusters/<name>/`' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l index-mount -d 'KV v2 mount holding vault-sync\'s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-addr -d 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-auth -d 'Auth method (default: kubernetes inside a pod, token elsewhere)' -r -f -a "kubernetes\t''
token\t''
approle\t''
jwt\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-role -d 'Role for the kubernetes or jwt auth method' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-auth-path -d 'Mount path of the auth method (default: the method\'s name)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-jwt-file -d 'JWT for kubernetes/jwt auth (default: the pod\'s service-account token)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-namespace -d 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l vault-timeout -d 'Bound on each Vault operation, retries included (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l pushgateway-url -d 'Push metrics to this Prometheus Pushgateway at the end of the run' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l push-label -d 'Extra grouping label for the push, `name=value` (repeatable)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l metrics-file -d 'Also write the metrics, in Prometheus text format, to this file (for node_exporter\'s textfile collector)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l concurrency -d 'Parallel Kubernetes and Vault requests' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l read-secrets -d 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs' -r -f -a "auto\t'`list` where RBAC grants `list` on secrets in every namespace read (one SelfSubjectAccessReview per namespace scope to find out), `get` otherwise. Resolved by [`choose_secret_reads`] before a run; the engine treats an unresolved `auto` as `get`'
get\t'One GET per needed Secret: needs only `get` on secrets'
list\t'Paged LISTs of each namespace, keeping the needed Secrets: far fewer requests and far less API server work, but needs `list`'"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l batch-size -d 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces\' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l log-format -d 'Log format on stderr (json: one object per line, for log pipelines)' -r -f -a "text\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s y -l yes -d 'Do not ask for confirmation (required when stdin is not a terminal)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l destroy -d 'Delete orphans with all versions and metadata (default: soft delete of the current version, undoable with `vault kv undelete`)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l rebuild-index -d 'Rebuild the index from the ownership metadata of every path under --scan, then prune as usual'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -l require-push -d 'A failed push fails the run (default: a warning)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s v -l verbose -d 'More output (repeat for more); also shows unchanged paths'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s q -l quiet -d 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand prune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l kubeconfig -d 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l context -d 'Kubeconfig context to use' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l kube-timeout -d 'Bound on each Kubernetes API request (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -s n -l namespace -d 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation\'s settings can narrow the scope' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -s l -l selector -d 'Only workloads matching this label selector (e.g. `team=payments`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l allow-path -d 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l allow-paths-file -d 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l kinds -d 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l cluster-name -d 'Cluster name: recorded as the owner\'s cluster, and paths are written under `<mount>/clusters/<name>/`' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l index-mount -d 'KV v2 mount holding vault-sync\'s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-addr -d 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-auth -d 'Auth method (default: kubernetes inside a pod, token elsewhere)' -r -f -a "kubernetes\t''
token\t''
approle\t''
jwt\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-role -d 'Role for the kubernetes or jwt auth method' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-auth-path -d 'Mount path of the auth method (default: the method\'s name)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-jwt-file -d 'JWT for kubernetes/jwt auth (default: the pod\'s service-account token)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-namespace -d 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l vault-timeout -d 'Bound on each Vault operation, retries included (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l pushgateway-url -d 'Push metrics to this Prometheus Pushgateway at the end of the run' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l push-label -d 'Extra grouping label for the push, `name=value` (repeatable)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l metrics-file -d 'Also write the metrics, in Prometheus text format, to this file (for node_exporter\'s textfile collector)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l concurrency -d 'Parallel Kubernetes and Vault requests' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l read-secrets -d 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs' -r -f -a "auto\t'`list` where RBAC grants `list` on secrets in every namespace read (one SelfSubjectAccessReview per namespace scope to find out), `get` otherwise. Resolved by [`choose_secret_reads`] before a run; the engine treats an unresolved `auto` as `get`'
get\t'One GET per needed Secret: needs only `get` on secrets'
list\t'Paged LISTs of each namespace, keeping the needed Secrets: far fewer requests and far less API server work, but needs `list`'"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l batch-size -d 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces\' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l log-format -d 'Log format on stderr (json: one object per line, for log pipelines)' -r -f -a "text\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -l require-push -d 'A failed push fails the run (default: a warning)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -s v -l verbose -d 'More output (repeat for more); also shows unchanged paths'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -s q -l quiet -d 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l kubeconfig -d 'Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l context -d 'Kubeconfig context to use' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l kube-timeout -d 'Bound on each Kubernetes API request (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -s n -l namespace -d 'Only workloads in this namespace (repeatable; default: all namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so that an installation\'s settings can narrow the scope' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -s l -l selector -d 'Only workloads matching this label selector (e.g. `team=payments`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l allow-path -d 'Which Vault paths workloads of a namespace may write: `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g. `*=secret/apps/{namespace}/`. With any rule, a path no matching rule covers is refused (`outside_allowed_paths`), and so is the deletion of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS` (comma-separated)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l allow-paths-file -d 'A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#` starts a comment), added to `--allow-path`' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l kinds -d 'Workload kinds to read (comma-separated or repeated): Deployment, StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out is neither synced nor judged for orphans' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l cluster-name -d 'Cluster name: recorded as the owner\'s cluster, and paths are written under `<mount>/clusters/<name>/`' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l index-mount -d 'KV v2 mount holding vault-sync\'s index of owned paths (at `<mount>/vault-sync/index/<cluster>`)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-addr -d 'Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else https://127.0.0.1:8200]' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-auth -d 'Auth method (default: kubernetes inside a pod, token elsewhere)' -r -f -a "kubernetes\t''
token\t''
approle\t''
jwt\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-role -d 'Role for the kubernetes or jwt auth method' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-auth-path -d 'Mount path of the auth method (default: the method\'s name)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-jwt-file -d 'JWT for kubernetes/jwt auth (default: the pod\'s service-account token)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-namespace -d 'Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l vault-timeout -d 'Bound on each Vault operation, retries included (e.g. 30s, 2m)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l pushgateway-url -d 'Push metrics to this Prometheus Pushgateway at the end of the run' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l push-label -d 'Extra grouping label for the push, `name=value` (repeatable)' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l metrics-file -d 'Also write the metrics, in Prometheus text format, to this file (for node_exporter\'s textfile collector)' -r -F
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l concurrency -d 'Parallel Kubernetes and Vault requests' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l read-secrets -d 'How Secrets are read: a GET per Secret (needs only `get` on secrets), or paged LISTs per namespace (needs `list` too; far less API server work on large runs). `auto` lists where RBAC grants `list` on secrets (one access review per run), else GETs' -r -f -a "auto\t'`list` where RBAC grants `list` on secrets in every namespace read (one SelfSubjectAccessReview per namespace scope to find out), `get` otherwise. Resolved by [`choose_secret_reads`] before a run; the engine treats an unresolved `auto` as `get`'
get\t'One GET per needed Secret: needs only `get` on secrets'
list\t'Paged LISTs of each namespace, keeping the needed Secrets: far fewer requests and far less API server work, but needs `list`'"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l batch-size -d 'Most Vault paths read, planned and written per batch. Batches are sized to hold about 8 MiB of Secret values, and never more paths. Each batch that creates paths rewrites the index, and lists its namespaces\' Secrets (`--read-secrets list`): fewer, larger batches cost Vault and the API server less' -r
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l log-format -d 'Log format on stderr (json: one object per line, for log pipelines)' -r -f -a "text\t''
json\t''"
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -l require-push -d 'A failed push fails the run (default: a warning)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -s v -l verbose -d 'More output (repeat for more); also shows unchanged paths'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -s q -l quiet -d 'Errors only: no progress bars, no log line below ERROR on stderr, and no table on stdout (the exit code says what happened); `-o json` still prints its document'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand help; and not __fish_seen_subcommand_from plan run prune check completions help" -f -a "plan" -d 'Show what `run` would change (key names only, never values)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand help; and not __fish_seen_subcommand_from plan run prune check completions help" -f -a "run" -d 'Apply the plan: write what differs and delete orphans (paths vault-sync wrote that nothing wants any more; see --no-prune)'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand help; and not __fish_seen_subcommand_from plan run prune check completions help" -f -a "prune" -d 'Remove Vault paths vault-sync wrote that nothing wants any more'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand help; and not __fish_seen_subcommand_from plan run prune check completions help" -f -a "check" -d 'Check Vault and Kubernetes connectivity, auth and permissions'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand help; and not __fish_seen_subcommand_from plan run prune check completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c vault-sync -n "__fish_vault_sync_using_subcommand help; and not __fish_seen_subcommand_from plan run prune check completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
