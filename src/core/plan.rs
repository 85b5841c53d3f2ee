//! diff(desired, observed) → [`Plan`].
//!
//! The plan is a value: `plan` renders it, `run` executes exactly it. It
//! carries the data to write (as redacted [`SecretValue`]s) but renderers only
//! ever read key names and actions from it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use super::desired::DesiredPath;
use super::error_kind::ErrorKind;
use super::index::Index;
use super::name::{Name, NamePool};
use super::ownership::{self, Owner, Ownership};
use super::value::{SecretMap, SecretValue, ValueDigest};
use super::vault_path::{KvLocation, KvVersion};

/// A desired path resolved to its physical location.
#[derive(Debug, Clone)]
pub struct Located {
    pub desired: DesiredPath,
    pub location: KvLocation,
}

/// What one KV read found.
#[derive(Debug, Clone)]
pub enum Observed {
    Absent,
    Present(ObservedSecret),
    /// The read failed; `kind` is a metric label (`permission_denied`, ...).
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ObservedSecret {
    /// KV v2 current version (0 for KV v1).
    pub version: u64,
    /// The current version is soft-deleted or destroyed: no data to compare.
    pub deleted: bool,
    /// Key → digest of the value; `None` for a value that is not a JSON
    /// string (never equal to anything vault-sync writes).
    pub data: BTreeMap<String, Option<ValueDigest>>,
    pub custom_metadata: BTreeMap<String, String>,
}

/// Something wrong with one Deployment, found before the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub owner: Owner,
    /// The path it blocks, as the annotation spells it, if known.
    pub path: Option<String>,
    pub secret: Option<String>,
    /// Metric label / JSON `error_type`.
    pub kind: ErrorKind,
    pub message: String,
}

/// An informational line about a Deployment (optional Secret missing, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub owner: Owner,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Take over existing paths that no tool marked as its own.
    pub adopt: bool,
    /// Owners of this cluster confirmed gone (the API server answered 404
    /// for them during this run): their paths may be taken over.
    pub gone: BTreeSet<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        /// Shared by the rows that create the same keys.
        keys: Arc<[Name]>,
    },
    Update {
        /// Boxed, to keep every row of a large plan small: most rows are
        /// not updates.
        keys: Box<KeyChanges>,
        /// Content is equal; only the ownership metadata changes (adoption,
        /// preserve flag flipped).
        metadata_only: bool,
        /// Taken over from this owner of the same cluster, which no longer
        /// exists (a renamed or replaced workload).
        previous_owner: Option<Owner>,
    },
    Unchanged,
    /// (`Box<str>`s, not `String`s, keep every row of a plan small.)
    Conflict {
        reason: Box<str>,
    },
    Error {
        kind: ErrorKind,
        /// Boxed: most rows are not errors.
        detail: Box<ErrorDetail>,
    },
    /// An orphan to delete.
    Delete {
        reason: Box<str>,
        /// Every version and the metadata (KV v2 `--destroy`, or KV v1).
        destroy: bool,
        /// The path carries no marker, but vault-sync wrote this version of
        /// it (see `IndexEntry::written`): deleted only while still current.
        unmarked_version: Option<NonZeroU64>,
    },
    /// An orphan left in Vault (preserve-on-delete).
    Keep {
        reason: Box<str>,
    },
    /// A write or deletion vault-sync refuses (not provably ours, over
    /// the `--max-deletes` guard, or outside the allowed paths).
    Refused {
        reason: Box<str>,
        /// Set when the refusal has an `error_type` of its own.
        kind: Option<ErrorKind>,
    },
}

/// What an [`Action::Error`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub message: String,
    /// The Secret it is about, if one.
    pub secret: Option<String>,
}

impl Action {
    /// An [`Action::Error`].
    pub fn error(kind: ErrorKind, message: impl Into<String>, secret: Option<String>) -> Self {
        Self::Error {
            kind,
            detail: Box::new(ErrorDetail {
                message: message.into(),
                secret,
            }),
        }
    }

    /// Every [`Action::name`], for metrics that must show zeros too.
    pub const NAMES: [&'static str; 8] = [
        "create",
        "update",
        "delete",
        "unchanged",
        "kept",
        "conflict",
        "refused",
        "error",
    ];

    /// Stable lower-case name, used in JSON output and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Update { .. } => "update",
            Self::Unchanged => "unchanged",
            Self::Conflict { .. } => "conflict",
            Self::Error { .. } => "error",
            Self::Delete { .. } => "delete",
            Self::Keep { .. } => "kept",
            Self::Refused { .. } => "refused",
        }
    }
}

/// What `run` sends for a create or update.
#[derive(Debug, Clone)]
pub struct Write {
    /// New content; `None` when only metadata changes.
    pub data: Option<SecretMap>,
    /// KV v2 check-and-set: 0 for a create, the observed version otherwise.
    /// `None` for KV v1, which has no CAS.
    pub cas: Option<u64>,
    /// KV v2 custom_metadata to set (user keys kept), if it must change.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The write puts this owner's marker on a path that did not carry it
    /// (create, restore, adoption, takeover): the index records the version
    /// it produces, so the path stays ours if the marker never lands.
    pub claims: bool,
}

impl Write {
    /// The KV v2 version this write produces, recorded in the index when it
    /// [claims](Write::claims) the path.
    pub fn claimed_version(&self) -> Option<NonZeroU64> {
        self.claims
            .then_some(self.cas)
            .flatten()
            .filter(|_| self.data.is_some())
            .and_then(|cas| cas.checked_add(1))
            .and_then(NonZeroU64::new)
    }
}

