//! Saved plans (`plan --out FILE`, `run --plan FILE`): the document, the
//! checks made on it before any request, and the judgement of whether what
//! a change was pinned to has moved.
//!
//! A saved plan holds no secret value and no digest of one. A change is
//! pinned instead to what it was computed from: the `uid` and
//! `resourceVersion` of each source Secret, and the Vault path's version
//! (or its absence, or its deletion) and ownership marker as read at plan
//! time. `run --plan` re-reads those; when they are unchanged, the desired
//! content derived from the Secrets now is, by construction, the content
//! that was planned, and it is written with check-and-set on the version
//! read at plan time. When any moved, the change is `stale` and not applied.
//!
//! Pure: the shell reads and writes the file and the world.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::annotations::{Mode, Reconcile, SecretSelection, SyncSpec};
use super::desired::SecretFetch;
use super::name::Name;
use super::orphans::{self, OwnerState, PathState};
use super::ownership::{MANAGED_BY_KEY, OWNER_KEY, Owner, PRESERVE_KEY, PathMetadata};
use super::plan::{Action, Change, KeyChanges, Observed, Plan, Summary, Target};
use super::references::SecretReference;
use super::vault_path::{self, KvLocation, KvVersion};
use super::workload::Kind;

/// The version of the document this build writes and reads. Bumped on any
/// change to its meaning; a file of another version is refused whole.
pub const FORMAT_VERSION: u32 = 1;
/// The document's `kind`, so a plan file is not mistaken for `-o json`.
pub const KIND: &str = "vault-sync-plan";
/// How far in the future `created_at` may lie (clock skew between the CI
/// job that planned and the one that applies) before the file is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A saved plan, as written to the file (see README, "Saved plans").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub format_version: u32,
    pub kind: String,
    /// The vault-sync version that made it.
    pub tool_version: String,
    /// RFC 3339, UTC, seconds.
    pub created_at: String,
    /// The owner identity's cluster: `--cluster-name`, or `default`.
    pub cluster: String,
    pub scope: ScopeRecord,
    pub vault: VaultRecord,
    pub options: OptionsRecord,
    /// Every action the plan found, including those not in `changes`
    /// (conflicts, errors, unchanged, kept, refused): for the reviewer.
    pub summary: Summary,
    /// The changes `run --plan` applies: creates, updates and deletions.
    pub changes: Vec<SavedChange>,
}

