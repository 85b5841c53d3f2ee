//! The subcommands: wire adapters, engine, rendering and metrics together.

// The wiring: it builds the adapters the engine is generic over. (clippy.toml)
#![allow(clippy::disallowed_types)]

mod check;
mod saved;

pub use check::CheckResult;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{Cli, Command, DeleteArgs, GlobalArgs, PlanArgs, PruneArgs, RunArgs};
use crate::core::error_kind::ErrorKind;
use crate::core::ownership::{DEFAULT_CLUSTER, Owner};
use crate::core::path_rules::PathRules;
use crate::core::plan::{Action, Plan};
use crate::engine::{Applied, Engine, IndexFailure, Prepared, Scope};
use crate::k8s::{self, KubeError};
use crate::metrics::{LAST_SUCCESS, Metrics};
use crate::render::progress::Progress;
use crate::render::{self, Report};
use crate::shutdown::Shutdown;
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
    /// Stopped by SIGINT (128 + 2), after reporting.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15), after reporting.
    Terminated = 143,
}

/// A failure that stops a command before it can do per-item work.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Index(#[from] IndexFailure),
    #[error("{0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `run --plan`: the file is refused whole, before any Vault request.
    #[error("refused the saved plan: {0}")]
    Refused(#[from] crate::core::saved_plan::Refusal),
}

impl CommandError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Kube(e) => e.kind(),
            Self::Vault(e) => e.kind(),
            Self::Index(e) => e.kind(),
            Self::Config(_) | Self::Metrics(_) | Self::Refused(_) => ErrorKind::Config,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }
}

pub async fn execute(cli: Cli) -> Result<Exit, CommandError> {
    match cli.command {
        Command::Plan(args) => sync(&cli.global, &Mode::Plan(args)).await,
        Command::Run(args) => sync(&cli.global, &Mode::Run(args)).await,
        Command::Prune(args) => sync(&cli.global, &Mode::Prune(args)).await,
        Command::Check => check::check(&cli.global).await,
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

/// The three commands that share the read phase.
enum Mode {
    Plan(PlanArgs),
    Run(RunArgs),
    Prune(PruneArgs),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Self::Plan(_) => "plan",
            Self::Run(_) => "run",
            Self::Prune(_) => "prune",
        }
    }

    fn delete_args(&self) -> &DeleteArgs {
        match self {
            Self::Plan(a) => &a.sync.delete,
            Self::Run(a) => &a.sync.delete,
            Self::Prune(a) => &a.delete,
        }
    }
}

fn scope(global: &GlobalArgs, mode: &Mode) -> Result<Scope, CommandError> {
    let (adopt, prune) = match mode {
        Mode::Plan(PlanArgs { sync: a, .. }) | Mode::Run(RunArgs { sync: a, .. }) => {
            (a.adopt, !a.no_prune)
        }
        Mode::Prune(_) => (false, true),
    };
    Ok(Scope {
        cluster: global
            .cluster_name
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned()),
        cluster_prefix: global.cluster_name.clone(),
        namespaces: global.namespaces.clone(),
        selector: global.selector.clone(),
        kinds: unique(&global.kinds),
        rules: path_rules(global)?,
        concurrency: usize::from(global.concurrency),
        batch_size: global.batch_size as usize,
        read_secrets: global.read_secrets,
        adopt,
        prune,
        destroy: mode.delete_args().destroy,
        max_deletes: mode.delete_args().max_deletes,
        index_mount: global.index_mount.clone(),
    })
}

async fn connect(
    global: &GlobalArgs,
    metrics: &Arc<Metrics>,
) -> Result<(k8s::Client, Vault), CommandError> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let vault_config = config::vault_config(global, |k| std::env::var(k).ok(), home.as_deref())
        .map_err(CommandError::Config)?;
    tracing::info!(
        version = crate::VERSION,
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        vault_addr = vault_config.addr.as_str(),
        auth = vault_config.auth.name(),
        cluster = global.cluster_name.as_deref().unwrap_or(DEFAULT_CLUSTER),
        "starting"
    );
    let kube = k8s::connect(
        global.kubeconfig.as_ref(),
        global.context.as_deref(),
        global.kube_timeout,
    )
    .await?;
    let vault = Vault::connect(vault_config, metrics.clone()).await?;
    Ok((kube, vault))
}

