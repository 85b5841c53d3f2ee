//! The orphan phase of the shell: reading and writing the index, asking the
//! API server about candidate owners, reading candidate paths' metadata.
//! The judgement itself is pure ([`crate::core::orphans`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};

use super::Engine;
use super::ports::{Cluster, SecretStore, WorkloadState};
use crate::core::error_kind::ErrorKind;
use crate::core::index::{self, Index, IndexEntry, IndexError};
use crate::core::orphans::{self, OrphanScope, OwnerState, PathState};
use crate::core::ownership::{Owner, OwnerPool};
use crate::core::plan::{self, Action, Change, Located, Observed, Target};
use crate::core::saved_plan::{DeletePin, OwnerStateRecord, VaultPin};
use crate::core::vault_path::{self, KvLocation, KvVersion};
use crate::core::workload::Kind;
use crate::vault::VaultError;

/// The index as read at the start of a run.
#[derive(Debug, Clone)]
pub struct IndexState {
    pub location: KvLocation,
    /// KV v2 version read (0: no index yet); the check-and-set base.
    pub version: u64,
    pub index: Index,
    /// The index secret carries its own marker, naming this cluster.
    pub marked: bool,
    /// There was no index when the run started: paths found carrying this
    /// cluster's marker then mean the index was lost.
    pub absent_at_start: bool,
    /// What stands at the location is unusable and is written over by the
    /// next update, even one that changes no entry (`--rebuild-index`).
    pub replace: bool,
}

impl IndexState {
    fn new(location: KvLocation, loaded: index::Loaded, absent_at_start: bool) -> Self {
        Self {
            location,
            version: loaded.version,
            index: loaded.index,
            marked: loaded.marked,
            absent_at_start,
            replace: false,
        }
    }
}

/// Why the index could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum IndexFailure {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{error}; {fix}")]
    Index { error: IndexError, fix: String },
}

impl IndexFailure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Vault(e) => e.kind(),
            Self::Index { error, .. } => error.kind(),
        }
    }

    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }
}

/// Orphan actions found by a run.
#[derive(Debug, Default)]
pub struct OrphanFindings {
    pub changes: Vec<Change>,
    /// Entries to drop from the index once the run's deletions are done.
    pub forget: BTreeSet<KvLocation>,
    /// What each deletion was judged on, for a saved plan.
    pub pins: BTreeMap<KvLocation, DeletePin>,
}

impl<C: Cluster, S: SecretStore> Engine<C, S> {
    /// `<index-mount>vault-sync/index/<cluster>`.
    pub async fn index_location(&self) -> Result<KvLocation, VaultError> {
        let mount_path = self.scope.index_mount.trim_end_matches('/');
        let mount = self.vault.lookup_mount(mount_path).await?;
        if mount.kv_version != Some(KvVersion::V2) {
            return Err(VaultError::InvalidPath {
                path: mount.path.to_string(),
                message: "the index mount (--index-mount) must be a KV v2 mount".into(),
            });
        }
        Ok(vault_path::index_location(&mount, &self.scope.cluster))
    }

    /// Where a rebuild would scan, for error messages.
    fn scan_hint(&self, location: &KvLocation) -> String {
        match &self.scope.cluster_prefix {
            Some(name) => format!("{}clusters/{name}", location.mount),
            None => format!("{}<prefix>", location.mount),
        }
    }

    fn index_failure(&self, location: &KvLocation, error: IndexError) -> IndexFailure {
        let fix = error.fix(&self.scan_hint(location));
        IndexFailure::Index { error, fix }
    }

    /// Reads the index and judges whether it may be used: it must carry
    /// this cluster's index marker and decode whole.
    pub async fn read_index(&self) -> Result<IndexState, IndexFailure> {
        self.read_index_sharing(&mut OwnerPool::default()).await
    }

    /// [`Engine::read_index`], its owners shared with `owners`.
    pub(super) async fn read_index_sharing(
        &self,
        owners: &mut OwnerPool,
    ) -> Result<IndexState, IndexFailure> {
        let location = self.index_location().await?;
        let read = self.vault.read_record(&location).await?;
        let absent_at_start = matches!(read, index::IndexRead::Absent { .. });
        match index::load_with(&location.to_string(), &self.scope.cluster, read, owners) {
            Ok(loaded) => Ok(IndexState::new(location, loaded, absent_at_start)),
            Err(e) => Err(self.index_failure(&location, e)),
        }
    }

