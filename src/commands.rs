//! The subcommands: wire adapters, engine, rendering and metrics together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{Cli, Command, GlobalArgs, SyncArgs};
use crate::core::ownership::Owner;
use crate::core::plan::{Action, Plan};
use crate::engine::{Engine, Scope};
use crate::k8s::{self, KubeError};
use crate::metrics::Metrics;
use crate::render::progress::Progress;
use crate::render::{self, Report};
use crate::vault::{Vault, VaultError};
use crate::{config, pushgateway};

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for `plan`: no changes.
    Success = 0,
    /// Something failed (errors, conflicts, failed writes).
    Failure = 1,
    /// `plan` only: changes pending.
    Changes = 2,
}

/// A failure that stops a command before it can do per-item work.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl CommandError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(e) => e.metric_label(),
            Self::Vault(e) => e.metric_label(),
            Self::Config(_) | Self::Metrics(_) => "config",
        }
    }
}

pub async fn execute(cli: Cli) -> Result<Exit, CommandError> {
    match cli.command {
        Command::Plan(args) => sync(&cli.global, &args, false).await,
        Command::Run(args) => sync(&cli.global, &args, true).await,
        Command::Prune(_) | Command::Check => {
            render::print_stderr("not implemented yet");
            Ok(Exit::Failure)
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "vault-sync",
                &mut out,
            );
            render::print_stdout(&String::from_utf8_lossy(&out));
            Ok(Exit::Success)
        }
    }
}

fn scope(global: &GlobalArgs, args: &SyncArgs) -> Scope {
    Scope {
        cluster: global
            .cluster_name
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        cluster_prefix: global.cluster_name.clone(),
        namespaces: global.namespaces.clone(),
        selector: global.selector.clone(),
        concurrency: usize::from(global.concurrency),
        adopt: args.adopt,
    }
}

async fn connect(
    global: &GlobalArgs,
    metrics: &Arc<Metrics>,
) -> Result<(kube::Client, Vault), CommandError> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let vault_config = config::vault_config(global, |k| std::env::var(k).ok(), home.as_deref())
        .map_err(CommandError::Config)?;
    tracing::info!(
        version = crate::VERSION,
        vault_addr = vault_config.addr.as_str(),
        auth = vault_config.auth.name(),
        cluster = global.cluster_name.as_deref().unwrap_or("default"),
        "starting"
    );
    let kube = k8s::connect(global.kubeconfig.as_ref(), global.context.as_deref()).await?;
    let vault = Vault::connect(vault_config, metrics.clone()).await?;
    Ok((kube, vault))
}

/// `plan` and `run`.
async fn sync(global: &GlobalArgs, args: &SyncArgs, apply: bool) -> Result<Exit, CommandError> {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::new()?);
    let outcome = sync_inner(global, args, apply, &metrics).await;
    let succeeded = matches!(outcome, Ok(Exit::Success | Exit::Changes));
    if let Err(e) = &outcome {
        metrics
            .vault_write_errors
            .with_label_values(&[e.metric_label()])
            .inc();
    }
    if apply || args.push_metrics {
        let pushed = publish_metrics(global, &metrics, started, succeeded).await;
        if let (Err(e), Ok(_)) = (&pushed, &outcome) {
            if global.require_push {
                tracing::error!("{e}");
                return Ok(Exit::Failure);
            }
            tracing::warn!("{e}");
        }
    }
    outcome
}

async fn sync_inner(
    global: &GlobalArgs,
    args: &SyncArgs,
    apply: bool,
    metrics: &Arc<Metrics>,
) -> Result<Exit, CommandError> {
    let (kube, vault) = connect(global, metrics).await?;
    let progress = Progress::detect(global.quiet);
    let engine = Engine {
        kube,
        vault,
        scope: scope(global, args),
        metrics: metrics.clone(),
    };
    let prepared = engine.prepare(&progress).await;
    let failures = if apply {
        engine.apply(&prepared.plan, &progress).await
    } else {
        BTreeMap::new()
    };
    record_plan(metrics, &prepared.plan, &failures);

    render::emit(
        &Report {
            command: if apply { "run" } else { "plan" },
            plan: &prepared.plan,
            listing_failures: &prepared.listing_failures,
            applied: apply.then_some(&failures),
            show_unchanged: global.verbose > 0,
        },
        global.output,
    );

    let failed =
        !prepared.listing_complete() || prepared.plan.has_failures() || !failures.is_empty();
    Ok(match (failed, apply, prepared.plan.has_changes()) {
        (true, _, _) => Exit::Failure,
        (false, false, true) => Exit::Changes,
        _ => Exit::Success,
    })
}

/// Per-Deployment results and per-action path counts.
fn record_plan(metrics: &Metrics, plan: &Plan, failures: &BTreeMap<usize, VaultError>) {
    let mut per_owner: BTreeMap<&Owner, &'static str> = BTreeMap::new();
    for (i, change) in plan.changes.iter().enumerate() {
        let result = match (&change.action, failures.contains_key(&i)) {
            (_, true) | (Action::Error { .. }, _) => "error",
            (Action::Conflict { .. }, _) => "conflict",
            _ => "success",
        };
        let entry = per_owner.entry(&change.owner).or_insert("success");
        // error beats conflict beats success
        if result == "error" || (result == "conflict" && *entry == "success") {
            *entry = result;
        }
        let action = if failures.contains_key(&i) {
            "error"
        } else {
            change.action.name()
        };
        metrics.paths.with_label_values(&[action]).inc();
    }
    for action in ["create", "update", "unchanged", "conflict", "error"] {
        // Present every action so dashboards see zeros, not gaps.
        metrics.paths.with_label_values(&[action]);
    }
    for (owner, result) in per_owner {
        metrics
            .sync_attempts
            .with_label_values(&[owner.namespace.as_str(), owner.deployment.as_str(), result])
            .inc();
    }
}

async fn publish_metrics(
    global: &GlobalArgs,
    metrics: &Metrics,
    started: Instant,
    succeeded: bool,
) -> Result<(), pushgateway::PushError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics.last_run_timestamp.set(now);
    metrics.run_duration.set(started.elapsed().as_secs_f64());
    if succeeded {
        metrics.last_success_timestamp.set(now);
    }
    // A failed run must not overwrite the last success time: it leaves that
    // family out and pushes with POST, which replaces only the families sent.
    let text = match metrics.encode_without(if succeeded {
        None
    } else {
        Some("vault_sync_last_success_timestamp_seconds")
    }) {
        Ok(t) => t,
        Err(e) => {
            return Err(pushgateway::PushError {
                url: String::new(),
                message: e.to_string(),
            });
        }
    };
    if let Some(path) = &global.metrics_file {
        write_metrics_file(path, &text).map_err(|e| pushgateway::PushError {
            url: path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let Some(url) = &global.pushgateway_url else {
        return Ok(());
    };
    let mut labels = vec![(
        "cluster".to_owned(),
        global
            .cluster_name
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
    )];
    labels.extend(global.push_labels.iter().cloned());
    pushgateway::push(
        url,
        "vault-sync",
        &labels,
        text,
        global.vault_timeout,
        if succeeded {
            pushgateway::Mode::Replace
        } else {
            pushgateway::Mode::Merge
        },
    )
    .await
}

/// Atomic write (temp file + rename), as the textfile collector requires.
fn write_metrics_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
