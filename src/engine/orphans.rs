//! The orphan phase of the shell: reading and writing the index, asking the
//! API server about candidate owners, reading candidate paths' metadata.
//! The judgement itself is pure ([`crate::core::orphans`]).

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};

use super::Engine;
use crate::core::annotations;
use crate::core::index::{self, Index, IndexEntry};
use crate::core::orphans::{self, OrphanScope, OwnerState, PathState};
use crate::core::ownership::{MANAGED_BY_KEY, Owner};
use crate::core::plan::{self, Change, Observed};
use crate::core::vault_path::{self, KvLocation, KvVersion};
use crate::k8s;
use crate::vault::VaultError;

/// `managed-by` value on the index secret itself, so that no Deployment can
/// claim (or `--adopt`) the index path.
pub const INDEX_MANAGER: &str = "vault-sync-index";

/// The index as read at the start of a run.
#[derive(Debug, Clone)]
pub struct IndexState {
    pub location: KvLocation,
    /// KV v2 version read (0: no index yet); the check-and-set base.
    pub version: u64,
    pub index: Index,
    /// The index secret carries its own `managed-by` marker.
    pub marked: bool,
}

/// Orphan actions found by a run.
#[derive(Debug, Default)]
pub struct OrphanFindings {
    pub changes: Vec<Change>,
    /// Entries to drop from the index once the run's deletions are done.
    pub forget: BTreeSet<KvLocation>,
}

impl Engine {
    /// `<index-mount>vault-sync/index/<cluster>`.
    pub async fn index_location(&self) -> Result<KvLocation, VaultError> {
        let mount_path = self.scope.index_mount.trim_end_matches('/');
        let mount = self.vault.lookup_mount(mount_path).await?;
        if mount.kv_version != Some(KvVersion::V2) {
            return Err(VaultError::InvalidPath {
                path: mount.path,
                message: "the index mount (--index-mount) must be a KV v2 mount".into(),
            });
        }
        let raw = format!("{}vault-sync/index/{}", mount.path, self.scope.cluster);
        vault_path::locate(&raw, &mount, None).map_err(|e| VaultError::InvalidPath {
            path: raw,
            message: e.to_string(),
        })
    }

    pub async fn read_index(&self) -> Result<IndexState, VaultError> {
        let location = self.index_location().await?;
        let raw = self.vault.read_raw(&location).await?;
        let (index, bad) = index::decode(&raw.data);
        for path in bad {
            tracing::warn!(
                path = path.as_str(),
                "ignoring a malformed entry in the vault-sync index"
            );
        }
        Ok(IndexState {
            location,
            version: raw.version,
            index,
            marked: raw.custom_metadata.get(MANAGED_BY_KEY).map(String::as_str)
                == Some(INDEX_MANAGER),
        })
    }

    /// Re-reads the index when a batch found unmarked content that may be
    /// a concurrent run's create caught before its marker (see
    /// [`plan::may_be_unindexed_create`]): that run recorded the path
    /// before writing it, so the fresh index tells it apart from someone
    /// else's secret. If the read fails, the index as read stands and such
    /// a path is planned as a conflict, which the next run clears.
    pub(super) async fn refresh_index_for(
        &self,
        state: &mut IndexState,
        observed: &BTreeMap<KvLocation, Observed>,
    ) {
        if !observed
            .iter()
            .any(|(l, o)| plan::may_be_unindexed_create(l, o, &state.index))
        {
            return;
        }
        match self.read_index().await {
            Ok(fresh) => {
                tracing::debug!(
                    version = fresh.version,
                    "re-read the vault-sync index: unmarked content may be a concurrent run's create"
                );
                *state = fresh;
            }
            Err(e) => {
                self.metrics.count_vault_error(e.metric_label());
                tracing::warn!(
                    error_type = e.metric_label(),
                    "cannot re-read the vault-sync index; unmarked paths stay conflicts this run: {e}"
                );
            }
        }
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
    ) -> Result<(), VaultError> {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            // Most batches add nothing new: spare the copy of a large index.
            let changes = add.iter().any(|(l, e)| state.index.get(l) != Some(e))
                || remove.iter().any(|l| state.index.contains_key(l));
            if !changes {
                return self.mark_index(state).await;
            }
            let mut new = state.index.clone();
            new.extend(add.iter().map(|(l, e)| (l.clone(), e.clone())));
            new.retain(|l, _| !remove.contains(l));
            match self
                .vault
                .write_raw(&state.location, &index::encode(&new), state.version)
                .await
            {
                Ok(()) => {
                    state.version += 1;
                    state.index = new;
                    return self.mark_index(state).await;
                }
                Err(VaultError::CasMismatch { .. }) if attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "the index changed concurrently; merging");
                    *state = self.read_index().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(VaultError::CasMismatch {
            path: state.location.to_string(),
        })
    }