    /// The index for `prune --rebuild-index`, which replaces what it cannot
    /// use: an untrusted, unreadable or deleted index starts empty (said
    /// in a warning), so the rebuilt one is written over it.
    pub async fn read_index_for_rebuild(&self) -> Result<IndexState, VaultError> {
        let location = self.index_location().await?;
        let read = self.vault.read_record(&location).await?;
        let version = match &read {
            index::IndexRead::Present { version, .. } => *version,
            index::IndexRead::Absent { .. } => 0,
        };
        match index::load(&location.to_string(), &self.scope.cluster, read) {
            Ok(loaded) => Ok(IndexState::new(location, loaded, false)),
            Err(e) => {
                tracing::warn!(
                    error_type = e.metric_label(),
                    "{e}; --rebuild-index replaces it with what the scan finds"
                );
                Ok(IndexState {
                    location,
                    version,
                    index: Index::new(),
                    marked: false,
                    absent_at_start: false,
                    replace: true,
                })
            }
        }
    }

    /// Re-reads the index when a batch found what a stale index would
    /// misjudge: unmarked content that may be a concurrent run's create
    /// caught before its marker (see [`plan::may_be_unindexed_create`]),
    /// or, with no index at the start, paths marked by this cluster (a
    /// concurrent first run, or a lost index). If the read fails, the
    /// index as read stands: such a path is a conflict for this run only.
    pub(super) async fn refresh_index_for(
        &self,
        state: &mut IndexState,
        located: &[Located],
        observed: &BTreeMap<KvLocation, Observed>,
    ) {
        let stale = |state: &IndexState| {
            observed
                .iter()
                .any(|(l, o)| plan::may_be_unindexed_create(l, o, &state.index))
                || (state.absent_at_start && !self.lost(state, located, observed).is_empty())
        };
        if !stale(state) {
            return;
        }
        match self.read_index().await {
            Ok(fresh) => {
                tracing::debug!(
                    version = fresh.version,
                    "re-read the vault-sync index: another run may have changed it"
                );
                *state = IndexState {
                    absent_at_start: state.absent_at_start,
                    ..fresh
                };
            }
            Err(e) => {
                tracing::warn!(
                    error_type = e.metric_label(),
                    "cannot re-read the vault-sync index; unmarked paths stay conflicts this run: {e}"
                );
            }
        }
    }

    /// With no index at the start of the run, paths that carry this
    /// cluster's marker but are not in the index (read afresh) mean the
    /// index was lost: the run must not go on as if nothing had been
    /// written before, forgetting every orphan for good.
    pub(super) fn check_not_lost(
        &self,
        state: &IndexState,
        located: &[Located],
        observed: &BTreeMap<KvLocation, Observed>,
    ) -> Result<(), IndexFailure> {
        if !state.absent_at_start {
            return Ok(());
        }
        let lost = self.lost(state, located, observed);
        match lost.first() {
            None => Ok(()),
            Some(example) => Err(self.index_failure(
                &state.location,
                IndexError::Lost {
                    location: state.location.to_string(),
                    marked: lost.len(),
                    example: example.to_string(),
                },
            )),
        }
    }

