//! The kinds of workload whose annotations vault-sync reads. Each carries
//! a pod template that references Secrets the same way; a CronJob's is
//! inside its `jobTemplate`.

use std::fmt;
use std::str::FromStr;

/// Serialized as the Kubernetes kind (`"StatefulSet"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

impl Kind {
    pub const ALL: [Self; 5] = [
        Self::Deployment,
        Self::StatefulSet,
        Self::DaemonSet,
        Self::Job,
        Self::CronJob,
    ];

    /// The Kubernetes kind, as `kubectl` and owner strings spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
        }
    }

    /// API group and resource, for RBAC and access reviews.
    pub fn resource(self) -> (&'static str, &'static str) {
        match self {
            Self::Deployment => ("apps", "deployments"),
            Self::StatefulSet => ("apps", "statefulsets"),
            Self::DaemonSet => ("apps", "daemonsets"),
            Self::Job => ("batch", "jobs"),
            Self::CronJob => ("batch", "cronjobs"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    /// The kind (`StatefulSet`) or its resource (`statefulsets`,
    /// `statefulset`), case-insensitive, as kubectl accepts them.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| {
                let resource = k.resource().1;
                lower == k.as_str().to_ascii_lowercase()
                    || lower == resource
                    || lower == resource.trim_end_matches('s')
            })
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a workload kind vault-sync reads; use one of {}",
                    Self::ALL.map(Kind::as_str).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_as_kubectl_spells_them() {
        for (s, k) in [
            ("Deployment", Kind::Deployment),
            ("deployments", Kind::Deployment),
            ("statefulset", Kind::StatefulSet),
            ("DaemonSets", Kind::DaemonSet),
            ("job", Kind::Job),
            ("cronjobs", Kind::CronJob),
        ] {
            assert_eq!(s.parse::<Kind>(), Ok(k), "{s}");
        }
        assert!("pods".parse::<Kind>().is_err());
        assert!("".parse::<Kind>().is_err());
    }
}
