//! Gauge families with one series per workload.
//!
//! The prometheus crate's vectors keep, for every series, its own copy of
//! the family's descriptor and of each label: about 400 bytes a series. A
//! run over 50,000 Deployments has two such families, 100,000 series, and
//! that alone was more memory than the rest of a no-op run. Here a series
//! is a handle to the owner (shared with the plan, see [`Owner`]) and a
//! number, encoded straight to the text format when the run's metrics are
//! pushed.

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::core::ownership::Owner;

/// One gauge family labelled `namespace`, `deployment` (the workload's
/// name, whatever its kind) and optionally one label of a closed set.
pub struct WorkloadGauge {
    name: &'static str,
    help: &'static str,
    /// The third label's name (`result`), if the family has one.
    extra: Option<&'static str>,
    /// In the order set, sorted (the last value of each series kept) when
    /// encoded: a list, not a map, costs 32 bytes a series, half of a
    /// map's nodes, and a run sets each workload's series once.
    series: Mutex<Vec<(Series, i64)>>,
}

/// One series' labels: the owner's namespace and name, and the third
/// label's value. Ordered and compared by those labels alone, so workloads
/// of two kinds with one name share a series, as their labels do.
struct Series {
    owner: Owner,
    extra: &'static str,
}

impl Series {
    fn labels(&self) -> (&str, &str, &str) {
        (&self.owner.namespace, &self.owner.name, self.extra)
    }
}

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.labels() == other.labels()
    }
}

impl Eq for Series {}

impl PartialOrd for Series {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Series {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.labels().cmp(&other.labels())
    }
}

impl WorkloadGauge {
    pub fn new(name: &'static str, help: &'static str, extra: Option<&'static str>) -> Self {
        Self {
            name,
            help,
            extra,
            series: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Sets the series of `owner` (`extra` is the third label's value, or
    /// empty for a family without one).
    pub fn set(&self, owner: &Owner, extra: &'static str, value: i64) {
        debug_assert_eq!(self.extra.is_some(), !extra.is_empty(), "{}", self.name);
        let series = Series {
            owner: owner.clone(),
            extra,
        };
        let mut all = self.lock();
        // A workload's rows are mostly next to each other: set again, its
        // series is replaced rather than listed twice.
        match all.last_mut() {
            Some((last, v)) if *last == series => *v = value,
            _ => all.push((series, value)),
        }
    }

    /// The length of [`WorkloadGauge::encode`]'s text, or a little more
    /// (a series set twice is counted twice; nothing is sorted here).
    pub fn encoded_len(&self) -> usize {
        let series = self.lock();
        if series.is_empty() {
            return 0;
        }
        let header = 2 * self.name.len() + self.help.len() + 32;
        // Name, the three labels' names and quotes, and a value of up to
        // 20 digits; escaping may lengthen a label a little more.
        let fixed = self.name.len() + self.extra.map_or(0, str::len) + 64;
        header
            + series
                .iter()
                .map(|(s, _)| {
                    let (namespace, workload, extra) = s.labels();
                    fixed + namespace.len() + workload.len() + extra.len()
                })
                .sum::<usize>()
    }

    /// Appends the family in the text exposition format (nothing when it
    /// has no series, as the crate's encoder does).
    pub fn encode(&self, out: &mut String) {
        let series = self.sorted();
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in series.iter() {
            let (namespace, workload, extra) = labels.labels();
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

    /// The series in label order, one per labels (the value set last).
    fn sorted(&self) -> std::sync::MutexGuard<'_, Vec<(Series, i64)>> {
        let mut all = self.lock();
        // Stable: of equal labels, the value set last comes last.
        all.sort_by(|(a, _), (b, _)| a.cmp(b));
        all.dedup_by(|(later, value), (kept, kept_value)| {
            let same = later == kept;
            if same {
                *kept_value = *value;
            }
            same
        });
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Series, i64)>> {
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
        assert!(g.encoded_len() >= out.len());
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
    fn a_series_set_again_keeps_its_last_value() {
        let g = WorkloadGauge::new("vault_sync_x", "Help.", None);
        g.set(&Owner::new("c", "ns", "a"), "", 1);
        g.set(&Owner::new("c", "ns", "b"), "", 2);
        g.set(&Owner::new("c", "ns", "a"), "", 3);
        let mut out = String::new();
        g.encode(&mut out);
        assert_eq!(
            out,
            "# HELP vault_sync_x Help.\n\
             # TYPE vault_sync_x gauge\n\
             vault_sync_x{deployment=\"a\",namespace=\"ns\"} 3\n\
             vault_sync_x{deployment=\"b\",namespace=\"ns\"} 2\n"
        );
    }

    #[test]
    fn two_kinds_with_one_name_share_their_series() {
        use crate::core::workload::Kind;
        let g = WorkloadGauge::new("vault_sync_x", "Help.", None);
        g.set(&Owner::new("c", "ns", "web"), "", 1);
        g.set(&Owner::of(Kind::StatefulSet, "c", "ns", "web"), "", 2);
        let mut out = String::new();
        g.encode(&mut out);
        assert_eq!(out.matches("vault_sync_x{").count(), 1, "{out}");
        assert!(out.ends_with("vault_sync_x{deployment=\"web\",namespace=\"ns\"} 2\n"));
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