/// `-n` and `-l` as given to `plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRecord {
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultRecord {
    /// The address planned against, as configured (trailing `/` dropped).
    pub address: String,
    /// Vault Enterprise / OpenBao namespace, if any.
    pub namespace: Option<String>,
    /// `--index-mount`.
    pub index_mount: String,
    /// Every mount a change is on, with its KV version as the server said.
    pub mounts: Vec<MountRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRecord {
    /// With trailing slash, e.g. `secret/`.
    pub path: String,
    pub kv_version: u8,
}

/// The flags of `plan` that shaped the changes; `run --plan` applies them
/// as recorded (and refuses `--adopt`, `--no-prune` and `--destroy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsRecord {
    pub adopt: bool,
    pub prune: bool,
    pub destroy: bool,
    /// `--max-deletes` at plan time (for the reviewer; `run --plan`
    /// applies its own `--max-deletes` to the file's deletions).
    pub max_deletes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedAction {
    Create,
    Update,
    Delete,
}

/// One change. Fields that do not apply to its action are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedChange {
    pub action: SavedAction,
    /// `<mount><path in mount>`, as `plan` shows it.
    pub path: String,
    pub mount: String,
    pub kv_version: u8,
    pub owner: OwnerRecord,
    pub preserve_on_delete: bool,
    /// Create and update: key names only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeysRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_only: Option<bool>,
    /// A takeover: the owner that was gone at plan time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner: Option<OwnerRecord>,
    /// Create and update: the Secrets the content comes from, pinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourcePin>,
    /// Create and update: which keys of which Secret, under which prefix
    /// (the `vault-sync.io/secrets` entries); absent: the one Secret of
    /// `sources`, whole (auto-discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Vec<SelectionRecord>>,
    /// Delete: why it is an orphan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy: Option<bool>,
    /// Delete: the unmarked version vault-sync wrote, deleted only while
    /// still current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmarked_version: Option<u64>,
    /// Delete: what the API server said of the owner at plan time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_state: Option<OwnerStateRecord>,
    /// The Vault path as read at plan time.
    pub vault: VaultPin,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerRecord {
    pub cluster: String,
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
}

impl From<&Owner> for OwnerRecord {
    fn from(o: &Owner) -> Self {
        Self {
            cluster: o.cluster.to_string(),
            namespace: o.namespace.to_string(),
            kind: o.kind,
            name: o.name.to_string(),
        }
    }
}

impl OwnerRecord {
    pub fn owner(&self) -> Owner {
        Owner::of(self.kind, &self.cluster, &self.namespace, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysRecord {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// A source Secret, by identity and revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePin {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionRecord {
    pub name: String,
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl From<&SecretSelection> for SelectionRecord {
    fn from(s: &SecretSelection) -> Self {
        Self {
            name: s.name.clone(),
            keys: s.keys.clone(),
            prefix: s.prefix.clone(),
        }
    }
}

/// The owner of an orphan, as the API server described it at plan time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerStateRecord {
    /// 404.
    Gone,
    /// Exists without `vault-sync.io/path`.
    NotAnnotated,
    /// Exists, annotated, in scope, and no longer wants the path.
    Listed,
}

impl OwnerStateRecord {
    pub fn from_state(state: &OwnerState) -> Option<Self> {
        match state {
            OwnerState::Gone => Some(Self::Gone),
            OwnerState::NotAnnotated => Some(Self::NotAnnotated),
            OwnerState::Listed => Some(Self::Listed),
            OwnerState::OutOfScope | OwnerState::Unknown(_) => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::NotAnnotated => "present without vault-sync.io/path",
            Self::Listed => "present and annotated",
        }
    }
}

/// A Vault path as read: what a change is pinned to on the Vault side.
/// `ownership` holds only vault-sync's marker keys (`managed-by`,
/// `vault-sync.io/owner`, `vault-sync.io/preserve-on-delete`) as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum VaultPin {
    Absent,
    /// KV v2: the current version; KV v1: always 0 (it keeps none).
    Present {
        version: u64,
        ownership: BTreeMap<String, String>,
    },
    /// KV v2: the current version is soft-deleted or destroyed.
    Deleted {
        version: u64,
        ownership: BTreeMap<String, String>,
    },
}

fn marker_keys(md: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    md.iter()
        .filter(|(k, _)| [MANAGED_BY_KEY, OWNER_KEY, PRESERVE_KEY].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl VaultPin {
    /// What a content read found; `None` when the read failed.
    pub fn from_observed(observed: &Observed) -> Option<Self> {
        match observed {
            Observed::Absent => Some(Self::Absent),
            Observed::Present(s) if s.deleted => Some(Self::Deleted {
                version: s.version,
                ownership: marker_keys(&s.custom_metadata),
            }),
            Observed::Present(s) => Some(Self::Present {
                version: s.version,
                ownership: marker_keys(&s.custom_metadata),
            }),
            Observed::Failed { .. } => None,
        }
    }

    /// What a metadata read (KV v2) found.
    pub fn from_metadata(md: Option<&PathMetadata>) -> Self {
        match md {
            None => Self::Absent,
            Some(md) if md.current_deleted => Self::Deleted {
                version: md.current_version,
                ownership: marker_keys(&md.custom_metadata),
            },
            Some(md) => Self::Present {
                version: md.current_version,
                ownership: marker_keys(&md.custom_metadata),
            },
        }
    }

    /// What the orphan phase read; `None` when it could not read it.
    pub fn from_path_state(state: &PathState) -> Option<Self> {
        match state {
            PathState::Missing => Some(Self::Absent),
            PathState::Metadata(md) => Some(Self::from_metadata(Some(md))),
            PathState::NoMetadata => Some(Self::Present {
                version: 0,
                ownership: BTreeMap::new(),
            }),
            PathState::Unknown(_) => None,
        }
    }

    fn describe(&self) -> String {
        let owner = |o: &BTreeMap<String, String>| match o.get(OWNER_KEY) {
            Some(owner) => format!("owner {owner}"),
            None if o.is_empty() => "no marker".to_owned(),
            None => format!("marker {o:?}"),
        };
        match self {
            Self::Absent => "absent".to_owned(),
            Self::Present { version, ownership } => {
                format!("version {version}, {}", owner(ownership))
            }
            Self::Deleted { version, ownership } => {
                format!("version {version} deleted, {}", owner(ownership))
            }
        }
    }
}

/// Whether the path moved since the plan; the reason if it did.
pub fn vault_moved(pinned: &VaultPin, now: &VaultPin) -> Option<String> {
    (pinned != now).then(|| {
        format!(
            "the Vault path changed since the plan (then: {}; now: {})",
            pinned.describe(),
            now.describe()
        )
    })
}

/// Whether a source Secret moved since the plan: `Ok(None)` unchanged,
/// `Ok(Some(reason))` stale, `Err` when it could not be told.
pub fn secret_moved(pin: &SourcePin, now: &SecretFetch) -> Result<Option<String>, String> {
    let name = format!("Secret {}/{}", pin.namespace, pin.name);
    match now {
        SecretFetch::NotFound => Ok(Some(format!("{name} was deleted since the plan"))),
        SecretFetch::Failed { message, .. } => Err(format!("cannot re-read {name}: {message}")),
        SecretFetch::Found(_, None) => Err(format!(
            "the API server gave no uid/resourceVersion for {name}, so it cannot be compared with the plan"
        )),
        SecretFetch::Found(_, Some(meta)) if meta.uid != pin.uid => Ok(Some(format!(
            "{name} was deleted and recreated since the plan (uid {} → {})",
            pin.uid, meta.uid
        ))),
        SecretFetch::Found(_, Some(meta)) if meta.resource_version != pin.resource_version => {
            Ok(Some(format!(
                "{name} changed since the plan (resourceVersion {} → {})",
                pin.resource_version, meta.resource_version
            )))
        }
        SecretFetch::Found(..) => Ok(None),
    }
}

/// Whether an orphan's owner is still as the plan found it.
pub fn owner_moved(
    owner: &Owner,
    pinned: OwnerStateRecord,
    now: OwnerStateRecord,
) -> Option<String> {
    (pinned != now).then(|| {
        format!(
            "Deployment {} was {} at plan time and is {} now",
            owner.short(),
            pinned.describe(),
            now.describe()
        )
    })
}

/// What pins a create or update, captured while planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePin {
    pub sources: Vec<SourcePin>,
    pub select: Option<Vec<SelectionRecord>>,
    pub vault: VaultPin,
}

/// What pins a deletion, captured while judging orphans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePin {
    pub owner_state: OwnerStateRecord,
    pub vault: VaultPin,
}

/// Pins captured by `plan --out`.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    pub writes: BTreeMap<(KvLocation, Owner), WritePin>,
    pub deletes: BTreeMap<KvLocation, DeletePin>,
}

/// What the document says besides its changes.
#[derive(Debug, Clone)]
pub struct Header {
    pub tool_version: String,
    pub created_at: SystemTime,
    pub cluster: String,
    pub scope: ScopeRecord,
    pub vault_address: String,
    pub vault_namespace: Option<String>,
    pub index_mount: String,
    pub options: OptionsRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(
        "cannot save the plan: the change to {path} has nothing to pin it to ({why}), so it could not be applied exactly; fix that, then plan again"
    )]
    Unpinned { path: String, why: &'static str },
}

/// The document for `plan`, pinned with what it was computed from.
pub fn build(header: Header, plan: &Plan, pins: &Pins) -> Result<SavedPlan, BuildError> {
    let mut changes = Vec::new();
    let mut mounts = BTreeSet::new();
    for c in &plan.changes {
        let Some(location) = c.location() else {
            continue;
        };
        let base = |action| SavedChange {
            action,
            path: c.path().into_owned(),
            mount: location.mount.to_string(),
            kv_version: location.version.as_u8(),
            owner: OwnerRecord::from(&c.owner),
            preserve_on_delete: c.preserve_on_delete,
            keys: None,
            metadata_only: None,
            previous_owner: None,
            sources: Vec::new(),
            select: None,
            reason: None,
            destroy: None,
            unmarked_version: None,
            owner_state: None,
            vault: VaultPin::Absent,
        };
        let unpinned = |why| BuildError::Unpinned {
            path: c.path().into_owned(),
            why,
        };
        let saved = match &c.action {
            Action::Create { .. } | Action::Update { .. } if c.writes() => {
                let pin = pins
                    .writes
                    .get(&(location.clone(), c.owner.clone()))
                    .ok_or_else(|| {
                        unpinned("a source Secret or the Vault path was read without its revision")
                    })?;
                let mut saved = match &c.action {
                    Action::Create { keys } => SavedChange {
                        keys: Some(KeysRecord {
                            added: strings(keys),
                            changed: Vec::new(),
                            removed: Vec::new(),
                        }),
                        ..base(SavedAction::Create)
                    },
                    Action::Update {
                        keys,
                        metadata_only,
                        previous_owner,
                    } => SavedChange {
                        keys: Some(KeysRecord {
                            added: strings(&keys.added),
                            changed: strings(&keys.changed),
                            removed: strings(&keys.removed),
                        }),
                        metadata_only: Some(*metadata_only),
                        previous_owner: previous_owner.as_ref().map(OwnerRecord::from),
                        ..base(SavedAction::Update)
                    },
                    _ => continue,
                };
                saved.sources = pin.sources.clone();
                saved.select = pin.select.clone();
                saved.vault = pin.vault.clone();
                saved
            }
            Action::Delete {
                reason,
                destroy,
                unmarked_version,
            } => {
                let pin = pins
                    .deletes
                    .get(location)
                    .ok_or_else(|| unpinned("its metadata or its owner was not read"))?;
                SavedChange {
                    reason: Some(reason.to_string()),
                    destroy: Some(*destroy),
                    unmarked_version: unmarked_version.map(NonZeroU64::get),
                    owner_state: Some(pin.owner_state),
                    vault: pin.vault.clone(),
                    ..base(SavedAction::Delete)
                }
            }
            _ => continue,
        };
        mounts.insert(MountRecord {
            path: location.mount.to_string(),
            kv_version: location.version.as_u8(),
        });
        changes.push(saved);
    }
    Ok(SavedPlan {
        format_version: FORMAT_VERSION,
        kind: KIND.to_owned(),
        tool_version: header.tool_version,
        created_at: humantime::format_rfc3339_seconds(header.created_at).to_string(),
        cluster: header.cluster,
        scope: header.scope,
        vault: VaultRecord {
            address: header.vault_address,
            namespace: header.vault_namespace,
            index_mount: header.index_mount,
            mounts: mounts.into_iter().collect(),
        },
        options: header.options,
        summary: plan.summary(),
        changes,
    })
}

/// What `run --plan` is run with, to compare with the file.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub cluster: &'a str,
    /// `--cluster-name` given: paths are under `clusters/<name>/`.
    pub cluster_prefix: Option<&'a str>,
    pub vault_address: &'a str,
    pub vault_namespace: Option<&'a str>,
    pub index_mount: &'a str,
    pub namespaces: &'a [String],
    pub selector: Option<&'a str>,
    pub now: SystemTime,
    /// `--max-plan-age`; `None`: any age.
    pub max_age: Option<Duration>,
}

/// Why a plan file is refused whole, before any request to Vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the plan file is not a vault-sync plan: {0}; pass the file `vault-sync plan --out` wrote"
    )]
    Unreadable(String),
    #[error(
        "the plan file has format_version {found}, and this vault-sync ({tool}) reads format_version {FORMAT_VERSION} only; apply it with the vault-sync version that made it, or make a new plan"
    )]
    UnknownFormat { found: u64, tool: &'static str },
    #[error(
        "the plan was made with {what} {planned}, and this run has {current}; apply it with the flags it was made with, or make a new plan"
    )]
    Mismatch {
        what: &'static str,
        planned: String,
        current: String,
    },
    #[error(
        "the plan was made at {created_at}, {age} ago, which is older than --max-plan-age {max}; make a new plan (or raise --max-plan-age; 0 disables the check)"
    )]
    TooOld {
        created_at: String,
        age: String,
        max: String,
    },
    #[error(
        "the plan's created_at {0:?} is not a time in the past (RFC 3339, UTC); the file was edited or the clocks disagree: make a new plan"
    )]
    BadTime(String),
    #[error(
        "change {number} of the plan ({path}): {problem}; the file was edited or is damaged, so none of it is applied: make a new plan"
    )]
    Change {
        number: usize,
        path: String,
        problem: String,
    },
}

