//! vault-sync binary: parse the CLI, set up logging, run a command, exit.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use vault_sync::cli::Cli;
use vault_sync::commands::{self, Exit};
use vault_sync::render;

fn main() -> ExitCode {
    match real_main() {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            render::print_stderr(&format!("error: {e:#}"));
            ExitCode::from(Exit::Failure as u8)
        }
    }
}

fn real_main() -> anyhow::Result<Exit> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap exits 2 on a usage error, which `plan` uses for "changes
        // pending": a typo in a CI job must not read as drift.
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() {
                Exit::Failure
            } else {
                Exit::Success
            });
        }
    };
    // One crypto provider for kube, reqwest and vaultrs alike (see Cargo.toml).
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    vault_sync::telemetry::init(cli.global.log_format, cli.global.verbose, cli.global.quiet);

    let workers = worker_threads();
    tracing::debug!(workers, "tokio runtime");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(commands::execute(cli))?)
}

/// Worker threads sized from the CPU quota (cgroup v2 `cpu.max`), as the
/// operator sized GOMAXPROCS: a pod limited to 500m gets 1 worker, not one
/// per node core.
fn worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .ok()
        .and_then(|s| {
            let mut parts = s.split_whitespace();
            let quota: f64 = parts.next()?.parse().ok()?;
            let period: f64 = parts.next()?.parse().ok()?;
            Some((quota / period).ceil() as usize)
        });
    quota.map_or(cores, |q| q.clamp(1, cores))
}
