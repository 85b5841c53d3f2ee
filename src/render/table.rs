//! Terraform-style human output: a table of changes and a summary line.

use std::fmt::Write as _;
use std::io::IsTerminal;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use super::Report;
use crate::core::error_kind::ErrorKind;
use crate::core::name::Name;
use crate::core::plan::{Action, KeyChanges};

/// Colour only on a terminal, and never with `NO_COLOR` set.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn symbol(action: &Action) -> (&'static str, Color) {
    match action {
        Action::Create { .. } => ("+", Color::Green),
        Action::Update { .. } => ("~", Color::Yellow),
        Action::Unchanged => ("=", Color::DarkGrey),
        Action::Conflict { .. } | Action::Error { .. } | Action::Refused { .. } => {
            ("!", Color::Red)
        }
        Action::Delete { .. } => ("-", Color::Red),
        Action::Keep { .. } => ("=", Color::Cyan),
    }
}

fn detail(action: &Action) -> String {
    match action {
        Action::Create { keys } => format!("keys: {}", list(keys)),
        Action::Update {
            keys,
            metadata_only,
            previous_owner,
        } => {
            let KeyChanges {
                added,
                changed,
                removed,
            } = &**keys;
            if *metadata_only {
                return "ownership metadata only".into();
            }
            let mut parts = Vec::new();
            if let Some(previous) = previous_owner {
                parts.push(format!("owner {} is gone: taken over", previous.describe()));
            }
            if !added.is_empty() {
                parts.push(format!("+ {}", list(added)));
            }
            if !changed.is_empty() {
                parts.push(format!("~ {}", list(changed)));
            }
            if !removed.is_empty() {
                parts.push(format!("- {}", list(removed)));
            }
            parts.join("  ")
        }
        Action::Unchanged => String::new(),
        Action::Error { detail, .. } => detail.message.clone(),
        Action::Delete { reason, .. }
        | Action::Conflict { reason }
        | Action::Keep { reason }
        | Action::Refused { reason, .. } => reason.to_string(),
    }
}

/// Escapes control characters: paths and messages can quote annotation
/// text, which anyone who can edit a Deployment controls, and must not
/// reach an operator's terminal as escape sequences.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn list(keys: &[Name]) -> String {
    if keys.is_empty() {
        "(none)".into()
    } else {
        keys.join(", ")
    }
}

/// Rows shown besides errors, conflicts, refusals and failures.
const MAX_ORDINARY_ROWS: usize = 1000;