/// Where a row of the plan is.
#[derive(Debug, Clone)]
pub enum Target {
    Located(KvLocation),
    /// The path as the annotation spells it: it could not be resolved to
    /// a location. (One field, not an optional location beside a path: a
    /// large run keeps every row to the end, and this one is no larger
    /// than a location.)
    Unresolved(Box<str>),
}

#[derive(Debug, Clone)]
pub struct Change {
    /// A located row's path is its location's display, made when it is
    /// shown rather than stored. See [`Change::path`].
    pub target: Target,
    pub owner: Owner,
    pub action: Action,
    /// What `run` sends. Boxed, and dropped once written (or planned) by
    /// [`Change::release_payload`]: most rows of a large run write
    /// nothing, and each row of the plan is kept to the end.
    pub write: Option<Box<Write>>,
    /// A write was planned and then released: [`Change::writes`].
    pub write_released: bool,
    /// The Deployment's preserve-on-delete, recorded in the index.
    pub preserve_on_delete: bool,
}

impl Change {
    /// Where the row is, if its path could be resolved.
    pub fn location(&self) -> Option<&KvLocation> {
        match &self.target {
            Target::Located(location) => Some(location),
            Target::Unresolved(_) => None,
        }
    }

    /// Display path (`secret/app`), or the annotation's spelling if it
    /// could not be resolved.
    pub fn path(&self) -> Cow<'_, str> {
        match &self.target {
            Target::Located(location) => Cow::Owned(location.to_string()),
            Target::Unresolved(raw) => Cow::Borrowed(raw),
        }
    }

    /// The two parts whose concatenation is [`Change::path`].
    fn path_parts(&self) -> (&str, &str) {
        match &self.target {
            Target::Located(location) => (&location.mount, &location.rel),
            Target::Unresolved(raw) => (raw, ""),
        }
    }

    /// Orders rows by path, then owner, without building the paths.
    pub fn cmp_by_path(&self, other: &Self) -> std::cmp::Ordering {
        let ((a0, a1), (b0, b1)) = (self.path_parts(), other.path_parts());
        a0.bytes()
            .chain(a1.bytes())
            .cmp(b0.bytes().chain(b1.bytes()))
            .then_with(|| self.owner.cmp(&other.owner))
    }

    /// Drops the write once it is written (or, for `plan` and `prune`,
    /// once planned), so a large run does not hold every Secret's values,
    /// nor a box per written path, until the end. The change still says a
    /// write was planned ([`Change::writes`]); executing it again writes
    /// nothing.
    pub fn release_payload(&mut self) {
        if self.write.take().is_some() {
            self.write_released = true;
        }
    }

    /// A write is planned (or was, and is released).
    pub fn writes(&self) -> bool {
        self.write.is_some() || self.write_released
    }

    /// Shares the key names of the row with the rows before it (`pool`):
    /// a large run keeps every row to the end, and most write the same
    /// few key names; most creates, the same list of them.
    pub fn share_names(&mut self, pool: &mut KeyNamePool) {
        match &mut self.action {
            Action::Create { keys } => {
                if let Some(seen) = pool.lists.get(&**keys) {
                    *keys = seen.clone();
                } else {
                    let list: Vec<Name> =
                        keys.iter().map(|k| pool.names.intern(k.clone())).collect();
                    *keys = list.into();
                    pool.lists.insert(keys.clone());
                }
            }
            Action::Update { keys, .. } => {
                let KeyChanges {
                    added,
                    changed,
                    removed,
                } = &mut **keys;
                for list in [added, changed, removed] {
                    for key in list.iter_mut() {
                        *key = pool.names.intern(key.clone());
                    }
                    list.shrink_to_fit();
                }
            }
            _ => {}
        }
    }
}

/// Key names and create key lists seen so far ([`Change::share_names`]).
#[derive(Debug, Default)]
pub struct KeyNamePool {
    names: NamePool,
    lists: HashSet<Arc<[Name]>>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub unchanged: usize,
    pub conflict: usize,
    pub error: usize,
    pub delete: usize,
    pub kept: usize,
    pub refused: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create { .. } => s.create += 1,
                Action::Update { .. } => s.update += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::Conflict { .. } => s.conflict += 1,
                Action::Error { .. } => s.error += 1,
                Action::Delete { .. } => s.delete += 1,
                Action::Keep { .. } => s.kept += 1,
                Action::Refused { .. } => s.refused += 1,
            }
        }
        s
    }

    /// Anything `run` would write or delete (a kept orphan is dropped from
    /// the index, which is a write too).
    pub fn has_changes(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.writes() || matches!(c.action, Action::Delete { .. } | Action::Keep { .. }))
    }

    /// Anything that makes the command exit non-zero.
    pub fn has_failures(&self) -> bool {
        self.changes.iter().any(|c| {
            matches!(
                c.action,
                Action::Conflict { .. } | Action::Error { .. } | Action::Refused { .. }
            )
        })
    }

    /// The `--max-deletes` guard: when the plan would delete more than
    /// `max` paths, every deletion is refused (none of them happens).
    /// Returns the locations it refused.
    pub fn guard_deletes(&mut self, max: usize) -> Vec<KvLocation> {
        let deletes = self
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Delete { .. }))
            .count();
        if deletes <= max {
            return Vec::new();
        }
        let mut refused = Vec::new();
        for c in &mut self.changes {
            if let Action::Delete { reason, .. } = &c.action {
                c.action = Action::Refused {
                    kind: None,
                    reason: format!(
                        "{reason}; refused: this run would delete {deletes} paths, more than --max-deletes {max}. Review them with `vault-sync plan`, then rerun with --max-deletes {deletes}"
                    )
                    .into(),
                };
                refused.extend(c.location().cloned());
            }
        }
        refused
    }

    /// Builds a plan from changes gathered batch by batch, with what
    /// became of some of them (`outcomes`: change index → `E`, a failed
    /// write). Sorted like [`Plan::sort`]; the outcomes come back keyed by
    /// their change's index in the sorted plan.
    ///
    /// Sorts a permutation and applies it in place: a run over tens of
    /// thousands of paths must not hold the changes twice.
    pub fn from_rows<E>(
        mut changes: Vec<Change>,
        outcomes: Vec<(usize, E)>,
        notes: Vec<Note>,
    ) -> (Self, BTreeMap<usize, E>) {
        let mut order: Vec<usize> = (0..changes.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&changes[a], &changes[b]);
            a.cmp_by_path(b)
        });
        // new_index[old] = where the change at `old` goes.
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let outcomes = outcomes
            .into_iter()
            .filter_map(|(old, e)| new_index.get(old).map(|&new| (new, e)))
            .collect();
        // Cycle by cycle: each swap puts one change in its final place.
        for i in 0..new_index.len() {
            while new_index[i] != i {
                let j = new_index[i];
                changes.swap(i, j);
                new_index.swap(i, j);
            }
        }
        (Plan { changes, notes }, outcomes)
    }

    /// Sorts changes by path, then owner, for stable output.
    pub fn sort(&mut self) {
        self.changes.sort_by(Change::cmp_by_path);
    }
}

