//! Command-line definitions and their help text. No IO here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::render::OutputFormat;

/// Push Kubernetes Secrets into HashiCorp Vault / OpenBao.
///
/// Deployments annotated with `vault-sync.io/path` name the Vault path; the
/// Secrets they reference are written there. Stateless: ownership lives in
/// each path's KV v2 custom_metadata.
#[derive(Debug, Parser)]
#[command(name = "vault-sync", version = crate::VERSION, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `run` would change (key names only, never values).
    ///
    /// Exit code: 0 no changes, 2 changes pending, 1 errors or conflicts
    /// (like `terraform plan -detailed-exitcode`).
    Plan(PlanArgs),
    /// Apply the plan: write what differs and delete orphans (paths
    /// vault-sync wrote that nothing wants any more; see --no-prune).
    ///
    /// With --plan FILE, apply exactly the changes saved by `plan --out`
    /// instead, each only if what it was planned from has not moved.
    ///
    /// Exit code: 0 everything applied, 1 anything failed, was refused or
    /// (with --plan) was stale.
    Run(RunArgs),
    /// Remove Vault paths vault-sync wrote that nothing wants any more.
    Prune(PruneArgs),
    /// Check Vault and Kubernetes connectivity, auth and permissions.
    Check,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Take over existing Vault paths that no tool marked as its own.
    #[arg(long)]
    pub adopt: bool,

    /// Push metrics for `plan` too (by default only `run` pushes).
    #[arg(long)]
    pub push_metrics: bool,

    /// Do not look for orphans: write only, delete nothing.
    #[arg(long)]
    pub no_prune: bool,

    #[command(flatten)]
    pub delete: DeleteArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub sync: SyncArgs,

    /// Also save the plan to FILE, for `run --plan FILE`: JSON with key
    /// names and what each change is pinned to (Secret resourceVersions,
    /// Vault versions and ownership), never a value or a digest of one.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub sync: SyncArgs,

    /// Apply exactly the changes of a plan saved with `plan --out FILE`
    /// and nothing else. A change whose Secrets, Vault version or
    /// ownership moved since is `stale` and not applied. The file's
    /// --adopt, --no-prune and --destroy apply; its cluster, Vault address
    /// and -n/-l must match this run's.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["adopt", "no_prune", "destroy"])]
    pub plan: Option<PathBuf>,

    /// With --plan: refuse a plan older than this (e.g. 30m, 1h; 0
    /// disables the check).
    #[arg(long, default_value = "1h", value_parser = parse_age)]
    pub max_plan_age: Duration,
}