    /// Desired paths marked by the Deployment that wants them but missing
    /// from the index.
    fn lost<'a>(
        &self,
        state: &IndexState,
        located: &'a [Located],
        observed: &BTreeMap<KvLocation, Observed>,
    ) -> Vec<&'a KvLocation> {
        located
            .iter()
            .filter(|l| {
                observed
                    .get(&l.location)
                    .is_some_and(|o| plan::marked_but_unindexed(l, o, &state.index))
            })
            .map(|l| &l.location)
            .collect()
    }

    /// Adds and removes entries with check-and-set. When another run
    /// changed the index in between (CAS mismatch), the index is read again
    /// and the same change applied to it: concurrent runs merge, never
    /// overwrite each other's entries.
    pub async fn update_index(
        &self,
        state: &mut IndexState,
        add: &Index,
        remove: &BTreeSet<KvLocation>,
    ) -> Result<(), IndexFailure> {
        const ATTEMPTS: usize = 5;
        /// More new entries than this are merged by rebuilding the tree
        /// (linear in the index) rather than inserted one by one.
        const BULK_ADD: usize = 64;
        for attempt in 1..=ATTEMPTS {
            // Most batches add nothing new: spare the write of a large index.
            let changes = add.iter().any(|(l, e)| state.index.get(l) != Some(e))
                || remove.iter().any(|l| state.index.contains_key(l));
            if !changes && !state.replace {
                return Ok(());
            }
            // A new index carries its marker before its content, so that
            // no content ever stands at the index location unmarked.
            self.mark_index(state).await?;
            // Changed in place, not on a copy (a copy of a 100,000-entry
            // index was the largest allocation of a late batch); what a
            // failed write changed is put back from `undo`.
            let mut undo: Vec<(KvLocation, Option<IndexEntry>)> = Vec::new();
            let mut fresh = Index::new();
            for (l, e) in add {
                if state.index.get(l) != Some(e) {
                    undo.push((l.clone(), state.index.get(l).cloned()));
                    fresh.insert(l.clone(), e.clone());
                }
            }
            if fresh.len() > BULK_ADD {
                // Merged in bulk: the tree is rebuilt with full nodes. A
                // first run adds each batch's paths after the last ones,
                // and inserting them one by one left every node half
                // empty: twice the index's memory at the end of the run.
                state.index.append(&mut fresh);
            } else {
                state.index.extend(fresh);
            }
            for l in remove {
                if let Some(old) = state.index.remove(l) {
                    undo.push((l.clone(), Some(old)));
                }
            }
            let written = self
                .vault
                .write_record(&state.location, index::Encoded(&state.index), state.version)
                .await;
            if written.is_err() {
                for (l, old) in undo.into_iter().rev() {
                    match old {
                        Some(e) => state.index.insert(l, e),
                        None => state.index.remove(&l),
                    };
                }
            }
            match written {
                Ok(()) => {
                    state.version += 1;
                    state.replace = false;
                    return Ok(());
                }
                Err(VaultError::CasMismatch { .. }) if attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "the index changed concurrently; merging");
                    let absent_at_start = state.absent_at_start;
                    *state = self.read_index().await?;
                    state.absent_at_start = absent_at_start;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(VaultError::CasMismatch {
            path: state.location.to_string(),
        }
        .into())
    }

    /// Writes the index's own marker if it does not name this cluster yet
    /// (a first write, or an index written before the cluster key).
    async fn mark_index(&self, state: &mut IndexState) -> Result<(), VaultError> {
        if state.marked {
            return Ok(());
        }
        self.vault
            .write_metadata(&state.location, &index::marker(&self.scope.cluster))
            .await?;
        state.marked = true;
        Ok(())
    }

    /// Judges every index entry this run may judge.
    pub async fn find_orphans(
        &self,
        index: &Index,
        desired: &impl orphans::Wanted,
        held: &BTreeSet<Owner>,
        listed: &impl Fn(&Owner) -> bool,
        kinds: &[Kind],
    ) -> OrphanFindings {
        let scope = OrphanScope {
            cluster: &self.scope.cluster,
            namespaces: &self.scope.namespaces,
            prefix: self.scope.cluster_prefix.as_deref(),
            kinds,
            rules: &self.scope.rules,
        };
        let candidates = orphans::candidates(index, desired, held, &scope);
        if candidates.is_empty() {
            return OrphanFindings::default();
        }

        // One GET per candidate owner, not per path.
        let owners: BTreeSet<Owner> = candidates.iter().map(|(_, e)| e.owner.clone()).collect();
        let owner_states: BTreeMap<Owner, OwnerState> = stream::iter(owners)
            .map(|owner| async move {
                let state = match self
                    .kube
                    .workload(owner.kind, &owner.namespace, &owner.name)
                    .await
                {
                    Ok(WorkloadState::Gone) => OwnerState::Gone,
                    Ok(WorkloadState::Exists { annotated: false }) => OwnerState::NotAnnotated,
                    Ok(WorkloadState::Exists { annotated: true }) if listed(&owner) => {
                        OwnerState::Listed
                    }
                    Ok(WorkloadState::Exists { annotated: true }) => OwnerState::OutOfScope,
                    Err(e) => OwnerState::Unknown(e.to_string()),
                };
                (owner, state)
            })
            .buffer_unordered(self.scope.concurrency)
            .collect()
            .await;

        let scope = &scope;
        let verdicts: Vec<_> = stream::iter(candidates)
            .map(|(loc, entry)| {
                let owner_state = owner_states
                    .get(&entry.owner)
                    .cloned()
                    .unwrap_or(OwnerState::Unknown("not looked up".into()));
                async move {
                    let path_state = if owner_state == OwnerState::OutOfScope
                        || !orphans::within_reach(&loc, scope.prefix)
                    {
                        // Not judged: spare the read.
                        PathState::Unknown(String::new())
                    } else {
                        self.path_state(&loc).await
                    };
                    let verdict = orphans::judge(
                        &loc,
                        &entry,
                        &owner_state,
                        &path_state,
                        scope,
                        self.scope.destroy,
                    );
                    let pin = matches!(verdict.action, Some(Action::Delete { .. }))
                        .then(|| {
                            Some(DeletePin {
                                owner_state: OwnerStateRecord::from_state(&owner_state)?,
                                vault: VaultPin::from_path_state(&path_state)?,
                            })
                        })
                        .flatten();
                    (loc, entry, verdict, pin)
                }
            })
            .buffer_unordered(self.scope.concurrency)
            .collect()
            .await;

        let mut findings = OrphanFindings::default();
        for (loc, entry, verdict, pin) in verdicts {
            if let Some(pin) = pin {
                findings.pins.insert(loc.clone(), pin);
            }
            if verdict.forget {
                findings.forget.insert(loc.clone());
            }
            if let Some(action) = verdict.action {
                findings.changes.push(Change {
                    target: Target::Located(loc),
                    owner: entry.owner,
                    action,
                    write: None,
                    write_released: false,
                    preserve_on_delete: entry.preserve_on_delete,
                });
            }
        }
        findings
    }

    /// The path's ownership marker, read now.
    pub async fn path_state(&self, loc: &KvLocation) -> PathState {
        match loc.version {
            KvVersion::V2 => match self.vault.read_metadata(loc).await {
                Ok(Some(md)) => PathState::Metadata(md),
                Ok(None) => PathState::Missing,
                Err(e) => PathState::Unknown(e.to_string()),
            },
            KvVersion::V1 => match self.vault.read(loc).await {
                Ok(Observed::Present(_)) => PathState::NoMetadata,
                Ok(_) => PathState::Missing,
                Err(e) => PathState::Unknown(e.to_string()),
            },
        }
    }

    /// Rebuilds the index from metadata under `scan` (e.g. `secret/apps`):
    /// every path whose marker names this cluster's vault-sync is recorded.
    /// Costs one request per path under the prefix; meant for recovery.
    pub async fn rebuild_index(&self, scan: &str) -> Result<Index, VaultError> {
        let mount = self.vault.lookup_mount(scan).await?;
        if mount.kv_version != Some(KvVersion::V2) {
            return Err(VaultError::InvalidPath {
                path: scan.to_owned(),
                message: "--scan needs a KV v2 path (KV v1 keeps no ownership metadata)".into(),
            });
        }
        let start = scan
            .strip_prefix(mount.path.as_str())
            .unwrap_or("")
            .trim_start_matches("metadata/")
            .trim_end_matches('/');
        let mut folders = vec![if start.is_empty() {
            String::new()
        } else {
            format!("{start}/")
        }];
        let mut found = Index::new();
        while let Some(folder) = folders.pop() {
            for key in self.vault.list(&mount.path, &folder).await? {
                let rel = format!("{folder}{key}");
                if rel.ends_with('/') {
                    folders.push(rel);
                    continue;
                }
                let loc = KvLocation {
                    mount: mount.path.clone(),
                    rel: rel.into(),
                    version: KvVersion::V2,
                };
                // A path whose current version is already deleted has
                // nothing left to prune: not recorded, never deleted again.
                if let Some(md) = self.vault.read_metadata(&loc).await?
                    && !md.current_deleted
                    && let crate::core::ownership::Ownership::VaultSync {
                        owner,
                        preserve_on_delete,
                    } = crate::core::ownership::read(&md.custom_metadata)
                    && owner.cluster == self.scope.cluster
                {
                    found.insert(loc, IndexEntry::new(owner, preserve_on_delete));
                }
            }
        }
        Ok(found)
    }
}