/// `plan`, `run` and `prune`.
async fn sync(global: &GlobalArgs, mode: &Mode) -> Result<Exit, CommandError> {
    let started = Instant::now();
    let metrics = Arc::new(Metrics::new()?);
    let shutdown = Shutdown::listen();
    let outcome = tokio::select! {
        outcome = sync_inner(global, mode, &metrics, &shutdown) => outcome,
        () = async {
            shutdown.wait().await;
            tokio::time::sleep(crate::shutdown::GRACE).await;
        } => Err(CommandError::Config(format!(
            "stopped: requests still in flight {} s after the signal were abandoned",
            crate::shutdown::GRACE.as_secs()
        ))),
    };
    let stopped = shutdown.requested().is_some();
    let succeeded = !stopped && matches!(outcome, Ok(Exit::Success | Exit::Changes));
    if let Err(e) = &outcome {
        // The failure that stopped the run is one of its errors.
        metrics.count_error(if stopped {
            ErrorKind::Interrupted
        } else {
            e.kind()
        });
    }
    let push = match mode {
        Mode::Plan(a) => a.sync.push_metrics,
        Mode::Run(_) | Mode::Prune(_) => true,
    };
    if push {
        let pushed = publish_metrics(global, mode.name(), &metrics, started, succeeded).await;
        if let Err(e) = &pushed {
            if global.require_push && outcome.is_ok() && !stopped {
                tracing::error!("{e}");
                return Ok(Exit::Failure);
            }
            tracing::warn!("{e}");
        }
    }
    if let Some(code) = shutdown.exit_code() {
        if let Err(e) = &outcome {
            tracing::error!("{e}");
        }
        return Ok(if code == Exit::Interrupted as u8 {
            Exit::Interrupted
        } else {
            Exit::Terminated
        });
    }
    outcome
}

async fn sync_inner(
    global: &GlobalArgs,
    mode: &Mode,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Result<Exit, CommandError> {
    if let Mode::Run(
        args @ RunArgs {
            plan: Some(file), ..
        },
    ) = mode
    {
        return saved::run_plan(global, args, file, metrics, shutdown).await;
    }
    let (kube, vault) = connect(global, metrics).await?;
    let vault = vault.with_shutdown(shutdown.clone());
    let progress = Progress::detect(global.quiet);
    let mut scope = scope(global, mode)?;
    // prune reads no Secret: no access review for it.
    if !matches!(mode, Mode::Prune(_)) {
        scope.read_secrets =
            k8s::choose_secret_reads(&kube, scope.read_secrets, &scope.namespaces).await;
    }
    let engine = Engine {
        kube,
        vault,
        scope,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    if let Mode::Prune(args) = mode
        && args.rebuild_index
    {
        rebuild_index(&engine, args).await?;
    }
    let (mut prepared, pins) = match mode {
        Mode::Plan(PlanArgs { out: Some(_), .. }) => engine.prepare_pinned(&progress).await?,
        _ => (
            engine
                .prepare(&progress, matches!(mode, Mode::Run(_)))
                .await?,
            Default::default(),
        ),
    };
    if let Mode::Prune(_) = mode {
        // prune touches orphans only: show, log, count and apply nothing
        // else (a conflict is `run`'s to report).
        prepared.plan.changes.retain(|c| {
            matches!(
                c.action,
                Action::Delete { .. } | Action::Keep { .. } | Action::Refused { .. }
            )
        });
    }
    log_problems(&prepared.plan);
    let report = |prepared: &Prepared, applied: Option<&Applied>| {
        let errors: Vec<_> = prepared
            .run_errors()
            .into_iter()
            .chain(applied.iter().flat_map(|a| a.errors.iter().cloned()))
            .collect();
        if global.quiet && global.output == render::OutputFormat::Table {
            return;
        }
        render::emit(
            &Report {
                command: mode.name(),
                plan: &prepared.plan,
                errors: &errors,
                applied: applied.map(|a| &a.failures),
                show_unchanged: global.verbose > 0,
            },
            global.output,
        );
    };

    let applied = match mode {
        Mode::Plan(_) => None,
        Mode::Run(_) => Some(engine.apply(&mut prepared, &progress).await),
        Mode::Prune(args) => {
            let deletes = prepared.plan.summary().delete;
            if deletes > 0 && !args.yes && !confirm(&prepared, deletes, &report)? {
                render::print_stderr("Prune cancelled; nothing was deleted.");
                return Ok(Exit::Failure);
            }
            Some(engine.apply(&mut prepared, &progress).await)
        }
    };
    record_run(metrics, &prepared, applied.as_ref());
    report(&prepared, applied.as_ref());
    // An interrupted plan is incomplete: not saved for review.
    if let Mode::Plan(PlanArgs {
        out: Some(file), ..
    }) = mode
        && shutdown.requested().is_none()
    {
        saved::save(
            file,
            saved::header(global, &engine.scope)?,
            &prepared.plan,
            &pins,
        )?;
    }

    let failed = prepared.has_failures()
        || applied
            .as_ref()
            .is_some_and(|a| !a.failures.is_empty() || !a.errors.is_empty());
    Ok(match (failed, &applied, prepared.plan.has_changes()) {
        (true, _, _) => Exit::Failure,
        (false, None, true) => Exit::Changes,
        _ => Exit::Success,
    })
}

/// `--allow-path` rules, then those of `--allow-paths-file`.
pub(crate) fn path_rules(global: &GlobalArgs) -> Result<PathRules, CommandError> {
    let mut rules = global.allow_paths.clone();
    if let Some(file) = &global.allow_paths_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            CommandError::Config(format!(
                "cannot read the path rules file {}: {e}",
                file.display()
            ))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            rules.push(line.parse().map_err(|e| {
                CommandError::Config(format!("{}, line {}: {e}", file.display(), n + 1))
            })?);
        }
    }
    Ok(PathRules::new(rules))
}

