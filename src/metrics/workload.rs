//! Gauge families with one series per workload.
//!
//! The prometheus crate's vectors keep, for every series, its own copy of
//! the family's descriptor and of each label: about 400 bytes a series. A
//! run over 50,000 Deployments has two such families, 100,000 series, and
//! that alone was more memory than the rest of a no-op run. Here a series
//! is the owner's names (shared with the plan, see [`Name`]) and a number,
//! encoded straight to the text format when the run's metrics are pushed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::core::ownership::{Name, Owner};

/// One gauge family labelled `namespace`, `deployment` (the workload's
/// name, whatever its kind) and optionally one label of a closed set.
pub struct WorkloadGauge {
    name: &'static str,
    help: &'static str,
    /// The third label's name (`result`), if the family has one.
    extra: Option<&'static str>,
    series: Mutex<BTreeMap<(Name, Name, &'static str), i64>>,
}

impl WorkloadGauge {
    pub fn new(name: &'static str, help: &'static str, extra: Option<&'static str>) -> Self {
        Self {
            name,
            help,
            extra,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Sets the series of `owner` (`extra` is the third label's value, or
    /// empty for a family without one).
    pub fn set(&self, owner: &Owner, extra: &'static str, value: i64) {
        debug_assert_eq!(self.extra.is_some(), !extra.is_empty(), "{}", self.name);
        self.lock()
            .insert((owner.namespace.clone(), owner.name.clone(), extra), value);
    }

    /// Appends the family in the text exposition format (nothing when it
    /// has no series, as the crate's encoder does).
    pub fn encode(&self, out: &mut String) {
        let series = self.lock();
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for ((namespace, workload, extra), value) in series.iter() {
            // Label names in alphabetical order, as the crate writes them.
            let _ = write!(
                out,
                "{}{{deployment=\"{}\",namespace=\"{}\"",
                self.name,
                escape_value(workload),
                escape_value(namespace)
            );
            if let Some(label) = self.extra {
                let _ = write!(out, ",{label}=\"{}\"", escape_value(extra));
            }
            let _ = writeln!(out, "}} {value}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Name, Name, &'static str), i64>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The text format's escaping of a label value: `\`, `"` and newlines.
fn escape_value(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return s.into();
    }
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// The text format's escaping of HELP text: `\` and newlines.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_crate_in_label_order() {
        let g = WorkloadGauge::new("vault_sync_x", "Help \\ text.", Some("result"));
        g.set(&Owner::new("c", "ns", "b"), "error", 1);
        g.set(&Owner::new("c", "ns", "a"), "success", 1);
        g.set(&Owner::new("c", "ns", "q\"uote"), "success", 2);
        let mut out = String::new();
        g.encode(&mut out);
        assert_eq!(
            out,
            "# HELP vault_sync_x Help \\\\ text.\n\
             # TYPE vault_sync_x gauge\n\
             vault_sync_x{deployment=\"a\",namespace=\"ns\",result=\"success\"} 1\n\
             vault_sync_x{deployment=\"b\",namespace=\"ns\",result=\"error\"} 1\n\
             vault_sync_x{deployment=\"q\\\"uote\",namespace=\"ns\",result=\"success\"} 2\n"
        );
    }

    #[test]
    fn an_empty_family_is_left_out() {
        let g = WorkloadGauge::new("vault_sync_x", "Help.", None);
        let mut out = String::new();
        g.encode(&mut out);
        assert!(out.is_empty());
        g.set(&Owner::new("c", "ns", "a"), "", 3);
        g.encode(&mut out);
        assert!(
            out.ends_with("vault_sync_x{deployment=\"a\",namespace=\"ns\"} 3\n"),
            "{out}"
        );
    }
}