    /// Writes the index's own marker if it is missing (first write, or a
    /// first write whose answer was lost), so no Deployment can claim it.
    async fn mark_index(&self, state: &mut IndexState) -> Result<(), VaultError> {
        if state.marked || state.version == 0 {
            return Ok(());
        }
        let marker = BTreeMap::from([(MANAGED_BY_KEY.to_owned(), INDEX_MANAGER.to_owned())]);
        self.vault.write_metadata(&state.location, &marker).await?;
        state.marked = true;
        Ok(())
    }

    /// Judges every index entry this run may judge.
    pub async fn find_orphans(
        &self,
        index: &Index,
        desired: &BTreeSet<KvLocation>,
        held: &BTreeSet<Owner>,
        listed: &BTreeSet<Owner>,
    ) -> OrphanFindings {
        let scope = OrphanScope {
            cluster: &self.scope.cluster,
            namespaces: &self.scope.namespaces,
        };
        let candidates = orphans::candidates(index, desired, held, &scope);
        if candidates.is_empty() {
            return OrphanFindings::default();
        }

        // One GET per candidate owner, not per path.
        let owners: BTreeSet<Owner> = candidates.iter().map(|(_, e)| e.owner.clone()).collect();
        let owner_states: BTreeMap<Owner, OwnerState> =
            stream::iter(owners)
                .map(|owner| async move {
                    let state =
                        match k8s::get_deployment(&self.kube, &owner.namespace, &owner.deployment)
                            .await
                        {
                            Ok(None) => OwnerState::Gone,
                            Ok(Some(d)) => {
                                let annotated = d
                                    .metadata
                                    .annotations
                                    .as_ref()
                                    .is_some_and(|a| a.contains_key(annotations::PATH));
                                match (annotated, listed.contains(&owner)) {
                                    (false, _) => OwnerState::NotAnnotated,
                                    (true, true) => OwnerState::Listed,
                                    (true, false) => OwnerState::OutOfScope,
                                }
                            }
                            Err(e) => OwnerState::Unknown(e.to_string()),
                        };
                    (owner, state)
                })
                .buffer_unordered(self.scope.concurrency)
                .collect()
                .await;

        let verdicts: Vec<_> = stream::iter(candidates)
            .map(|(loc, entry)| {
                let owner_state = owner_states
                    .get(&entry.owner)
                    .cloned()
                    .unwrap_or(OwnerState::Unknown("not looked up".into()));
                async move {
                    let path_state = if owner_state == OwnerState::OutOfScope {
                        // Not judged: spare the read.
                        PathState::Unknown(String::new())
                    } else {
                        self.path_state(&loc).await
                    };
                    let verdict =
                        orphans::judge(&loc, &entry, &owner_state, &path_state, self.scope.destroy);
                    (loc, entry, verdict)
                }
            })
            .buffer_unordered(self.scope.concurrency)
            .collect()
            .await;

        let mut findings = OrphanFindings::default();
        for (loc, entry, verdict) in verdicts {
            if verdict.forget {
                findings.forget.insert(loc.clone());
            }
            if let Some(action) = verdict.action {
                findings.changes.push(Change {
                    path: loc.to_string(),
                    location: Some(loc),
                    owner: entry.owner,
                    action,
                    write: None,
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
                    rel,
                    version: KvVersion::V2,
                };
                if let Some(md) = self.vault.read_metadata(&loc).await?
                    && let crate::core::ownership::Ownership::VaultSync {
                        owner,
                        preserve_on_delete,
                    } = crate::core::ownership::read(&md)
                    && owner.cluster == self.scope.cluster
                {
                    found.insert(
                        loc,
                        IndexEntry {
                            owner,
                            preserve_on_delete,
                        },
                    );
                }
            }
        }
        Ok(found)
    }
}