/// A change of a checked plan, typed.
#[derive(Debug, Clone)]
pub struct CheckedChange {
    pub location: KvLocation,
    pub owner: Owner,
    pub preserve_on_delete: bool,
    /// As `plan` showed it.
    pub action: Action,
    pub pin: CheckedPin,
}

#[derive(Debug, Clone)]
pub enum CheckedPin {
    Write {
        sources: Vec<SourcePin>,
        /// The spec that derives the content from `sources` (its path is
        /// the change's, for messages only).
        spec: SyncSpec,
        references: Vec<SecretReference>,
        vault: VaultPin,
    },
    Delete {
        owner_state: OwnerStateRecord,
        vault: VaultPin,
    },
}

impl CheckedChange {
    /// The change as the report shows it (a write carries no payload).
    pub fn to_change(&self) -> Change {
        let write = match &self.pin {
            CheckedPin::Write { .. } => Some(super::plan::Write {
                data: None,
                cas: None,
                metadata: None,
                claims: false,
            }),
            CheckedPin::Delete { .. } => None,
        };
        Change {
            target: Target::Located(self.location.clone()),
            owner: self.owner.clone(),
            action: self.action.clone(),
            write: write.map(Box::new),
            write_released: false,
            preserve_on_delete: self.preserve_on_delete,
        }
    }
}