/// The kinds asked for, each once, in a stable order.
fn unique(kinds: &[crate::core::workload::Kind]) -> Vec<crate::core::workload::Kind> {
    let set: std::collections::BTreeSet<_> = kinds.iter().copied().collect();
    set.into_iter().collect()
}

/// Shows the plan and asks on the terminal. Off a terminal, deleting needs
/// an explicit `--yes`, like `terraform apply -auto-approve`.
fn confirm(
    prepared: &Prepared,
    deletes: usize,
    report: &impl Fn(&Prepared, Option<&Applied>),
) -> Result<bool, CommandError> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::Config(format!(
            "prune would delete {deletes} paths; stdin is not a terminal, so pass --yes to confirm (review them first with `vault-sync plan`)"
        )));
    }
    report(prepared, None);
    render::print_stderr(&format!(
        "Delete {deletes} paths from Vault? Only 'yes' is accepted:"
    ));
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CommandError::Config(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == "yes")
}

async fn rebuild_index(
    engine: &Engine<k8s::Client, Vault>,
    args: &PruneArgs,
) -> Result<(), CommandError> {
    let Some(scan) = &args.scan else {
        return Ok(());
    };
    let found = engine.rebuild_index(scan).await?;
    let mut state = engine.read_index_for_rebuild().await?;
    let added = found
        .keys()
        .filter(|k| !state.index.contains_key(*k))
        .count();
    engine
        .update_index(&mut state, &found, &Default::default())
        .await?;
    tracing::info!(added, scan = scan.as_str(), "index rebuilt from metadata");
    Ok(())
}

/// One structured log line per problem, for log pipelines
/// (`--log-format json`): the table/JSON on stdout is for people and CI.
fn log_problems(plan: &Plan) {
    for c in &plan.changes {
        let (error_type, message, secret) = match &c.action {
            Action::Error { kind, detail } => (
                kind.label(),
                detail.message.as_str(),
                detail.secret.as_deref(),
            ),
            Action::Conflict { reason } => ("conflict", &**reason, None),
            Action::Refused { reason, kind } => {
                (kind.map_or("refused", ErrorKind::label), &**reason, None)
            }
            _ => continue,
        };
        tracing::error!(
            namespace = c.owner.namespace.as_str(),
            kind = c.owner.kind.as_str(),
            deployment = c.owner.name.as_str(),
            secret = secret.unwrap_or(""),
            path = &*c.path(),
            action = c.action.name(),
            error_type,
            "{message}"
        );
    }
}

/// The run's counts, from its outcome, in one place: per-Deployment
/// results, paths by action, errors by type, and the Vault writes and
/// deletes that failed. `errors` counts what the report lists: the plan's
/// paths in error, the run's own errors (listing, index, interruption) and
/// failed writes and deletes.
fn record_run(metrics: &Metrics, prepared: &Prepared, applied: Option<&Applied>) {
    let no_failures = BTreeMap::new();
    let run_errors = prepared.run_errors();
    record_outcome(
        metrics,
        &prepared.plan,
        applied.map_or(&no_failures, |a| &a.failures),
        run_errors
            .iter()
            .chain(applied.iter().flat_map(|a| a.errors.iter())),
    );
}

