//! Writes the man pages of vault-sync, one per command (`vault-sync.1`,
//! `vault-sync-plan.1`, ...), from the same clap definition the binary
//! parses with. `tests/release.sh` runs it for the release tarball:
//!
//! ```text
//! cargo run --locked --example manpages -- OUT_DIR
//! ```
//!
//! An example, not a subcommand: `clap_mangen` is a dev-dependency, so the
//! shipped binary neither links it nor grows.

// A command-line tool of its own: it reports on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory as _;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: manpages OUT_DIR");
        return ExitCode::from(1);
    };
    let out = PathBuf::from(out);
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("manpages: {}: {e}", out.display());
        return ExitCode::from(1);
    }
    // The help subcommand is left out (clap_mangen disables it); every
    // other command gets its page.
    if let Err(e) = clap_mangen::generate_to(vault_sync::cli::Cli::command(), &out) {
        eprintln!("manpages: writing to {}: {e}", out.display());
        return ExitCode::from(1);
    }
    let mut pages: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    pages.sort();
    for page in pages {
        println!("{}", out.join(page).display());
    }
    ExitCode::SUCCESS
}
