//! Ownership markers kept in KV v2 `custom_metadata`.
//!
//! vault-sync keeps no state of its own: the metadata of each path it wrote
//! says who owns it. That is how it refuses to overwrite secrets it does not
//! own and how it recognises its own orphans.

use std::collections::BTreeMap;
use std::fmt;

/// `managed-by` is the key External Secrets Operator uses too, so two tools
/// sharing a mount recognise each other's secrets.
pub const MANAGED_BY_KEY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "vault-sync";
/// The owner's cluster component of a run without `--cluster-name`; no
/// named cluster may take it (see `cli::parse_cluster_name`).
pub const DEFAULT_CLUSTER: &str = "default";
/// `<cluster>/<namespace>/<deployment>`.
pub const OWNER_KEY: &str = "vault-sync.io/owner";
/// Recorded at write time so it is honoured after the Deployment is gone.
pub const PRESERVE_KEY: &str = "vault-sync.io/preserve-on-delete";

/// The Deployment a path belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
}

impl Owner {
    pub fn new(
        cluster: impl Into<String>,
        namespace: impl Into<String>,
        deployment: impl Into<String>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            namespace: namespace.into(),
            deployment: deployment.into(),
        }
    }

    /// Parses `<cluster>/<namespace>/<deployment>`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '/');
        let (c, n, d) = (parts.next()?, parts.next()?, parts.next()?);
        if c.is_empty() || n.is_empty() || d.is_empty() || d.contains('/') {
            return None;
        }
        Some(Self::new(c, n, d))
    }

    /// `namespace/deployment`, as kubectl users read it.
    pub fn short(&self) -> String {
        format!("{}/{}", self.namespace, self.deployment)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.cluster, self.namespace, self.deployment)
    }
}

/// A KV v2 path's metadata, as read right before judging or deleting it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMetadata {
    pub custom_metadata: BTreeMap<String, String>,
    /// 0 when no version was ever written.
    pub current_version: u64,
    /// The current version is soft-deleted or destroyed.
    pub current_deleted: bool,
}

/// What a path's metadata says about who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// No `managed-by` marker: written by a person or another tool.
    Unowned,
    /// Managed by some other tool (`managed-by` names it).
    OtherManager(String),
    /// Marked by vault-sync, but the owner entry is missing or malformed.
    Malformed,
    /// Ours (possibly another cluster's or Deployment's).
    VaultSync {
        owner: Owner,
        preserve_on_delete: bool,
    },
}

pub fn read(custom_metadata: &BTreeMap<String, String>) -> Ownership {
    match custom_metadata.get(MANAGED_BY_KEY).map(String::as_str) {
        None => Ownership::Unowned,
        Some(MANAGED_BY_VALUE) => {
            match custom_metadata.get(OWNER_KEY).and_then(|o| Owner::parse(o)) {
                Some(owner) => Ownership::VaultSync {
                    owner,
                    preserve_on_delete: custom_metadata
                        .get(PRESERVE_KEY)
                        .is_some_and(|v| v == "true"),
                },
                None => Ownership::Malformed,
            }
        }
        Some(other) => Ownership::OtherManager(other.to_owned()),
    }
}

/// The metadata to write: the user's own keys kept, ours set.
pub fn stamp(
    existing: &BTreeMap<String, String>,
    owner: &Owner,
    preserve_on_delete: bool,
) -> BTreeMap<String, String> {
    let mut out = existing.clone();
    out.insert(MANAGED_BY_KEY.into(), MANAGED_BY_VALUE.into());
    out.insert(OWNER_KEY.into(), owner.to_string());
    out.insert(PRESERVE_KEY.into(), preserve_on_delete.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn stamp_then_read_round_trips_and_keeps_user_keys() {
        let owner = Owner::new("prod", "shop", "api");
        let stamped = stamp(&md(&[("team", "payments")]), &owner, true);
        assert_eq!(stamped.get("team").map(String::as_str), Some("payments"));
        assert_eq!(
            read(&stamped),
            Ownership::VaultSync {
                owner,
                preserve_on_delete: true
            }
        );
    }

    #[test]
    fn foreign_and_malformed() {
        assert_eq!(read(&md(&[])), Ownership::Unowned);
        assert_eq!(
            read(&md(&[("managed-by", "external-secrets")])),
            Ownership::OtherManager("external-secrets".into())
        );
        assert_eq!(
            read(&md(&[("managed-by", "vault-sync")])),
            Ownership::Malformed
        );
        assert_eq!(
            read(&md(&[
                ("managed-by", "vault-sync"),
                (OWNER_KEY, "just-one")
            ])),
            Ownership::Malformed
        );
    }

    #[test]
    fn owner_parse() {
        assert_eq!(Owner::parse("c/n/d"), Some(Owner::new("c", "n", "d")));
        assert_eq!(Owner::parse("c/n/d/e"), None);
        assert_eq!(Owner::parse("c//d"), None);
    }
}