/// Reads the document: its `format_version` first, so that a file of
/// another version is refused as such, not for a field this build lacks.
pub fn parse(text: &str) -> Result<SavedPlan, Refusal> {
    #[derive(Deserialize)]
    struct Version {
        format_version: Option<serde_json::Value>,
        kind: Option<String>,
    }
    let version: Version =
        serde_json::from_str(text).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    if version.kind.as_deref() != Some(KIND) {
        return Err(Refusal::Unreadable(format!("its kind is not {KIND:?}")));
    }
    match version.format_version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(Refusal::UnknownFormat {
                found,
                tool: crate::VERSION,
            });
        }
        None => {
            return Err(Refusal::Unreadable(
                "format_version is missing or not a number".into(),
            ));
        }
    }
    serde_json::from_str(text).map_err(|e| Refusal::Unreadable(e.to_string()))
}

fn mismatch(what: &'static str, planned: String, current: String) -> Refusal {
    Refusal::Mismatch {
        what,
        planned,
        current,
    }
}

/// Checks the file against this run's flags and the clock, and each
/// change against the plan's own scope; returns the changes typed. Any
/// failure refuses the whole file.
pub fn check(plan: &SavedPlan, expect: &Expect<'_>) -> Result<Vec<CheckedChange>, Refusal> {
    if plan.cluster != expect.cluster {
        return Err(mismatch(
            "cluster",
            format!("{:?}", plan.cluster),
            format!("{:?} (--cluster-name)", expect.cluster),
        ));
    }
    if plan.vault.address.trim_end_matches('/') != expect.vault_address.trim_end_matches('/') {
        return Err(mismatch(
            "Vault address",
            plan.vault.address.clone(),
            expect.vault_address.to_owned(),
        ));
    }
    if plan.vault.namespace.as_deref() != expect.vault_namespace {
        return Err(mismatch(
            "Vault namespace",
            format!("{:?}", plan.vault.namespace),
            format!("{:?}", expect.vault_namespace),
        ));
    }
    if plan.vault.index_mount != expect.index_mount {
        return Err(mismatch(
            "--index-mount",
            plan.vault.index_mount.clone(),
            expect.index_mount.to_owned(),
        ));
    }
    let set = |n: &[String]| n.iter().cloned().collect::<BTreeSet<_>>();
    if set(&plan.scope.namespaces) != set(expect.namespaces) {
        return Err(mismatch(
            "namespaces (-n)",
            format!("{:?}", plan.scope.namespaces),
            format!("{:?}", expect.namespaces),
        ));
    }
    if plan.scope.selector.as_deref() != expect.selector {
        return Err(mismatch(
            "selector (-l)",
            format!("{:?}", plan.scope.selector),
            format!("{:?}", expect.selector),
        ));
    }
    let created = humantime::parse_rfc3339(&plan.created_at)
        .map_err(|_| Refusal::BadTime(plan.created_at.clone()))?;
    let age = match expect.now.duration_since(created) {
        Ok(age) => age,
        Err(ahead) if ahead.duration() <= MAX_CLOCK_SKEW => Duration::ZERO,
        Err(_) => return Err(Refusal::BadTime(plan.created_at.clone())),
    };
    if let Some(max) = expect.max_age
        && age > max
    {
        return Err(Refusal::TooOld {
            created_at: plan.created_at.clone(),
            age: humantime::format_duration(Duration::from_secs(age.as_secs())).to_string(),
            max: humantime::format_duration(max).to_string(),
        });
    }
    let mut seen = BTreeSet::new();
    plan.changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let checked = check_change(plan, c, expect).map_err(|problem| Refusal::Change {
                number: i + 1,
                path: c.path.clone(),
                problem,
            })?;
            if !seen.insert(checked.location.clone()) {
                return Err(Refusal::Change {
                    number: i + 1,
                    path: c.path.clone(),
                    problem: "another change of the plan is on the same path".into(),
                });
            }
            Ok(checked)
        })
        .collect()
}