/// Diffs the desired paths against what Vault holds.
///
/// `problems` are carried into the plan as errors. `index` is what the
/// vault-sync index records; it decides ownership of KV v1 paths (which
/// have no metadata), and completes KV v2 creates interrupted before their
/// marker.
pub fn plan(
    located: Vec<Located>,
    problems: Vec<Problem>,
    notes: Vec<Note>,
    observed: &BTreeMap<KvLocation, Observed>,
    index: &Index,
    opts: &PlanOptions,
) -> Plan {
    let mut changes = Vec::with_capacity(located.len() + problems.len());

    // Two Deployments wanting one location: a conflict for both.
    let mut wanted_by: BTreeMap<&KvLocation, Vec<&Owner>> = BTreeMap::new();
    for l in &located {
        wanted_by
            .entry(&l.location)
            .or_default()
            .push(&l.desired.owner);
    }
    let contested: BTreeMap<KvLocation, Vec<Owner>> = wanted_by
        .into_iter()
        .filter(|(_, owners)| owners.len() > 1)
        .map(|(loc, owners)| (loc.clone(), owners.into_iter().cloned().collect()))
        .collect();

    for l in located {
        let owner = l.desired.owner.clone();
        if let Some(owners) = contested.get(&l.location) {
            let others: Vec<String> = owners
                .iter()
                .filter(|o| **o != owner)
                .map(Owner::short)
                .collect();
            let others = if others.is_empty() {
                // The same Deployment reaches one location twice, e.g.
                // `secret/data/x` and `secret/x` in auto-discovery.
                "itself (two spellings of one path)".to_owned()
            } else {
                others.join(", ")
            };
            changes.push(Change {
                target: Target::Located(l.location),
                owner,
                action: Action::Conflict {
                    reason: format!(
                        "also wanted by {others}; give each Deployment its own vault-sync.io/path"
                    )
                    .into(),
                },
                write: None,
                write_released: false,
                preserve_on_delete: l.desired.preserve_on_delete,
            });
            continue;
        }
        let (action, write) = diff_one(&l, observed.get(&l.location), index, opts);
        changes.push(Change {
            target: Target::Located(l.location),
            owner,
            action,
            write: write.map(Box::new),
            write_released: false,
            preserve_on_delete: l.desired.preserve_on_delete,
        });
    }

    for p in problems {
        changes.push(Change {
            target: Target::Unresolved(p.path.unwrap_or_default().into()),
            owner: p.owner,
            action: Action::error(p.kind, p.message, p.secret),
            write: None,
            write_released: false,
            preserve_on_delete: false,
        });
    }

    let mut plan = Plan { changes, notes };
    plan.sort();
    plan
}

/// One located path against what its read found.
fn diff_one(
    l: &Located,
    observed: Option<&Observed>,
    index: &Index,
    opts: &PlanOptions,
) -> (Action, Option<Write>) {
    let d = &l.desired;
    let v2 = l.location.version == KvVersion::V2;
    let stamp = |existing: &BTreeMap<String, String>| {
        v2.then(|| ownership::stamp(existing, &d.owner, d.preserve_on_delete))
    };
    let create = |cas: u64, existing: &BTreeMap<String, String>| {
        (
            Action::Create {
                keys: d.data.keys().map(Name::from).collect(),
            },
            Some(Write {
                data: Some(d.data.clone()),
                cas: v2.then_some(cas),
                metadata: stamp(existing),
                claims: true,
            }),
        )
    };

    let secret = match observed {
        None => {
            return (
                Action::error(ErrorKind::Unknown, "the path was not read from Vault", None),
                None,
            );
        }
        Some(Observed::Failed { kind, message }) => {
            return (Action::error(*kind, message.as_str(), None), None);
        }
        Some(Observed::Absent) => return create(0, &BTreeMap::new()),
        Some(Observed::Present(secret)) => secret,
    };

    let claim = match if v2 {
        claim_v2(l, secret, index, opts)
    } else {
        claim_v1(d, index.get(&l.location).map(|e| &e.owner), opts)
    } {
        Ok(claim) => claim,
        Err(reason) => return conflict(reason),
    };
    if !claim.ours && !opts.adopt {
        return conflict(
            "exists in Vault and is not managed by vault-sync; rerun with --adopt to take it over, or choose another path"
                .into(),
        );
    }

    if secret.deleted {
        // Our own path, current version soft-deleted: restore it.
        return create(secret.version, &secret.custom_metadata);
    }

    let keys = KeyChanges::between(&d.data, &secret.data);
    let content_changed = !keys.is_empty();
    let metadata = stamp(&secret.custom_metadata).filter(|m| *m != secret.custom_metadata);
    if !content_changed && metadata.is_none() && claim.previous_owner.is_none() {
        return (Action::Unchanged, None);
    }
    // A takeover rewrites the content even when it is equal: the content
    // write is the one that carries check-and-set (a marker write has
    // none), so a writer that slipped in since the read is caught.
    let write_content = content_changed || claim.previous_owner.is_some();
    (
        Action::Update {
            keys: Box::new(keys),
            metadata_only: !write_content,
            previous_owner: claim.previous_owner,
        },
        Some(Write {
            data: write_content.then(|| d.data.clone()),
            cas: v2.then_some(secret.version),
            metadata,
            claims: claim.claims,
        }),
    )
}