/// How orphans are deleted.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Delete orphans with all versions and metadata (default: soft delete
    /// of the current version, undoable with `vault kv undelete`).
    #[arg(long)]
    pub destroy: bool,

    /// Refuse every deletion of a run that would delete more than this many
    /// paths (a guard against a mass deletion caused by a mistake).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_deletes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub delete: DeleteArgs,

    /// Rebuild the index from the ownership metadata of every path under
    /// --scan, then prune as usual.
    #[arg(long, requires = "scan")]
    pub rebuild_index: bool,

    /// Path prefix to scan with --rebuild-index, e.g. `secret/apps`.
    #[arg(long, value_name = "PATH")]
    pub scan: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VaultAuth {
    Kubernetes,
    Token,
    Approle,
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    // --- Kubernetes ---
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Kubernetes")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use.
    #[arg(long, global = true, help_heading = "Kubernetes")]
    pub context: Option<String>,

    /// Bound on each Kubernetes API request (e.g. 30s, 2m).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration, help_heading = "Kubernetes")]
    pub kube_timeout: Duration,

    /// Only workloads in this namespace (repeatable; default: all
    /// namespaces). Also from `VAULT_SYNC_NAMESPACES` (comma-separated), so
    /// that an installation's settings can narrow the scope.
    #[arg(
        short = 'n',
        long = "namespace",
        global = true,
        value_name = "NAMESPACE",
        value_delimiter = ',',
        env = "VAULT_SYNC_NAMESPACES",
        help_heading = "Kubernetes"
    )]
    pub namespaces: Vec<String>,

    /// Only workloads matching this label selector (e.g. `team=payments`).
    #[arg(
        short = 'l',
        long,
        global = true,
        env = "VAULT_SYNC_SELECTOR",
        help_heading = "Kubernetes"
    )]
    pub selector: Option<String>,

    /// Which Vault paths workloads of a namespace may write:
    /// `NAMESPACE_GLOB=PATH_PREFIX`, repeatable, e.g.
    /// `*=secret/apps/{namespace}/`. With any rule, a path no matching rule
    /// covers is refused (`outside_allowed_paths`), and so is the deletion
    /// of an orphan there. Also from `VAULT_SYNC_ALLOW_PATHS`
    /// (comma-separated).
    #[arg(
        long = "allow-path",
        global = true,
        value_name = "NAMESPACE_GLOB=PATH_PREFIX",
        value_delimiter = ',',
        env = "VAULT_SYNC_ALLOW_PATHS",
        value_parser = parse_rule,
        help_heading = "Kubernetes"
    )]
    pub allow_paths: Vec<crate::core::path_rules::PathRule>,

    /// A file of path rules, one `NAMESPACE_GLOB=PATH_PREFIX` a line (`#`
    /// starts a comment), added to `--allow-path`.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "VAULT_SYNC_ALLOW_PATHS_FILE",
        help_heading = "Kubernetes"
    )]
    pub allow_paths_file: Option<PathBuf>,

    /// Workload kinds to read (comma-separated or repeated): Deployment,
    /// StatefulSet, DaemonSet, Job, CronJob [default: all]. A kind left out
    /// is neither synced nor judged for orphans.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        value_parser = parse_kind,
        default_value = "Deployment,StatefulSet,DaemonSet,Job,CronJob",
        hide_default_value = true,
        env = "VAULT_SYNC_KINDS",
        help_heading = "Kubernetes"
    )]
    pub kinds: Vec<crate::core::workload::Kind>,

    /// Cluster name: recorded as the owner's cluster, and paths are written
    /// under `<mount>/clusters/<name>/`.
    #[arg(long, global = true, env = "VAULT_SYNC_CLUSTER_NAME", value_parser = parse_cluster_name, help_heading = "Kubernetes")]
    pub cluster_name: Option<String>,

    /// KV v2 mount holding vault-sync's index of owned paths
    /// (at `<mount>/vault-sync/index/<cluster>`).
    #[arg(
        long,
        global = true,
        default_value = "secret",
        env = "VAULT_SYNC_INDEX_MOUNT",
        help_heading = "Vault"
    )]
    pub index_mount: String,

    // --- Vault ---
    /// Vault address [default: $VAULT_ADDR, else $BAO_ADDR, else
    /// https://127.0.0.1:8200].
    // Not clap's `env`: the VAULT_/BAO_ fallback is resolved in `config`,
    // from an injected environment that tests control.
    #[arg(long, global = true, help_heading = "Vault")]
    pub vault_addr: Option<String>,

    /// Auth method (default: kubernetes inside a pod, token elsewhere).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "VAULT_SYNC_AUTH",
        help_heading = "Vault"
    )]
    pub vault_auth: Option<VaultAuth>,

    /// Role for the kubernetes or jwt auth method.
    #[arg(
        long,
        global = true,
        env = "VAULT_SYNC_ROLE",
        default_value = "vault-sync-operator",
        help_heading = "Vault"
    )]
    pub vault_role: String,

    /// Mount path of the auth method (default: the method's name).
    #[arg(
        long,
        global = true,
        env = "VAULT_SYNC_AUTH_PATH",
        help_heading = "Vault"
    )]
    pub vault_auth_path: Option<String>,

    /// JWT for kubernetes/jwt auth (default: the pod's service-account token).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "VAULT_SYNC_JWT_FILE",
        help_heading = "Vault"
    )]
    pub vault_jwt_file: Option<PathBuf>,

    /// Vault Enterprise / OpenBao namespace (also VAULT_NAMESPACE, BAO_NAMESPACE).
    #[arg(long, global = true, help_heading = "Vault")]
    pub vault_namespace: Option<String>,

    /// Bound on each Vault operation, retries included (e.g. 30s, 2m).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration, help_heading = "Vault")]
    pub vault_timeout: Duration,

    // --- Metrics ---
    /// Push metrics to this Prometheus Pushgateway at the end of the run.
    #[arg(
        long,
        global = true,
        env = "PUSHGATEWAY_URL",
        value_name = "URL",
        help_heading = "Metrics"
    )]
    pub pushgateway_url: Option<String>,

    /// Extra grouping label for the push, `name=value` (repeatable).
    #[arg(long = "push-label", global = true, value_name = "NAME=VALUE", value_parser = parse_label, help_heading = "Metrics")]
    pub push_labels: Vec<(String, String)>,

    /// A failed push fails the run (default: a warning).
    #[arg(long, global = true, help_heading = "Metrics")]
    pub require_push: bool,

    /// Also write the metrics, in Prometheus text format, to this file
    /// (for node_exporter's textfile collector).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Metrics")]
    pub metrics_file: Option<PathBuf>,

    // --- Behaviour and output ---
    /// Parallel Kubernetes and Vault requests.
    #[arg(long, global = true, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// How Secrets are read: a GET per Secret (needs only `get` on
    /// secrets), or paged LISTs per namespace (needs `list` too; far less
    /// API server work on large runs). `auto` lists where RBAC grants
    /// `list` on secrets (one access review per run), else GETs.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub read_secrets: crate::k8s::SecretReads,

    /// Most Vault paths read, planned and written per batch. Batches are
    /// sized to hold about 8 MiB of Secret values, and never more paths.
    /// Each batch that creates paths rewrites the index, and lists its
    /// namespaces' Secrets (`--read-secrets list`): fewer, larger batches
    /// cost Vault and the API server less.
    #[arg(long, global = true, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: OutputFormat,

    /// Log format on stderr (json: one object per line, for log pipelines).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "VAULT_SYNC_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    /// More output (repeat for more); also shows unchanged paths.
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Errors only: no progress bars, no log line below ERROR on stderr,
    /// and no table on stdout (the exit code says what happened); `-o json`
    /// still prints its document.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