/// One change of the file, checked against the plan's own rules: where it
/// writes, whose it is, its pins, then what it does.
fn check_change(
    plan: &SavedPlan,
    c: &SavedChange,
    expect: &Expect<'_>,
) -> Result<CheckedChange, String> {
    let location = check_location(plan, c, expect)?;
    let owner = check_owner(plan, c)?;
    let pin = check_pin(plan, c, &owner, location.version)?;
    let action = saved_action(plan, c, location.version)?;
    Ok(CheckedChange {
        location,
        owner,
        preserve_on_delete: c.preserve_on_delete,
        action,
        pin,
    })
}

/// The change's path: inside one of the plan's mounts, well-formed, not in
/// the index folder, and where this cluster writes.
fn check_location(
    plan: &SavedPlan,
    c: &SavedChange,
    expect: &Expect<'_>,
) -> Result<KvLocation, String> {
    let version = match c.kv_version {
        1 => KvVersion::V1,
        2 => KvVersion::V2,
        v => return Err(format!("kv_version {v} is neither 1 nor 2")),
    };
    if !plan
        .vault
        .mounts
        .iter()
        .any(|m| m.path == c.mount && m.kv_version == c.kv_version)
    {
        return Err(format!(
            "its mount {:?} (KV v{}) is not among the plan's mounts",
            c.mount, c.kv_version
        ));
    }
    let rel = c
        .path
        .strip_prefix(c.mount.as_str())
        .filter(|rel| !rel.is_empty())
        .ok_or_else(|| format!("the path is not inside its mount {:?}", c.mount))?;
    vault_path::validate(&c.path).map_err(|e| e.to_string())?;
    if c.path.trim() != c.path {
        return Err("the path has surrounding whitespace".into());
    }
    let location = KvLocation {
        mount: c.mount.as_str().into(),
        rel: rel.into(),
        version,
    };
    if vault_path::is_index_path(rel) {
        return Err("the path is in vault-sync's reserved index folder".into());
    }
    if !orphans::within_reach(&location, expect.cluster_prefix) {
        return Err(match expect.cluster_prefix {
            Some(name) => format!(
                "the path is outside clusters/{name}/ in its mount, where this cluster writes"
            ),
            None => "the path is under clusters/ on KV v1, where only named clusters write".into(),
        });
    }
    Ok(location)
}