/// Whose an existing path is, as far as this Deployment's write goes.
struct Claim {
    /// vault-sync wrote it for this owner (or for one that is gone).
    ours: bool,
    /// The write puts our marker on it afresh.
    claims: bool,
    /// A gone owner of this cluster whose path this write takes over.
    previous_owner: Option<Owner>,
}

/// KV v2: the path's own marker decides; `Err` is the conflict's reason.
fn claim_v2(
    l: &Located,
    secret: &ObservedSecret,
    index: &Index,
    opts: &PlanOptions,
) -> Result<Claim, String> {
    let d = &l.desired;
    let claim = |ours, claims| Claim {
        ours,
        claims,
        previous_owner: None,
    };
    match ownership::read(&secret.custom_metadata) {
        Ownership::VaultSync { owner, .. } if owner == d.owner => Ok(claim(true, false)),
        Ownership::VaultSync { owner, .. } if opts.gone.contains(&owner) => Ok(Claim {
            ours: true,
            claims: true,
            previous_owner: Some(owner),
        }),
        Ownership::VaultSync { owner, .. } => Err(format!(
            "owned by vault-sync for {}; remove vault-sync.io/path from that {} first",
            owner.describe_qualified(),
            owner.kind
        )),
        Ownership::OtherManager(m) => Err(format!(
            "managed by {m:?} (custom_metadata managed-by); vault-sync will not overwrite it"
        )),
        // A marker without a valid owner is nobody's claim: --adopt may take it.
        Ownership::Malformed if !opts.adopt => Err(
            "marked managed-by=vault-sync but without a valid owner; fix its custom_metadata, or rerun with --adopt"
                .into(),
        ),
        Ownership::Malformed => Ok(claim(false, true)),
        // A write of ours whose marker never landed: the index recorded
        // the path, and the version the write would produce, before
        // writing it. Indexes from before that record are judged by the
        // interrupted create's signature: only one version exists, and
        // it holds exactly what this Deployment wants. Any other
        // unmarked content stays someone else's.
        Ownership::Unowned => {
            let entry = index.get(&l.location).filter(|e| e.owner == d.owner);
            let untouched = entry.is_some_and(|e| match e.written {
                Some(v) => v.get() == secret.version,
                None => secret.version == 1 && same_content(&d.data, &secret.data),
            });
            Ok(claim(untouched && !secret.deleted, true))
        }
    }
}

/// KV v1 has no metadata: the index says whose the path is.
fn claim_v1(
    d: &DesiredPath,
    indexed_owner: Option<&Owner>,
    opts: &PlanOptions,
) -> Result<Claim, String> {
    let (ours, previous_owner) = match indexed_owner {
        Some(owner) if *owner == d.owner => (true, None),
        Some(owner) if opts.gone.contains(owner) => (true, Some(owner.clone())),
        Some(owner) => {
            return Err(format!(
                "owned by vault-sync for {} (KV v1 index)",
                owner.describe_qualified()
            ));
        }
        None => (false, None),
    };
    Ok(Claim {
        ours,
        claims: false,
        previous_owner,
    })
}

/// Key names that differ between what a Deployment wants and what Vault
/// holds (values compared by digest, never shown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    pub added: Vec<Name>,
    pub changed: Vec<Name>,
    pub removed: Vec<Name>,
}

