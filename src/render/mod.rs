//! Rendering: the only place that writes to stdout. It sees key names,
//! actions and messages, never a secret value.

pub mod json;
pub mod progress;
pub mod table;

use std::collections::BTreeMap;

use crate::core::error_kind::ErrorKind;
use crate::core::plan::Plan;
use crate::vault::VaultError;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// What a command produced, ready to render.
pub struct Report<'a> {
    pub command: &'static str,
    pub plan: &'a Plan,
    /// Run-wide errors: (`error_type`, message).
    pub errors: &'a [(ErrorKind, String)],
    /// `None` for a plan; for a run, the writes that failed by change index.
    pub applied: Option<&'a BTreeMap<usize, VaultError>>,
    /// Show unchanged paths too (`-v`).
    pub show_unchanged: bool,
}

pub fn emit(report: &Report<'_>, format: OutputFormat) {
    match format {
        OutputFormat::Table => print_stdout(&table::render(report, table::use_colour())),
        OutputFormat::Json => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            // Errors here are a closed pipe (`vault-sync plan -o json | head`).
            let _ = json::write(report, &mut out)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
        }
    }
}

/// `vault-sync check` as a ✓/✗ table with a fix per failure.
pub fn check_table(results: &[crate::commands::CheckResult]) -> String {
    use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
    let mut table = Table::new();
    table
        .load_style(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["", "CHECK", "DETAIL", "FIX"]);
    if !table::use_colour() {
        table.force_no_tty();
    }
    for r in results {
        table.add_row(vec![
            if r.ok { "✓" } else { "✗" }.to_owned(),
            table::printable(&r.name),
            table::printable(&r.detail),
            r.fix.clone().unwrap_or_default(),
        ]);
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    let verdict = if failed == 0 {
        "All checks passed.".to_owned()
    } else {
        format!("{failed} of {} checks failed.", results.len())
    };
    format!("{table}\n{verdict}\n")
}

/// Writes to stdout, ignoring a closed pipe (`vault-sync plan | head`).
#[allow(clippy::print_stdout)]
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes a line to stderr (prompts, fatal errors before logging is up).
#[allow(clippy::print_stderr)]
pub fn print_stderr(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}