/// The change's owner: of the plan's cluster and scope, and well-formed.
fn check_owner(plan: &SavedPlan, c: &SavedChange) -> Result<Owner, String> {
    let owner = c.owner.owner();
    if owner.cluster != plan.cluster {
        return Err(format!(
            "its owner {owner} is not of the plan's cluster {:?}",
            plan.cluster
        ));
    }
    if !plan.scope.namespaces.is_empty()
        && !plan.scope.namespaces.iter().any(|n| owner.namespace == *n)
    {
        return Err(format!(
            "its owner's namespace {:?} is outside the plan's namespaces (-n)",
            owner.namespace
        ));
    }
    if [&owner.namespace, &owner.name]
        .iter()
        .any(|s| s.is_empty() || s.contains('/'))
    {
        return Err("its owner is not a valid namespace/Deployment".into());
    }
    Ok(owner)
}

/// What a run re-checks before applying the change, with the fields that
/// belong to its action only.
fn check_pin(
    plan: &SavedPlan,
    c: &SavedChange,
    owner: &Owner,
    version: KvVersion,
) -> Result<CheckedPin, String> {
    let unexpected = |field: &str| Err(format!("{field} does not belong to a {:?}", c.action));
    match c.action {
        SavedAction::Create | SavedAction::Update => {
            if c.reason.is_some() || c.destroy.is_some() || c.owner_state.is_some() {
                return unexpected("reason/destroy/owner_state");
            }
            write_pin(c, owner)
        }
        SavedAction::Delete => {
            if c.keys.is_some() || !c.sources.is_empty() || c.select.is_some() {
                return unexpected("keys/sources/select");
            }
            if c.preserve_on_delete {
                return Err(
                    "a path with preserve-on-delete is never deleted, but the plan deletes it"
                        .into(),
                );
            }
            // KV v1 has no soft delete: every deletion there destroys.
            if c.destroy != Some(plan.options.destroy || version == KvVersion::V1) {
                return Err("its destroy flag is not the plan's --destroy".into());
            }
            delete_pin(c, owner, version)
        }
    }
}

