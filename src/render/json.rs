//! `--output json`: a stable, documented schema (see README, "JSON output").
//! Bump `format_version` on any incompatible change.

use serde_json::{Value, json};

use super::Report;
use crate::core::plan::Action;

pub const FORMAT_VERSION: u32 = 1;

pub fn render(report: &Report<'_>) -> Value {
    let plan = report.plan;
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = json!({
                "action": c.action.name(),
                "path": c.path,
                "cluster": c.owner.cluster,
                "namespace": c.owner.namespace,
                "deployment": c.owner.deployment,
            });
            if let Some(loc) = &c.location {
                v["mount"] = json!(loc.mount);
                v["kv_version"] = json!(loc.version.as_u8());
            }
            match &c.action {
                Action::Create { keys } => {
                    v["keys"] = json!({ "added": keys, "changed": [], "removed": [] })
                }
                Action::Update {
                    added,
                    changed,
                    removed,
                    metadata_only,
                } => {
                    v["keys"] = json!({ "added": added, "changed": changed, "removed": removed });
                    v["metadata_only"] = json!(metadata_only);
                }
                Action::Unchanged => {}
                Action::Conflict { reason }
                | Action::Keep { reason }
                | Action::Refused { reason } => v["reason"] = json!(reason),
                Action::Delete { reason, destroy } => {
                    v["reason"] = json!(reason);
                    v["destroy"] = json!(destroy);
                }
                Action::Error {
                    kind,
                    message,
                    secret,
                } => {
                    v["error_type"] = json!(kind);
                    v["message"] = json!(message);
                    if let Some(s) = secret {
                        v["secret"] = json!(s);
                    }
                }
            }
            if let Some(applied) = report.applied
                && (c.write.is_some() || matches!(c.action, Action::Delete { .. }))
            {
                match applied.get(&i) {
                    None => v["result"] = json!("applied"),
                    Some(e) => {
                        v["result"] = json!("failed");
                        v["error_type"] = json!(e.metric_label());
                        v["message"] = json!(e.to_string());
                    }
                }
            }
            v
        })
        .collect();
    json!({
        "format_version": FORMAT_VERSION,
        "command": report.command,
        "summary": plan.summary(),
        "changes_pending": report.applied.is_none() && plan.has_changes(),
        "changes": changes,
        "notes": plan.notes.iter().map(|n| json!({
            "namespace": n.owner.namespace,
            "deployment": n.owner.deployment,
            "message": n.message,
        })).collect::<Vec<_>>(),
        "errors": report.errors.iter().map(|(kind, message)| json!({
            "error_type": kind,
            "message": message,
        })).collect::<Vec<_>>(),
    })
}