fn parse_rule(s: &str) -> Result<crate::core::path_rules::PathRule, String> {
    s.parse()
        .map_err(|e: crate::core::path_rules::RuleError| e.to_string())
}

fn parse_kind(s: &str) -> Result<crate::core::workload::Kind, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::core::annotations::parse_go_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration like 30s, 2m or 1h30m"))
}

/// A duration, where `0` means "no limit" (returned as zero).
fn parse_age(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// A Prometheus label name, and not one of the grouping key's own labels
/// (`job`, `cluster`, `command`: vault-sync sets them, and a second value
/// would make a different group or none).
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("job" | "cluster" | "command", _)) => Err(format!(
            "{s:?}: job, cluster and command are already in the grouping key (set the cluster with --cluster-name)"
        )),
        Some((k, v))
            if k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && !k.starts_with("__")
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!(
            "{s:?} is not NAME=VALUE with a Prometheus label name"
        )),
    }
}

/// One name, one identity, one index, one path prefix: a name must be a
/// DNS label (so no two spellings reach the same `clusters/<name>/` path),
/// and `default` is taken by the unnamed cluster, which writes without a
/// prefix: a cluster named `default` would share its identity and index
/// while writing elsewhere, and the two would prune each other's paths.
fn parse_cluster_name(s: &str) -> Result<String, String> {
    use crate::core::ownership::DEFAULT_CLUSTER;
    if s == DEFAULT_CLUSTER {
        Err(format!(
            "{s:?} is the identity of the unnamed cluster (no --cluster-name); pick another name, or leave --cluster-name unset to keep writing without a clusters/<name>/ prefix"
        ))
    } else if crate::core::annotations::is_dns_subdomain(s) && !s.contains('.') && s.len() <= 63 {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a valid cluster name (a DNS label: at most 63 lowercase letters, digits and '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn namespaces_repeat_and_split_on_commas() {
        // The comma form is what VAULT_SYNC_NAMESPACES carries.
        let cli = Cli::try_parse_from(["vault-sync", "plan", "-n", "a,b", "--namespace", "c"])
            .expect("parses");
        assert_eq!(cli.global.namespaces, ["a", "b", "c"]);
    }

    #[test]
    fn durations_and_cluster_names() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_cluster_name("prod-eu").is_ok());
        assert!(parse_cluster_name("Prod/eu").is_err());
        assert!(parse_cluster_name("Prod").is_err());
        assert!(parse_cluster_name("default").is_err());
        assert!(parse_cluster_name(&"a".repeat(64)).is_err());
    }
}