pub fn render(report: &Report<'_>, colour: bool) -> String {
    let plan = report.plan;
    let mut table = Table::new();
    table
        .load_style(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["", "PATH", "WORKLOAD", "ACTION", "DETAIL"]);
    if !colour {
        table.force_no_tty();
    } else {
        table.enforce_styling();
    }
    if !std::io::stdout().is_terminal() {
        // No terminal to measure (CI, CronJob logs, pipes): wrap long
        // details at a readable width instead of printing 300-column rows.
        table.set_width(
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(160),
        );
    }
    let mut rows = 0;
    let mut ordinary = 0;
    let mut hidden = 0;
    for (i, change) in plan.changes.iter().enumerate() {
        if change.action == Action::Unchanged && !report.show_unchanged {
            continue;
        }
        let failed = report.applied.and_then(|a| a.get(&i));
        // Rows that need someone's attention are always shown; the others
        // are bounded, since a table holds every cell in memory until it
        // is printed (100,000 creates would cost more than the run).
        let attention = failed.is_some()
            || matches!(
                change.action,
                Action::Error { .. } | Action::Conflict { .. } | Action::Refused { .. }
            );
        if !attention {
            if ordinary == MAX_ORDINARY_ROWS {
                hidden += 1;
                continue;
            }
            ordinary += 1;
        }
        let (sym, color) = symbol(&change.action);
        let (action, detail) = match failed {
            Some(e) if e.kind() == ErrorKind::Stale => {
                (format!("{} STALE", change.action.name()), e.to_string())
            }
            Some(e) => (format!("{} FAILED", change.action.name()), e.to_string()),
            None => (change.action.name().to_owned(), detail(&change.action)),
        };
        let sym_cell = if colour {
            Cell::new(sym).fg(if failed.is_some() { Color::Red } else { color })
        } else {
            Cell::new(sym)
        };
        table.add_row(vec![
            sym_cell,
            Cell::new(printable(&change.path())),
            Cell::new(printable(&change.owner.describe())),
            Cell::new(action),
            Cell::new(printable(&detail)),
        ]);
        rows += 1;
    }

    let mut out = String::new();
    if rows > 0 {
        let _ = writeln!(out, "{table}");
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "... and {hidden} more changes not shown (the summary below counts them; -o json lists every change)."
        );
    }
    for (_, message) in report.errors {
        let _ = writeln!(out, "! {}", printable(message));
    }
    for note in &plan.notes {
        let _ = writeln!(
            out,
            "note: {}: {}",
            note.owner.short(),
            printable(&note.message)
        );
    }
    let s = plan.summary();
    match report.applied {
        None => {
            let _ = writeln!(
                out,
                "Plan: {} to create, {} to update, {} to delete, {} unchanged, {} kept, {} conflicts, {} refused, {} errors.",
                s.create, s.update, s.delete, s.unchanged, s.kept, s.conflict, s.refused, s.error
            );
            if !plan.has_changes() && !plan.has_failures() && report.errors.is_empty() {
                let _ = writeln!(out, "No changes. Vault matches the Deployments.");
            }
        }
        Some(failed) => {
            let _ = writeln!(
                out,
                "{}: {} created, {} updated, {} deleted, {} unchanged, {} kept, {} conflicts, {} refused, {} errors, {} failed.",
                if report.command == "prune" {
                    "Prune"
                } else {
                    "Apply"
                },
                s.create - count_failed(report, |a| matches!(a, Action::Create { .. })),
                s.update - count_failed(report, |a| matches!(a, Action::Update { .. })),
                s.delete - count_failed(report, |a| matches!(a, Action::Delete { .. })),
                s.unchanged,
                s.kept,
                s.conflict,
                s.refused,
                s.error,
                failed.len()
            );
        }
    }
    out
}

fn count_failed(report: &Report<'_>, pred: impl Fn(&Action) -> bool) -> usize {
    report
        .applied
        .map(|a| {
            a.keys()
                .filter(|i| pred(&report.plan.changes[**i].action))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ownership::Owner;
    use crate::core::plan::{Change, Plan, Target};

    fn change(i: usize, action: Action) -> Change {
        Change {
            target: Target::Unresolved(format!("secret/app-{i:05}").into()),
            owner: Owner::new("default", "shop", format!("app-{i:05}")),
            action,
            write: None,
            write_released: false,
            preserve_on_delete: false,
        }
    }

    #[test]
    fn a_long_table_is_bounded_but_every_error_is_shown() {
        let extra = 5;
        let mut changes: Vec<Change> = (0..MAX_ORDINARY_ROWS + extra)
            .map(|i| {
                change(
                    i,
                    Action::Create {
                        keys: ["K".into()].into(),
                    },
                )
            })
            .collect();
        changes.push(change(
            MAX_ORDINARY_ROWS + extra,
            Action::Conflict {
                reason: "owned by someone else".into(),
            },
        ));
        let plan = Plan {
            changes,
            notes: Vec::new(),
        };
        let report = Report {
            command: "plan",
            plan: &plan,
            errors: &[],
            applied: None,
            show_unchanged: false,
        };
        let out = render(&report, false);
        assert!(out.contains("app-00000"));
        assert!(!out.contains(&format!("app-{:05}", MAX_ORDINARY_ROWS)));
        assert!(out.contains(&format!("app-{:05}", MAX_ORDINARY_ROWS + extra)));
        assert!(out.contains(&format!("... and {extra} more changes not shown")));
        assert!(out.contains(&format!("Plan: {} to create", MAX_ORDINARY_ROWS + extra)));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("secret/app"), "secret/app");
        assert_eq!(printable("a\u{1b}[31mb\0"), "a\\u{1b}[31mb\\u{0}");
    }
}
