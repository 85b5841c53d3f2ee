//! `plan --out FILE` and `run --plan FILE`: reading and writing the file,
//! comparing it with this run's flags before anything is sent to Vault,
//! and reporting what became of each change.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{CommandError, Exit, connect, path_rules, record_outcome, unique};
use crate::cli::{GlobalArgs, RunArgs};
use crate::config;
use crate::core::ownership::DEFAULT_CLUSTER;
use crate::core::plan::Plan;
use crate::core::saved_plan::{self, Expect, Header, OptionsRecord, Pins, ScopeRecord};
use crate::engine::{Engine, Scope};
use crate::k8s;
use crate::metrics::Metrics;
use crate::render::progress::Progress;
use crate::render::{self, Report};
use crate::shutdown::Shutdown;
use crate::vault::VaultConfig;

fn vault_config(global: &GlobalArgs) -> Result<VaultConfig, CommandError> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    config::vault_config(global, |k| std::env::var(k).ok(), home.as_deref())
        .map_err(CommandError::Config)
}

/// What `plan --out` records besides the changes.
pub(super) fn header(global: &GlobalArgs, scope: &Scope) -> Result<Header, CommandError> {
    let vault = vault_config(global)?;
    Ok(Header {
        tool_version: crate::VERSION.to_owned(),
        created_at: SystemTime::now(),
        cluster: scope.cluster.clone(),
        scope: ScopeRecord {
            namespaces: scope.namespaces.clone(),
            selector: scope.selector.clone(),
        },
        vault_address: vault.addr.trim_end_matches('/').to_owned(),
        vault_namespace: vault.namespace,
        index_mount: scope.index_mount.clone(),
        options: OptionsRecord {
            adopt: scope.adopt,
            prune: scope.prune,
            destroy: scope.destroy,
            max_deletes: scope.max_deletes,
        },
    })
}

/// Writes the saved plan (a temporary file renamed into place, so a
/// reader never sees half a plan).
pub(super) fn save(
    file: &Path,
    header: Header,
    plan: &Plan,
    pins: &Pins,
) -> Result<(), CommandError> {
    let document =
        saved_plan::build(header, plan, pins).map_err(|e| CommandError::Config(e.to_string()))?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| CommandError::Config(format!("cannot encode the plan: {e}")))?;
    text.push('\n');
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| {
            CommandError::Config(format!(
                "cannot write the plan file {}: {e}; check the directory exists and is writable",
                file.display()
            ))
        })?;
    tracing::info!(
        file = %file.display(),
        changes = document.changes.len(),
        "plan saved; apply it with `vault-sync run --plan {}`",
        file.display()
    );
    Ok(())
}

/// `run --plan FILE`.
pub(super) async fn run_plan(
    global: &GlobalArgs,
    args: &RunArgs,
    file: &Path,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Result<Exit, CommandError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        CommandError::Config(format!(
            "cannot read the plan file {}: {e}; pass the file `vault-sync plan --out` wrote",
            file.display()
        ))
    })?;
    let saved = saved_plan::parse(&text)?;
    // Everything about the file is judged before anything is sent: a
    // refusal costs no request to Vault.
    let vault = vault_config(global)?;
    let cluster = global
        .cluster_name
        .clone()
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
    let expect = Expect {
        cluster: &cluster,
        cluster_prefix: global.cluster_name.as_deref(),
        vault_address: &vault.addr,
        vault_namespace: vault.namespace.as_deref(),
        index_mount: &global.index_mount,
        namespaces: &global.namespaces,
        selector: global.selector.as_deref(),
        now: SystemTime::now(),
        max_age: (!args.max_plan_age.is_zero()).then_some(args.max_plan_age),
    };
    let changes = saved_plan::check(&saved, &expect)?;
    tracing::info!(
        file = %file.display(),
        created_at = saved.created_at.as_str(),
        changes = changes.len(),
        "applying a saved plan"
    );

    let (kube, vault) = connect(global, metrics).await?;
    let vault = vault.with_shutdown(shutdown.clone());
    let progress = Progress::detect(global.quiet);
    let read_secrets =
        k8s::choose_secret_reads(&kube, global.read_secrets, &global.namespaces).await;
    let engine = Engine {
        kube,
        vault,
        scope: Scope {
            cluster,
            cluster_prefix: global.cluster_name.clone(),
            namespaces: global.namespaces.clone(),
            selector: global.selector.clone(),
            kinds: unique(&global.kinds),
            rules: path_rules(global)?,
            concurrency: usize::from(global.concurrency),
            batch_size: global.batch_size as usize,
            read_secrets,
            adopt: saved.options.adopt,
            prune: saved.options.prune,
            destroy: saved.options.destroy,
            max_deletes: args.sync.delete.max_deletes,
            index_mount: global.index_mount.clone(),
        },
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let outcome = engine
        .apply_saved(changes, &saved.vault.mounts, &progress)
        .await?;
    super::log_problems(&outcome.plan);
    record_outcome(
        metrics,
        &outcome.plan,
        &outcome.failures,
        outcome.errors.iter(),
    );
    if !(global.quiet && global.output == render::OutputFormat::Table) {
        render::emit(
            &Report {
                command: "run",
                plan: &outcome.plan,
                errors: &outcome.errors,
                applied: Some(&outcome.failures),
                show_unchanged: global.verbose > 0,
            },
            global.output,
        );
    }
    let failed =
        !outcome.failures.is_empty() || !outcome.errors.is_empty() || outcome.plan.has_failures();
    Ok(if failed { Exit::Failure } else { Exit::Success })
}