/// [`record_run`] from the parts of an outcome (also `run --plan`'s).
pub(crate) fn record_outcome<'a>(
    metrics: &Metrics,
    plan: &Plan,
    failures: &BTreeMap<usize, VaultError>,
    run_errors: impl Iterator<Item = &'a (ErrorKind, String)>,
) {
    // Each owner's worst result: error beats conflict beats success. Only
    // the owners that did not succeed are kept in a map; the plan holds
    // every owner already.
    let mut failed: BTreeMap<&Owner, &'static str> = BTreeMap::new();
    for (i, change) in plan.changes.iter().enumerate() {
        let failure = failures.get(&i);
        let result = match (&change.action, failure) {
            (_, Some(_)) | (Action::Error { .. }, _) => "error",
            (Action::Conflict { .. }, _) => "conflict",
            _ => continue,
        };
        let entry = failed.entry(&change.owner).or_insert(result);
        if result == "error" {
            *entry = result;
        }
    }
    for (i, change) in plan.changes.iter().enumerate() {
        let failure = failures.get(&i);
        let action = if failure.is_some() {
            "error"
        } else {
            change.action.name()
        };
        metrics.paths.with_label_values(&[action]).inc();
        match &change.action {
            Action::Error { kind, .. }
            | Action::Refused {
                kind: Some(kind), ..
            } => metrics.count_error(*kind),
            _ => {}
        }
        if let Some(e) = failure {
            metrics.count_error(e.kind());
            metrics.count_write_error(e.kind());
        }
        let result = failed.get(&change.owner).copied().unwrap_or("success");
        metrics.sync_attempts.set(&change.owner, result, 1);
    }
    for (kind, _) in run_errors {
        metrics.count_error(*kind);
    }
}

/// Pushes the run's metrics to its own Pushgateway group, and/or writes
/// them to `--metrics-file`.
///
/// The grouping key is `job="vault-sync"`, `cluster`, `command` (`run`,
/// `plan`, `prune`) and the `--push-label`s: each command of each cluster
/// has a group of its own, so a CI `plan --push-metrics` or a manual
/// `prune` never replaces what the CronJob's `run` pushed (and never
/// refreshes its last success). Prometheus' advice for batch jobs: one
/// group per job, replaced whole by each run, with the last success as a
/// timestamp.
///
/// A push replaces the group whole (`PUT`), so no series of an earlier run
/// survives. A run that did not succeed must not move the last success,
/// nor erase it: it reads the group's current value first and pushes it
/// back unchanged. When that read fails, it falls back to `POST`, which
/// replaces only the families sent and keeps the last success (and
/// possibly series of the previous run's families that this run has no
/// series of, e.g. a Deployment that is gone): a warning says so.
async fn publish_metrics(
    global: &GlobalArgs,
    command: &str,
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
    let encode = |last_success: Option<f64>| {
        let skip = match (succeeded, last_success) {
            (true, _) => None,
            (false, Some(v)) => {
                metrics.last_success_timestamp.set(v);
                None
            }
            (false, None) => Some(LAST_SUCCESS),
        };
        metrics
            .encode_without(skip)
            .map_err(|e| pushgateway::PushError(format!("encoding metrics failed: {e}")))
    };
    // The file and the push are independent outputs: one failing must not
    // cost the other, and each failure is reported.
    let file_result = match &global.metrics_file {
        Some(path) => {
            let previous = (!succeeded)
                .then(|| previous_file_gauge(path, LAST_SUCCESS))
                .flatten();
            encode(previous).and_then(|text| {
                write_metrics_file(path, &text).map_err(|e| {
                    pushgateway::PushError(format!(
                        "writing the metrics file {} failed: {e}",
                        path.display()
                    ))
                })
            })
        }
        None => Ok(()),
    };
    let Some(url) = &global.pushgateway_url else {
        return file_result;
    };
    let mut labels = vec![
        (
            "cluster".to_owned(),
            global
                .cluster_name
                .clone()
                .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned()),
        ),
        ("command".to_owned(), command.to_owned()),
    ];
    labels.extend(global.push_labels.iter().cloned());
    let (last_success, mode) = if succeeded {
        (None, pushgateway::Mode::Replace)
    } else {
        match pushgateway::read_gauge(url, JOB, &labels, LAST_SUCCESS, global.vault_timeout).await {
            Ok(previous) => (previous, pushgateway::Mode::Replace),
            Err(e) => {
                tracing::warn!(
                    "{e}; merging this failed run's metrics into the group instead of replacing it, so that its last success is kept"
                );
                (None, pushgateway::Mode::Merge)
            }
        }
    };
    let pushed = match encode(last_success) {
        Ok(text) => pushgateway::push(url, JOB, &labels, text, global.vault_timeout, mode).await,
        Err(e) => Err(e),
    };
    match (pushed, file_result) {
        (Err(push), Err(file)) => {
            // Only one error is returned; report the other here.
            tracing::warn!("{file}");
            Err(push)
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The Pushgateway job of every group.
const JOB: &str = "vault-sync";

/// An unlabelled sample of `family` in the metrics file a previous run
/// wrote, if any.
fn previous_file_gauge(path: &std::path::Path, family: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(family)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Atomic write (temp file + rename), as the textfile collector requires.
fn write_metrics_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
