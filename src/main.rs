//! vault-sync binary: parse the CLI, set up logging, run a command, exit.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use vault_sync::cli::{Cli, LogFormat};
use vault_sync::commands::{self, Exit};
use vault_sync::render;

fn main() -> ExitCode {
    fix_malloc_threshold();
    match real_main() {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            render::print_stderr(&format!("error: {e:#}"));
            ExitCode::from(Exit::Failure as u8)
        }
    }
}

/// glibc's malloc serves blocks above a threshold (128 KiB) with their
/// own mappings, returned to the system when freed, but it raises that
/// threshold to the size of each such block freed, up to 32 MiB. A large
/// run frees one early (the index's reply, about 15 MB at 100,000 paths),
/// and from then on every block below that size came from the heap and
/// stayed in the process once freed: 2 MiB of a 100,000-path no-op's peak
/// of 64. Setting the threshold keeps it where it started. A threshold
/// set in the environment (`MALLOC_MMAP_THRESHOLD_`, `GLIBC_TUNABLES`) is
/// left to win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_malloc_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"))
    {
        return;
    }
    // SAFETY: mallopt only sets a parameter of the allocator, under its
    // own lock, and takes no pointers; this runs before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_malloc_threshold() {}

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

    // One thread: vault-sync waits on the network, and one thread keeps
    // every request of --concurrency in flight. A multi-thread runtime
    // measured the same wall time at 20,000 paths and cost futex wake-ups:
    // at 2,000 paths it used 0.44 CPU-seconds against 0.26, CPU that the
    // API server and Vault need when they share the machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let log_format = cli.global.log_format;
    match runtime.block_on(commands::execute(cli)) {
        Ok(exit) => Ok(exit),
        // A log pipeline reads one JSON object per line: the failure that
        // stopped the command is one too, with its error type and remedy.
        Err(e) if log_format == LogFormat::Json => {
            tracing::error!(error_type = e.kind().label(), fix = e.kind().fix(), "{e}");
            Ok(Exit::Failure)
        }
        Err(e) => Err(e.into()),
    }
}