impl KeyChanges {
    fn between(desired: &SecretMap, observed: &BTreeMap<String, Option<ValueDigest>>) -> Self {
        let desired_keys: BTreeSet<&String> = desired.keys().collect();
        let observed_keys: BTreeSet<&String> = observed.keys().collect();
        let names = |keys: BTreeSet<&&String>| keys.into_iter().map(|k| Name::from(*k)).collect();
        Self {
            added: names(desired_keys.difference(&observed_keys).collect()),
            removed: names(observed_keys.difference(&desired_keys).collect()),
            changed: names(
                desired_keys
                    .intersection(&observed_keys)
                    .filter(|k| {
                        observed.get(**k).copied().flatten()
                            != desired.get(**k).map(SecretValue::digest)
                    })
                    .collect(),
            ),
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Owners of this cluster that hold, by their marker (or, on KV v1, by the
/// index), paths another Deployment of this batch wants: the shell asks
/// the API server whether each still exists before planning, so a path
/// whose owner is gone can be taken over instead of staying a conflict.
pub fn holders_to_check(
    located: &[Located],
    observed: &BTreeMap<KvLocation, Observed>,
    index: &Index,
    cluster: &str,
) -> BTreeSet<Owner> {
    located
        .iter()
        .filter_map(|l| {
            let holder = match (l.location.version, observed.get(&l.location)) {
                (KvVersion::V2, Some(Observed::Present(secret))) => {
                    match ownership::read(&secret.custom_metadata) {
                        Ownership::VaultSync { owner, .. } => Some(owner),
                        _ => None,
                    }
                }
                (KvVersion::V1, Some(Observed::Present(_))) => {
                    index.get(&l.location).map(|e| e.owner.clone())
                }
                _ => None,
            }?;
            (holder != l.desired.owner && holder.cluster == cluster).then_some(holder)
        })
        .collect()
}

/// Whether a desired path is marked as owned by the very Deployment that
/// wants it although `index` does not list it: vault-sync wrote it, and
/// its index does not know. A path marked for another owner says nothing
/// of the sort (anyone with write access can forge a marker); it is a
/// conflict, or a takeover.
pub fn marked_but_unindexed(l: &Located, observed: &Observed, index: &Index) -> bool {
    match observed {
        Observed::Present(secret) if !index.contains_key(&l.location) => matches!(
            ownership::read(&secret.custom_metadata),
            Ownership::VaultSync { owner, .. } if owner == l.desired.owner
        ),
        _ => false,
    }
}

/// Whether what was read at `location` may be another run's create caught
/// between its content and its marker: unmarked KV v2 content at version 1
/// that `index` does not list. That run recorded the path in the index
/// before writing it, so an index read now tells whether it is ours; judged
/// on the index read earlier, it would be a false conflict.
pub fn may_be_unindexed_create(location: &KvLocation, observed: &Observed, index: &Index) -> bool {
    match observed {
        Observed::Present(secret) => {
            location.version == KvVersion::V2
                && secret.version == 1
                && !secret.deleted
                && ownership::read(&secret.custom_metadata) == Ownership::Unowned
                && !index.contains_key(location)
        }
        Observed::Absent | Observed::Failed { .. } => false,
    }
}

/// Whether Vault holds exactly `desired` (compared by digest).
pub fn same_content(desired: &SecretMap, observed: &BTreeMap<String, Option<ValueDigest>>) -> bool {
    desired.len() == observed.len()
        && desired
            .iter()
            .all(|(k, v)| observed.get(k).copied().flatten() == Some(v.digest()))
}

fn conflict(reason: String) -> (Action, Option<Write>) {
    (
        Action::Conflict {
            reason: reason.into(),
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ownership::{MANAGED_BY_KEY, OWNER_KEY, PRESERVE_KEY};

    fn owner(d: &str) -> Owner {
        Owner::new("default", "shop", d)
    }

    fn loc(rel: &str) -> KvLocation {
        KvLocation {
            mount: "secret/".into(),
            rel: rel.into(),
            version: KvVersion::V2,
        }
    }

    fn data(pairs: &[(&str, &str)]) -> SecretMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), SecretValue::new((*v).into())))
            .collect()
    }

    fn located(rel: &str, d: &str, pairs: &[(&str, &str)]) -> Located {
        Located {
            desired: DesiredPath {
                raw_path: format!("secret/{rel}"),
                owner: owner(d),
                data: data(pairs),
                preserve_on_delete: false,
                sources: vec![],
            },
            location: loc(rel),
        }
    }

    fn present(version: u64, pairs: &[(&str, &str)], md: BTreeMap<String, String>) -> Observed {
        Observed::Present(ObservedSecret {
            version,
            deleted: false,
            data: data(pairs)
                .into_iter()
                .map(|(k, v)| (k, Some(v.digest())))
                .collect(),
            custom_metadata: md,
        })
    }

    /// An index that records `location` for Deployment `d`.
    fn indexed(location: KvLocation, d: &str) -> Index {
        let entry = crate::core::index::IndexEntry::new(owner(d), false);
        Index::from([(location, entry)])
    }

    fn ours(d: &str) -> BTreeMap<String, String> {
        ownership::stamp(&BTreeMap::new(), &owner(d), false)
    }

    fn run(l: Vec<Located>, obs: Vec<(KvLocation, Observed)>, adopt: bool) -> Plan {
        plan(
            l,
            vec![],
            vec![],
            &obs.into_iter().collect(),
            &BTreeMap::new(),
            &PlanOptions {
                adopt,
                ..PlanOptions::default()
            },
        )
    }

    /// A run keeps a row per path to its end (100,000 rows is 9.6 MB at
    /// this size): what only a few rows carry is boxed, and what every row
    /// carries is shared ([`Owner`], the path's [`Name`]s).
    #[test]
    fn a_plan_row_stays_small() {
        assert!(std::mem::size_of::<Action>() <= 32);
        assert!(std::mem::size_of::<Change>() <= 96);
        // And the index holds an entry per path to the end too.
        assert!(std::mem::size_of::<crate::core::index::IndexEntry>() <= 24);
    }

    #[test]
    fn every_action_name_is_listed() {
        let all = [
            Action::Create { keys: [].into() },
            Action::Update {
                keys: Box::default(),
                metadata_only: false,
                previous_owner: None,
            },
            Action::Unchanged,
            Action::Conflict { reason: "".into() },
            Action::error(ErrorKind::Unknown, "", None),
            Action::Delete {
                reason: "".into(),
                destroy: false,
                unmarked_version: None,
            },
            Action::Keep { reason: "".into() },
            Action::Refused {
                reason: "".into(),
                kind: None,
            },
        ];
        let mut names: Vec<&str> = all.iter().map(Action::name).collect();
        let mut listed = Action::NAMES.to_vec();
        names.sort_unstable();
        listed.sort_unstable();
        assert_eq!(names, listed);
    }

    #[test]
    fn rows_from_batches_sort_with_their_outcomes() {
        // Two batches planned separately, outcomes by arrival order.
        let first = run(
            vec![
                located("b", "api", &[("k", "v")]),
                located("d", "db", &[("k", "v")]),
            ],
            vec![(loc("b"), Observed::Absent), (loc("d"), Observed::Absent)],
            false,
        );
        let second = run(
            vec![
                located("a", "web", &[("k", "v")]),
                located("c", "job", &[("k", "v")]),
            ],
            vec![(loc("a"), Observed::Absent), (loc("c"), Observed::Absent)],
            false,
        );
        let changes: Vec<Change> = first.changes.into_iter().chain(second.changes).collect();
        // b, d, a, c: d (1) and a (2) failed.
        let (plan, failures) =
            Plan::from_rows(changes, vec![(1, "d failed"), (2, "a failed")], vec![]);
        let paths: Vec<String> = plan.changes.iter().map(|c| c.path().into_owned()).collect();
        assert_eq!(paths, ["secret/a", "secret/b", "secret/c", "secret/d"]);
        assert_eq!(failures, BTreeMap::from([(0, "a failed"), (3, "d failed")]));
    }

    #[test]
    fn from_rows_sorts_any_permutation_like_sort() {
        // Reverse, rotated and interleaved orders of the same changes.
        let base = run(
            (0..9)
                .map(|i| located(&format!("p{i}"), "api", &[("k", "v")]))
                .collect(),
            (0..9)
                .map(|i| (loc(&format!("p{i}")), Observed::Absent))
                .collect(),
            false,
        );
        for order in [
            vec![8, 7, 6, 5, 4, 3, 2, 1, 0],
            vec![3, 4, 5, 6, 7, 8, 0, 1, 2],
            vec![1, 0, 3, 2, 5, 4, 7, 6, 8],
        ] {
            let changes: Vec<Change> = order.iter().map(|&i| base.changes[i].clone()).collect();
            let outcomes: Vec<(usize, usize)> = order.iter().copied().enumerate().collect();
            let (plan, outcomes) = Plan::from_rows(changes, outcomes, vec![]);
            let paths: Vec<String> = plan.changes.iter().map(|c| c.path().into_owned()).collect();
            let want: Vec<String> = base.changes.iter().map(|c| c.path().into_owned()).collect();
            assert_eq!(paths, want, "order {order:?}");
            // Each outcome followed its change: outcome = original index.
            assert!(
                outcomes.iter().all(|(at, original)| at == original),
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn a_released_payload_still_counts_as_a_change_but_holds_no_value() {
        let mut p = run(
            vec![located("app", "api", &[("k", "v")])],
            vec![(loc("app"), Observed::Absent)],
            false,
        );
        p.changes[0].release_payload();
        assert!(p.changes[0].write.is_none(), "nothing held");
        assert!(p.changes[0].writes());
        assert!(
            p.has_changes(),
            "plan's exit code 2 must survive the release"
        );
    }

    #[test]
    fn absent_path_is_created_with_cas_zero_and_marker() {
        let p = run(
            vec![located("app", "api", &[("k", "v")])],
            vec![(loc("app"), Observed::Absent)],
            false,
        );
        let c = &p.changes[0];
        assert_eq!(
            c.action,
            Action::Create {
                keys: ["k".into()].into()
            }
        );
        let w = c.write.as_ref().unwrap();
        assert_eq!(w.cas, Some(0));
        let md = w.metadata.as_ref().unwrap();
        assert_eq!(md[MANAGED_BY_KEY], "vault-sync");
        assert_eq!(md[OWNER_KEY], "default/shop/api");
        assert_eq!(md[PRESERVE_KEY], "false");
        assert!(p.has_changes());
        assert!(!p.has_failures());
    }

    #[test]
    fn equal_content_and_marker_is_unchanged_and_writes_nothing() {
        let p = run(
            vec![located("app", "api", &[("k", "v")])],
            vec![(loc("app"), present(3, &[("k", "v")], ours("api")))],
            false,
        );
        assert_eq!(p.changes[0].action, Action::Unchanged);
        assert!(p.changes[0].write.is_none());
        assert!(!p.has_changes());
    }

    #[test]
    fn update_lists_added_changed_removed_and_uses_observed_version() {
        let p = run(
            vec![located(
                "app",
                "api",
                &[("a", "1"), ("b", "new"), ("c", "3")],
            )],
            vec![(
                loc("app"),
                present(7, &[("b", "old"), ("c", "3"), ("d", "4")], ours("api")),
            )],
            false,
        );
        assert_eq!(
            p.changes[0].action,
            Action::Update {
                keys: Box::new(KeyChanges {
                    added: vec!["a".into()],
                    changed: vec!["b".into()],
                    removed: vec!["d".into()],
                }),
                metadata_only: false,
                previous_owner: None,
            }
        );
        let w = p.changes[0].write.as_ref().unwrap();
        assert_eq!(w.cas, Some(7));
        assert!(
            w.metadata.is_none(),
            "marker already right: no metadata write"
        );
    }

    #[test]
    fn non_string_observed_value_counts_as_changed() {
        let mut obs = ObservedSecret {
            version: 1,
            custom_metadata: ours("api"),
            ..Default::default()
        };
        obs.data.insert("k".into(), None);
        let p = run(
            vec![located("app", "api", &[("k", "v")])],
            vec![(loc("app"), Observed::Present(obs))],
            false,
        );
        assert!(
            matches!(&p.changes[0].action, Action::Update { keys, .. } if keys.changed == ["k"])
        );
    }

    #[test]
    fn unowned_path_is_a_conflict_unless_adopted() {
        let user_md = BTreeMap::from([("team".to_owned(), "x".to_owned())]);
        let obs = || vec![(loc("app"), present(2, &[("k", "v")], user_md.clone()))];
        let p = run(vec![located("app", "api", &[("k", "v")])], obs(), false);
        assert!(
            matches!(&p.changes[0].action, Action::Conflict { reason } if reason.contains("--adopt"))
        );
        assert!(p.changes[0].write.is_none());
        assert!(p.has_failures());

        let p = run(vec![located("app", "api", &[("k", "v")])], obs(), true);
        assert!(matches!(
            p.changes[0].action,
            Action::Update {
                metadata_only: true,
                ..
            }
        ));
        let w = p.changes[0].write.as_ref().unwrap();
        assert!(w.data.is_none());
        let md = w.metadata.as_ref().unwrap();
        assert_eq!(md["team"], "x", "user metadata kept");
        assert_eq!(md[MANAGED_BY_KEY], "vault-sync");
    }

    #[test]
    fn other_owner_and_other_manager_are_conflicts_even_with_adopt() {
        let other = ours("web");
        let foreign = BTreeMap::from([(MANAGED_BY_KEY.to_owned(), "external-secrets".to_owned())]);
        for md in [other, foreign] {
            let p = run(
                vec![located("app", "api", &[("k", "v")])],
                vec![(loc("app"), present(1, &[("k", "v")], md))],
                true,
            );
            assert!(
                matches!(p.changes[0].action, Action::Conflict { .. }),
                "{:?}",
                p.changes[0]
            );
        }
    }

    #[test]
    fn two_deployments_one_path_conflict_for_both() {
        let p = run(
            vec![
                located("app", "api", &[("k", "v")]),
                located("app", "web", &[("k", "w")]),
            ],
            vec![(loc("app"), Observed::Absent)],
            false,
        );
        assert_eq!(p.changes.len(), 2);
        for c in &p.changes {
            assert!(
                matches!(&c.action, Action::Conflict { reason } if reason.contains("also wanted by"))
            );
        }
        assert!(!p.has_changes());
    }

    #[test]
    fn soft_deleted_own_path_is_recreated_with_current_version() {
        let obs = Observed::Present(ObservedSecret {
            version: 4,
            deleted: true,
            data: BTreeMap::new(),
            custom_metadata: ours("api"),
        });
        let p = run(
            vec![located("app", "api", &[("k", "v")])],
            vec![(loc("app"), obs)],
            false,
        );
        assert!(matches!(p.changes[0].action, Action::Create { .. }));
        assert_eq!(p.changes[0].write.as_ref().unwrap().cas, Some(4));
    }

    #[test]
    fn preserve_flag_change_is_a_metadata_only_update() {
        let mut l = located("app", "api", &[("k", "v")]);
        l.desired.preserve_on_delete = true;
        let p = run(
            vec![l],
            vec![(loc("app"), present(1, &[("k", "v")], ours("api")))],
            false,
        );
        assert!(matches!(
            p.changes[0].action,
            Action::Update {
                metadata_only: true,
                ..
            }
        ));
    }

    #[test]
    fn read_failures_and_problems_become_errors() {
        let p = plan(
            vec![located("app", "api", &[("k", "v")])],
            vec![Problem {
                owner: owner("web"),
                path: Some("secret/web".into()),
                secret: Some("db".into()),
                kind: ErrorKind::SecretNotFound,
                message: "Secret shop/db not found".into(),
            }],
            vec![],
            &BTreeMap::from([(
                loc("app"),
                Observed::Failed {
                    kind: ErrorKind::PermissionDenied,
                    message: "403".into(),
                },
            )]),
            &BTreeMap::new(),
            &PlanOptions::default(),
        );
        let kinds: Vec<_> = p.changes.iter().map(|c| c.action.name()).collect();
        assert_eq!(kinds, ["error", "error"]);
        assert_eq!(p.summary().error, 2);
        assert!(p.has_failures());
    }

    #[test]
    fn guard_refuses_every_delete_above_the_limit() {
        let delete = |rel: &str| Change {
            target: Target::Located(loc(rel)),
            owner: owner("api"),
            action: Action::Delete {
                reason: "gone".into(),
                destroy: false,
                unmarked_version: None,
            },
            write: None,
            write_released: false,
            preserve_on_delete: false,
        };
        let mut p = Plan {
            changes: vec![delete("a"), delete("b")],
            notes: vec![],
        };
        assert!(p.guard_deletes(2).is_empty());
        assert_eq!(p.summary().delete, 2);
        assert!(!p.has_failures());
        assert_eq!(p.guard_deletes(1), vec![loc("a"), loc("b")]);
        assert_eq!(p.summary().delete, 0);
        assert_eq!(p.summary().refused, 2);
        assert!(p.has_failures());
        assert!(!p.has_changes());
        assert!(
            matches!(&p.changes[0].action, Action::Refused { reason, .. } if reason.contains("--max-deletes 2"))
        );
    }

    #[test]
    fn interrupted_create_is_completed_only_when_index_version_and_content_agree() {
        let l = located("app", "api", &[("k", "v")]);
        let index = indexed(loc("app"), "api");
        let check = |version: u64, value: &str, index: &Index| {
            let obs = BTreeMap::from([(
                loc("app"),
                present(version, &[("k", value)], BTreeMap::new()),
            )]);
            plan(
                vec![l.clone()],
                vec![],
                vec![],
                &obs,
                index,
                &PlanOptions::default(),
            )
            .changes
            .remove(0)
        };
        let c = check(1, "v", &index);
        assert!(
            matches!(
                c.action,
                Action::Update {
                    metadata_only: true,
                    ..
                }
            ),
            "{:?}",
            c.action
        );
        assert!(c.write.and_then(|w| w.metadata).is_some());
        let other_index = indexed(loc("app"), "web");
        for (version, value, idx) in [
            (2, "v", &index),
            (1, "other", &index),
            (1, "v", &Index::new()),
            (1, "v", &other_index),
        ] {
            let c = check(version, value, idx);
            assert!(
                matches!(c.action, Action::Conflict { .. }),
                "{version} {value}: {:?}",
                c.action
            );
        }
    }

    #[test]
    fn only_unmarked_first_versions_missing_from_the_index_call_for_a_fresh_index() {
        let unmarked = present(1, &[("k", "v")], BTreeMap::new());
        assert!(may_be_unindexed_create(
            &loc("app"),
            &unmarked,
            &Index::new()
        ));

        let mut deleted = unmarked.clone();
        if let Observed::Present(s) = &mut deleted {
            s.deleted = true;
        }
        let mut v1 = loc("app");
        v1.version = KvVersion::V1;
        for (location, observed, index) in [
            (loc("app"), unmarked.clone(), indexed(loc("app"), "web")),
            (
                loc("app"),
                present(2, &[("k", "v")], BTreeMap::new()),
                Index::new(),
            ),
            (
                loc("app"),
                present(1, &[("k", "v")], ours("api")),
                Index::new(),
            ),
            (loc("app"), deleted, Index::new()),
            (loc("app"), Observed::Absent, Index::new()),
            (v1, present(0, &[("k", "v")], BTreeMap::new()), Index::new()),
        ] {
            assert!(
                !may_be_unindexed_create(&location, &observed, &index),
                "{location} {observed:?} {index:?}"
            );
        }
    }

    #[test]
    fn kv1_ownership_comes_from_the_index() {
        let mut l = located("app", "api", &[("k", "v")]);
        l.location.version = KvVersion::V1;
        let obs = BTreeMap::from([(
            l.location.clone(),
            present(0, &[("k", "old")], BTreeMap::new()),
        )]);
        let index = indexed(l.location.clone(), "api");
        let p = plan(
            vec![l.clone()],
            vec![],
            vec![],
            &obs,
            &index,
            &PlanOptions::default(),
        );
        let w = p.changes[0].write.as_ref().unwrap();
        assert_eq!((w.cas, w.metadata.is_none()), (None, true));
        let p = plan(
            vec![l],
            vec![],
            vec![],
            &obs,
            &BTreeMap::new(),
            &PlanOptions::default(),
        );
        assert!(matches!(p.changes[0].action, Action::Conflict { .. }));
    }

    #[test]
    fn a_path_whose_owner_is_gone_is_taken_over_with_check_and_set() {
        let held_by_a = || vec![(loc("app"), present(3, &[("k", "v")], ours("a")))];
        // `a` still exists (not confirmed gone): a conflict, as before.
        let p = run(vec![located("app", "b", &[("k", "v")])], held_by_a(), false);
        assert!(matches!(p.changes[0].action, Action::Conflict { .. }));

        let opts = PlanOptions {
            adopt: false,
            gone: BTreeSet::from([owner("a")]),
        };
        let p = plan(
            vec![located("app", "b", &[("k", "v")])],
            vec![],
            vec![],
            &held_by_a().into_iter().collect(),
            &Index::new(),
            &opts,
        );
        assert_eq!(
            p.changes[0].action,
            Action::Update {
                keys: Box::default(),
                metadata_only: false,
                previous_owner: Some(owner("a")),
            }
        );
        let w = p.changes[0].write.as_ref().expect("a write");
        assert!(w.data.is_some(), "equal content is rewritten for its CAS");
        assert_eq!(w.cas, Some(3));
        assert_eq!(w.claimed_version(), NonZeroU64::new(4));
        assert_eq!(
            w.metadata.as_ref().map(|m| m[OWNER_KEY].clone()),
            Some(owner("b").to_string())
        );
    }

    #[test]
    fn only_this_clusters_other_holders_are_checked() {
        let mut other_cluster = ours("x");
        other_cluster.insert(OWNER_KEY.into(), "staging/shop/x".into());
        let observed: BTreeMap<KvLocation, Observed> = [
            (loc("a"), present(1, &[("k", "v")], ours("old"))),
            (loc("b"), present(1, &[("k", "v")], ours("b"))),
            (loc("c"), present(1, &[("k", "v")], other_cluster)),
            (loc("d"), present(1, &[("k", "v")], BTreeMap::new())),
        ]
        .into_iter()
        .collect();
        let located = vec![
            located("a", "new", &[("k", "v")]),
            located("b", "b", &[("k", "v")]),
            located("c", "new", &[("k", "v")]),
            located("d", "new", &[("k", "v")]),
        ];
        assert_eq!(
            holders_to_check(&located, &observed, &Index::new(), "default"),
            BTreeSet::from([owner("old")])
        );
    }

    #[test]
    fn an_unmarked_write_of_ours_is_ours_while_its_version_is_current() {
        let mut entry = crate::core::index::IndexEntry::new(owner("api"), false);
        entry.written = NonZeroU64::new(2);
        let index = Index::from([(loc("app"), entry)]);
        let check = |version| {
            plan(
                vec![located("app", "api", &[("k", "new")])],
                vec![],
                vec![],
                &[(
                    loc("app"),
                    present(version, &[("k", "old")], BTreeMap::new()),
                )]
                .into_iter()
                .collect(),
                &index,
                &PlanOptions::default(),
            )
            .changes
            .remove(0)
            .action
        };
        assert!(matches!(check(2), Action::Update { .. }), "{:?}", check(2));
        assert!(
            matches!(check(3), Action::Conflict { .. }),
            "{:?}",
            check(3)
        );
    }

    #[test]
    fn own_marked_paths_missing_from_the_index_are_evidence_of_a_lost_index() {
        let l = located("a", "api", &[("k", "v")]);
        let marked = present(1, &[("k", "v")], ours("api"));
        assert!(marked_but_unindexed(&l, &marked, &Index::new()));
        assert!(!marked_but_unindexed(
            &l,
            &marked,
            &indexed(loc("a"), "api")
        ));
        let someone_else = present(1, &[("k", "v")], ours("web"));
        assert!(!marked_but_unindexed(&l, &someone_else, &Index::new()));
        let unmarked = present(1, &[("k", "v")], BTreeMap::new());
        assert!(!marked_but_unindexed(&l, &unmarked, &Index::new()));
    }
}