/// The plan's action the change stands for.
fn saved_action(plan: &SavedPlan, c: &SavedChange, version: KvVersion) -> Result<Action, String> {
    Ok(match c.action {
        SavedAction::Create => {
            let keys = c.keys.clone().ok_or("a create without keys")?;
            if !keys.changed.is_empty()
                || !keys.removed.is_empty()
                || c.metadata_only.is_some()
                || c.previous_owner.is_some()
            {
                return Err("a create lists changed or removed keys, or a previous owner".into());
            }
            Action::Create {
                keys: names(keys.added).into(),
            }
        }
        SavedAction::Update => {
            let keys = c.keys.clone().ok_or("an update without keys")?;
            Action::Update {
                keys: Box::new(KeyChanges {
                    added: names(keys.added),
                    changed: names(keys.changed),
                    removed: names(keys.removed),
                }),
                metadata_only: c.metadata_only.ok_or("an update without metadata_only")?,
                previous_owner: c.previous_owner.as_ref().map(OwnerRecord::owner),
            }
        }
        SavedAction::Delete => Action::Delete {
            reason: c
                .reason
                .as_deref()
                .ok_or("a delete without a reason")?
                .into(),
            destroy: plan.options.destroy || version == KvVersion::V1,
            // A version 0 names no write (versions start at 1).
            unmarked_version: c.unmarked_version.and_then(NonZeroU64::new),
        },
    })
}

