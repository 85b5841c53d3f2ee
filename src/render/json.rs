//! `--output json`: a stable, documented schema (see README, "JSON output").
//! Bump `format_version` on any incompatible change.
//!
//! The document is serialized straight from the plan to the writer, never
//! built as a `serde_json::Value` first: for a run over tens of thousands of
//! paths that tree was the largest allocation of the whole run. Keys are
//! written in alphabetical order, as the earlier `Value`-based output had.

use std::borrow::Cow;
use std::io;

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use super::Report;
use crate::core::error_kind::ErrorKind;
use crate::core::name::Name;
use crate::core::ownership::Owner;
use crate::core::plan::{Action, Change};

pub const FORMAT_VERSION: u32 = 1;

/// Writes the report as pretty-printed JSON.
pub fn write(report: &Report<'_>, out: impl io::Write) -> serde_json::Result<()> {
    let plan = report.plan;
    let document = Document {
        changes: Changes(report),
        changes_pending: report.applied.is_none() && plan.has_changes(),
        command: report.command,
        errors: report
            .errors
            .iter()
            .map(|(kind, message)| RunError {
                error_type: kind.label(),
                fix: kind.fix(),
                message,
            })
            .collect(),
        format_version: FORMAT_VERSION,
        notes: plan
            .notes
            .iter()
            .map(|n| NoteOut {
                deployment: &n.owner.name,
                kind: n.owner.kind.as_str(),
                message: &n.message,
                namespace: &n.owner.namespace,
                workload: &n.owner.name,
            })
            .collect(),
        // Through a `Value` (a small, sorted map) to keep its key order.
        summary: serde_json::to_value(plan.summary())?,
    };
    document.serialize(&mut serde_json::Serializer::pretty(out))
}

#[derive(Serialize)]
struct Document<'a> {
    changes: Changes<'a>,
    changes_pending: bool,
    command: &'a str,
    errors: Vec<RunError<'a>>,
    format_version: u32,
    notes: Vec<NoteOut<'a>>,
    summary: serde_json::Value,
}

#[derive(Serialize)]
struct RunError<'a> {
    error_type: &'a str,
    /// The general remedy for `error_type` ([`ErrorKind::fix`]).
    fix: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct NoteOut<'a> {
    /// The workload's name, whatever its kind (kept from when only
    /// Deployments were read; `workload` says the same).
    deployment: &'a str,
    kind: &'static str,
    message: &'a str,
    namespace: &'a str,
    workload: &'a str,
}

/// The changes, serialized one at a time.
struct Changes<'a>(&'a Report<'a>);

impl Serialize for Changes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let report = self.0;
        let mut seq = serializer.serialize_seq(Some(report.plan.changes.len()))?;
        for (i, change) in report.plan.changes.iter().enumerate() {
            seq.serialize_element(&change_out(report, i, change))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Keys<'a> {
    added: &'a [Name],
    changed: &'a [Name],
    removed: &'a [Name],
}

/// One change; absent fields are left out, as the schema documents.
#[derive(Serialize)]
struct ChangeOut<'a> {
    action: &'static str,
    cluster: &'a str,
    deployment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    destroy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'static str>,
    /// The general remedy for `error_type` ([`ErrorKind::fix`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Keys<'a>>,
    /// The owning workload's kind (`Deployment`, `StatefulSet`, ...).
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kv_version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount: Option<&'a str>,
    namespace: &'a str,
    path: Cow<'a, str>,
    /// A takeover: the owner (`namespace/deployment`) that is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    /// The owning workload's name (`deployment` says the same, kept from
    /// when only Deployments were read).
    workload: &'a str,
}

impl ChangeOut<'_> {
    fn set_error(&mut self, kind: ErrorKind) {
        self.error_type = Some(kind.label());
        self.fix = Some(kind.fix());
    }
}

