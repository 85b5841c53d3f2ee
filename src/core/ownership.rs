//! Ownership markers kept in KV v2 `custom_metadata`.
//!
//! vault-sync keeps no state of its own: the metadata of each path it wrote
//! says who owns it. That is how it refuses to overwrite secrets it does not
//! own and how it recognises its own orphans.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

pub use super::name::{Name, NamePool};
use super::workload::Kind;

/// `managed-by` is the key External Secrets Operator uses too, so two tools
/// sharing a mount recognise each other's secrets.
pub const MANAGED_BY_KEY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "vault-sync";
/// The owner's cluster component of a run without `--cluster-name`; no
/// named cluster may take it (see `cli::parse_cluster_name`).
pub const DEFAULT_CLUSTER: &str = "default";
/// `<cluster>/<namespace>/<name>` for a Deployment,
/// `<cluster>/<namespace>/<Kind>/<name>` for other kinds.
pub const OWNER_KEY: &str = "vault-sync.io/owner";
/// Recorded at write time so it is honoured after the Deployment is gone.
pub const PRESERVE_KEY: &str = "vault-sync.io/preserve-on-delete";

/// The workload a path belongs to: a shared handle to its [`OwnerParts`],
/// read through `Deref` (`owner.name`). Cloning one bumps a count: a run
/// keeps an owner on every path it plans and on every index entry, and
/// those point at one copy per workload (8 bytes a row, not 56).
#[derive(Clone)]
pub struct Owner(Arc<OwnerParts>);

/// What names an owner.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerParts {
    pub cluster: Name,
    pub namespace: Name,
    pub kind: Kind,
    pub name: Name,
}

impl Deref for Owner {
    type Target = OwnerParts;
    fn deref(&self) -> &OwnerParts {
        &self.0
    }
}

impl std::borrow::Borrow<OwnerParts> for Owner {
    fn borrow(&self) -> &OwnerParts {
        &self.0
    }
}

impl PartialEq for Owner {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Owner {}

impl PartialOrd for Owner {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Owner {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl Hash for Owner {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Owners seen so far, to share one copy of each (and of their names):
/// the entries an index holds for one workload, or the owners of a
/// listing.
#[derive(Debug, Default)]
pub struct OwnerPool {
    owners: HashSet<Owner>,
    names: NamePool,
}

impl OwnerPool {
    pub fn intern(&mut self, owner: Owner) -> Owner {
        if let Some(seen) = self.owners.get(&*owner) {
            return seen.clone();
        }
        let owner = Owner::of(
            owner.kind,
            self.names.intern(owner.cluster.clone()),
            self.names.intern(owner.namespace.clone()),
            self.names.intern(owner.name.clone()),
        );
        self.owners.insert(owner.clone());
        owner
    }

    /// Any other name held as often (a mount), shared the same way.
    pub fn name(&mut self, name: Name) -> Name {
        self.names.intern(name)
    }
}

impl Owner {
    /// A Deployment (the first kind, and the one most tests speak of).
    pub fn new(
        cluster: impl Into<Name>,
        namespace: impl Into<Name>,
        deployment: impl Into<Name>,
    ) -> Self {
        Self::of(Kind::Deployment, cluster, namespace, deployment)
    }

    pub fn of(
        kind: Kind,
        cluster: impl Into<Name>,
        namespace: impl Into<Name>,
        name: impl Into<Name>,
    ) -> Self {
        Self(Arc::new(OwnerParts {
            cluster: cluster.into(),
            namespace: namespace.into(),
            kind,
            name: name.into(),
        }))
    }

    /// Parses `<cluster>/<namespace>/<name>` (a Deployment: what every
    /// marker said before other kinds were read, so those keep working
    /// with no migration) or `<cluster>/<namespace>/<Kind>/<name>`. No part
    /// can hold a `/` (they are DNS names), so the two cannot be confused.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let (c, n, kind, d) = match parts[..] {
            [c, n, d] => (c, n, Kind::Deployment, d),
            [c, n, k, d] => {
                let kind = Kind::ALL.into_iter().find(|kind| kind.as_str() == k)?;
                // One spelling per owner: a Deployment has no kind part.
                if kind == Kind::Deployment {
                    return None;
                }
                (c, n, kind, d)
            }
            _ => return None,
        };
        if c.is_empty() || n.is_empty() || d.is_empty() {
            return None;
        }
        Some(Self::of(kind, c, n, d))
    }

    /// `namespace/name`, as kubectl users read it.
    pub fn short(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `StatefulSet shop/db`: for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.short())
    }

    /// `StatefulSet prod/shop/db`: for messages that must name the cluster.
    pub fn describe_qualified(&self) -> String {
        format!(
            "{} {}/{}/{}",
            self.kind, self.cluster, self.namespace, self.name
        )
    }
}

impl fmt::Display for Owner {
    /// The marker form ([`Owner::parse`] reads it back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Deployment => write!(f, "{}/{}/{}", self.cluster, self.namespace, self.name),
            kind => write!(
                f,
                "{}/{}/{kind}/{}",
                self.cluster, self.namespace, self.name
            ),
        }
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
        assert_eq!(Owner::parse("c/n/Deployment/d"), None, "one spelling");
        assert_eq!(Owner::parse("c/n/Pod/d"), None);
        assert_eq!(Owner::parse("c/n/StatefulSet/d/e"), None);
    }

    #[test]
    fn owners_of_each_kind_round_trip_and_differ() {
        for kind in Kind::ALL {
            let o = Owner::of(kind, "prod", "shop", "db");
            assert_eq!(Owner::parse(&o.to_string()), Some(o.clone()), "{o}");
        }
        assert_eq!(Owner::new("prod", "shop", "db").to_string(), "prod/shop/db");
        assert_eq!(
            Owner::of(Kind::StatefulSet, "prod", "shop", "db").to_string(),
            "prod/shop/StatefulSet/db"
        );
        assert_ne!(
            Owner::of(Kind::StatefulSet, "prod", "shop", "db"),
            Owner::of(Kind::Deployment, "prod", "shop", "db")
        );
    }
}