/// A write's sources must be Secrets of its owner's namespace (a
/// Deployment reads no other), named by its selection.
fn write_pin(c: &SavedChange, owner: &Owner) -> Result<CheckedPin, String> {
    if c.sources.is_empty() {
        return Err("a write without source Secrets".into());
    }
    if let Some(other) = c.sources.iter().find(|s| owner.namespace != s.namespace) {
        return Err(format!(
            "its source Secret {}/{} is outside its owner's namespace {:?}",
            other.namespace, other.name, owner.namespace
        ));
    }
    let names: BTreeSet<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
    if names.len() != c.sources.len() {
        return Err("a source Secret is listed twice".into());
    }
    let (mode, references) = match &c.select {
        None => {
            let [only] = c.sources.as_slice() else {
                return Err("a whole-Secret write must have exactly one source".into());
            };
            (
                Mode::AutoDiscover,
                vec![SecretReference {
                    name: only.name.clone(),
                    optional: false,
                }],
            )
        }
        Some(selections) => {
            let selected: BTreeSet<&str> = selections.iter().map(|s| s.name.as_str()).collect();
            if selected != names || selections.iter().any(|s| s.keys.is_empty()) {
                return Err("its selection does not match its source Secrets".into());
            }
            (
                Mode::Custom(
                    selections
                        .iter()
                        .map(|s| SecretSelection {
                            name: s.name.clone(),
                            keys: s.keys.clone(),
                            prefix: s.prefix.clone(),
                        })
                        .collect(),
                ),
                Vec::new(),
            )
        }
    };
    Ok(CheckedPin::Write {
        sources: c.sources.clone(),
        spec: SyncSpec {
            path: c.path.clone(),
            mode,
            preserve_on_delete: c.preserve_on_delete,
            reconcile: Reconcile::Default,
        },
        references,
        vault: c.vault.clone(),
    })
}

/// A deletion must have been of a path marked for its owner (or, with
/// `unmarked_version`, of vault-sync's own unmarked write), never kept.
fn delete_pin(c: &SavedChange, owner: &Owner, version: KvVersion) -> Result<CheckedPin, String> {
    let owner_state = c.owner_state.ok_or("a delete without owner_state")?;
    match (&c.vault, version) {
        (VaultPin::Present { ownership, .. }, KvVersion::V2) => {
            let marked = ownership.get(OWNER_KEY).map(String::as_str);
            let preserved = ownership.get(PRESERVE_KEY).is_some_and(|v| v == "true");
            let ours = marked == Some(owner.to_string().as_str()) && !preserved;
            let unmarked = ownership.is_empty() && c.unmarked_version.is_some();
            if !(ours || unmarked) {
                return Err(
                    "the deleted path was not marked for its owner without preserve-on-delete"
                        .into(),
                );
            }
        }
        (VaultPin::Present { version: 0, .. }, KvVersion::V1) => {}
        _ => return Err("a delete of a path that was not present".into()),
    }
    Ok(CheckedPin::Delete {
        owner_state,
        vault: c.vault.clone(),
    })
}

/// Key names as the saved plan stores them.
fn strings(keys: &[Name]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// Key names as the plan holds them.
fn names(keys: Vec<String>) -> Vec<Name> {
    keys.into_iter().map(Name::from).collect()
}

#[cfg(test)]
mod tests;