fn change_out<'a>(report: &'a Report<'a>, i: usize, c: &'a Change) -> ChangeOut<'a> {
    let mut out = ChangeOut {
        action: c.action.name(),
        cluster: &c.owner.cluster,
        deployment: &c.owner.name,
        destroy: None,
        error_type: None,
        fix: None,
        keys: None,
        kind: c.owner.kind.as_str(),
        kv_version: c.location().map(|l| l.version.as_u8()),
        message: None,
        metadata_only: None,
        mount: c.location().map(|l| l.mount.as_str()),
        namespace: &c.owner.namespace,
        path: c.path(),
        previous_owner: None,
        reason: None,
        result: None,
        secret: None,
        workload: &c.owner.name,
    };
    match &c.action {
        Action::Create { keys } => {
            out.keys = Some(Keys {
                added: keys,
                changed: &[],
                removed: &[],
            });
        }
        Action::Update {
            keys,
            metadata_only,
            previous_owner,
        } => {
            out.keys = Some(Keys {
                added: &keys.added,
                changed: &keys.changed,
                removed: &keys.removed,
            });
            out.metadata_only = Some(*metadata_only);
            out.previous_owner = previous_owner.as_ref().map(Owner::short);
        }
        Action::Unchanged => {}
        Action::Conflict { reason } | Action::Keep { reason } => {
            out.reason = Some(reason);
        }
        Action::Refused { reason, kind } => {
            out.reason = Some(reason);
            if let Some(kind) = kind {
                out.set_error(*kind);
            }
        }
        Action::Delete {
            reason, destroy, ..
        } => {
            out.reason = Some(reason);
            out.destroy = Some(*destroy);
        }
        Action::Error { kind, detail } => {
            out.set_error(*kind);
            out.message = Some(Cow::Borrowed(&detail.message));
            out.secret = detail.secret.as_deref();
        }
    }
    if let Some(applied) = report.applied
        && (c.writes() || matches!(c.action, Action::Delete { .. }))
    {
        match applied.get(&i) {
            None => out.result = Some("applied"),
            Some(e) => {
                // `run --plan`: not applied because it moved since the plan.
                out.result = Some(if e.kind() == ErrorKind::Stale {
                    "stale"
                } else {
                    "failed"
                });
                out.set_error(e.kind());
                out.message = Some(Cow::Owned(e.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::core::plan::{Plan, Target};

    fn document(plan: &Plan, errors: &[(ErrorKind, String)]) -> Value {
        let report = Report {
            command: "plan",
            plan,
            errors,
            applied: None,
            show_unchanged: false,
        };
        let mut bytes = Vec::new();
        write(&report, &mut bytes).expect("serializes");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    /// Every `error_type`, on a change or run-wide, comes with its kind's
    /// remedy; a change without an error has neither.
    #[test]
    fn every_error_type_carries_its_fix() {
        let error = |kind: ErrorKind| Change {
            target: Target::Unresolved(format!("secret/{kind}").into()),
            owner: Owner::new("c", "ns", "app"),
            action: Action::error(kind, "what happened", None),
            write: None,
            write_released: false,
            preserve_on_delete: false,
        };
        let plan = Plan {
            changes: vec![
                error(ErrorKind::SecretKeyMissing),
                Change {
                    action: Action::Unchanged,
                    ..error(ErrorKind::Unknown)
                },
            ],
            notes: Vec::new(),
        };
        let doc = document(&plan, &[(ErrorKind::IndexMissing, "no index".into())]);
        let changes = doc["changes"].as_array().expect("changes");
        assert_eq!(changes[0]["error_type"], "secret_key_missing");
        assert_eq!(changes[0]["fix"], ErrorKind::SecretKeyMissing.fix());
        assert!(changes[1].get("fix").is_none() && changes[1].get("error_type").is_none());
        assert_eq!(doc["errors"][0]["error_type"], "index_missing");
        assert_eq!(doc["errors"][0]["fix"], ErrorKind::IndexMissing.fix());
    }
}
