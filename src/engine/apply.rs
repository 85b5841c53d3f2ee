//! The write side of a run: each batch's creates and updates (index entry
//! first, then content, then marker), and at the end the deletions of
//! orphans, each re-checked against the path's own marker.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use futures::stream::{self, StreamExt};

use super::ports::{Cluster, Reporter, SecretStore, Stage};
use super::{Applied, Engine, IndexState, Prepared};
use crate::core::error_kind::ErrorKind;
use crate::core::index::{Index, IndexEntry};
use crate::core::plan::{Action, Change, Plan, Write};
use crate::core::vault_path::{self, KvLocation};
use crate::vault::VaultError;

impl<C: Cluster, S: SecretStore> Engine<C, S> {
    /// Applies one batch's creates and updates: records new paths in the
    /// index first (so no written path can go untracked), then writes.
    /// Without a usable index only updates of existing paths are written;
    /// a failed index update leaves `index` as `None` for the rest of the
    /// run, which then writes only updates and deletes nothing.
    pub(super) async fn write_batch(
        &self,
        plan: &Plan,
        index: &mut Option<IndexState>,
        errors: &mut Vec<(ErrorKind, String)>,
        bar: &impl Stage,
    ) -> BTreeMap<usize, VaultError> {
        let reason = match index {
            None => "the vault-sync index is unusable, and a path created now would go untracked",
            Some(state) => {
                let owned: Index = plan
                    .changes
                    .iter()
                    .filter(|c| {
                        matches!(
                            c.action,
                            Action::Create { .. } | Action::Update { .. } | Action::Unchanged
                        )
                    })
                    .filter_map(|c| {
                        let location = c.location().cloned()?;
                        let entry = IndexEntry {
                            owner: c.owner.clone(),
                            preserve_on_delete: c.preserve_on_delete,
                            written: match c.write.as_deref().and_then(Write::claimed_version) {
                                Some(v) => Some(v),
                                None => state.index.get(&location).and_then(|e| e.written),
                            },
                        };
                        Some((location, entry))
                    })
                    .collect();
                match self.update_index(state, &owned, &BTreeSet::new()).await {
                    Ok(()) => {
                        let failures = self.write_all(plan, |_| true, bar).await;
                        self.unclaim_failed(plan, &failures, state, errors).await;
                        return failures;
                    }
                    Err(e) => {
                        errors.push((
                            e.kind(),
                            format!("cannot record new paths in the vault-sync index, so no path is created and nothing is deleted: {e}"),
                        ));
                        *index = None;
                        "the vault-sync index could not be updated, and a path created now would go untracked"
                    }
                }
            }
        };
        let only_updates = |c: &Change| matches!(c.action, Action::Update { .. });
        let mut failures = self.write_all(plan, only_updates, bar).await;
        for (i, c) in plan.changes.iter().enumerate() {
            if c.writes() && !only_updates(c) {
                tracing::warn!(path = &*c.path(), "not created: {reason}");
                failures.insert(
                    i,
                    VaultError::NotAttempted {
                        path: c.path().into_owned(),
                        reason: reason.into(),
                    },
                );
            }
        }
        failures
    }

    /// A claiming write that lost its check-and-set race did not produce
    /// the version the index recorded for it: what stands there now is
    /// someone else's, so that record goes (the entry stays, judged by its
    /// marker). Other failures leave it: the content may have landed (a
    /// connection cut after the write), and then the record is what keeps
    /// the path ours.
    async fn unclaim_failed(
        &self,
        plan: &Plan,
        failures: &BTreeMap<usize, VaultError>,
        state: &mut IndexState,
        errors: &mut Vec<(ErrorKind, String)>,
    ) {
        let unclaim: Index = failures
            .iter()
            .filter(|(_, e)| matches!(e, VaultError::CasMismatch { .. }))
            .filter_map(|(&i, _)| {
                let c = &plan.changes[i];
                c.write.as_ref()?.claimed_version()?;
                let location = c.location()?;
                let mut entry = state.index.get(location)?.clone();
                entry.written = None;
                Some((location.clone(), entry))
            })
            .collect();
        if unclaim.is_empty() {
            return;
        }
        if let Err(e) = self.update_index(state, &unclaim, &BTreeSet::new()).await {
            errors.push((
                e.kind(),
                format!("cannot record failed writes in the vault-sync index (their paths stay tracked, judged by their markers): {e}"),
            ));
        }
    }

    /// Finishes a run after [`Engine::prepare`] wrote the batches: deletes
    /// orphans (re-checking each marker), then drops what is gone from the
    /// index. Without an index nothing is deleted.
    pub async fn apply(&self, prepared: &mut Prepared, progress: &impl Reporter) -> Applied {
        let mut applied = Applied {
            failures: std::mem::take(&mut prepared.write_failures),
            errors: Vec::new(),
        };
        let plan = &prepared.plan;
        let Some(index) = &mut prepared.index else {
            return applied;
        };

        let deletes = self.delete_all(plan, progress).await;
        // A path whose delete failed stays indexed for the next run.
        let failed: BTreeSet<&KvLocation> = deletes
            .keys()
            .filter_map(|&i| plan.changes[i].location())
            .collect();
        let gone: BTreeSet<KvLocation> = prepared
            .forget
            .iter()
            .filter(|loc| !failed.contains(loc))
            .cloned()
            .collect();
        applied.failures.extend(deletes);
        if let Err(e) = self.update_index(index, &Index::new(), &gone).await {
            applied.errors.push((
                e.kind(),
                format!("cannot drop deleted paths from the vault-sync index (the next run retries): {e}"),
            ));
        }
        applied
    }

    async fn write_all(
        &self,
        plan: &Plan,
        select: impl Fn(&Change) -> bool,
        bar: &impl Stage,
    ) -> BTreeMap<usize, VaultError> {
        let writes: Vec<usize> = plan
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.write.is_some() && c.location().is_some() && select(c))
            .map(|(i, _)| i)
            .collect();
        bar.grow(writes.len() as u64);
        self.for_each_change(plan, writes, bar, |change| async move {
            match (change.location(), &change.write) {
                (Some(loc), Some(write)) => {
                    let timer = self.metrics.sync_duration.start_timer();
                    let r = self.vault.write(loc, write).await;
                    timer.observe_duration();
                    r
                }
                _ => Ok(()),
            }
        })
        .await
    }

    async fn delete_all(
        &self,
        plan: &Plan,
        progress: &impl Reporter,
    ) -> BTreeMap<usize, VaultError> {
        let deletes: Vec<usize> = plan
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.action, Action::Delete { .. }))
            .map(|(i, _)| i)
            .collect();
        let bar = progress.bar("deleting orphans", deletes.len() as u64);
        let failures = self
            .for_each_change(plan, deletes, &bar, |change| async move {
                let (
                    Some(loc),
                    Action::Delete {
                        destroy,
                        unmarked_version,
                        ..
                    },
                ) = (change.location(), &change.action)
                else {
                    return Ok(());
                };
                // The marker is checked on the path itself right before
                // deleting, whatever the index and the plan said.
                if loc.version == vault_path::KvVersion::V2 {
                    use crate::core::ownership::{self, Ownership};
                    let md = match self.vault.read_metadata(loc).await? {
                        Some(md) if !md.current_deleted => md,
                        _ => return Ok(()),
                    };
                    match ownership::read(&md.custom_metadata) {
                        Ownership::VaultSync {
                            owner,
                            preserve_on_delete: false,
                        } if owner == change.owner => {}
                        Ownership::Unowned
                            if unmarked_version.map(NonZeroU64::get) == Some(md.current_version) => {}
                        now => {
                            return Err(VaultError::NotAttempted {
                                path: loc.to_string(),
                                reason: format!(
                                    "its ownership changed since the plan (now {now:?}, version {}), so it was not deleted",
                                    md.current_version
                                ),
                            });
                        }
                    }
                }
                self.vault.delete(loc, *destroy).await
            })
            .await;
        bar.finish();
        failures
    }

    /// Runs `op` on the selected changes with bounded concurrency, logging
    /// each outcome; returns the failures by change index.
    pub(super) async fn for_each_change<'a, F, Fut>(
        &'a self,
        plan: &'a Plan,
        selected: Vec<usize>,
        bar: &'a impl Stage,
        op: F,
    ) -> BTreeMap<usize, VaultError>
    where
        F: Fn(&'a Change) -> Fut,
        Fut: std::future::Future<Output = Result<(), VaultError>> + 'a,
    {
        stream::iter(selected)
            .map(|i| {
                let change = &plan.changes[i];
                let fut = op(change);
                async move {
                    let result = match fut.await {
                        Err(e) => Err(self.vault.explain(e).await),
                        ok => ok,
                    };
                    bar.inc();
                    match &result {
                        Ok(()) => tracing::info!(
                            namespace = change.owner.namespace.as_str(),
                            kind = change.owner.kind.as_str(),
                            deployment = change.owner.name.as_str(),
                            path = &*change.path(),
                            action = change.action.name(),
                            "applied"
                        ),
                        Err(e) => tracing::error!(
                            namespace = change.owner.namespace.as_str(),
                            kind = change.owner.kind.as_str(),
                            deployment = change.owner.name.as_str(),
                            path = &*change.path(),
                            action = change.action.name(),
                            error_type = e.metric_label(),
                            "{e}"
                        ),
                    }
                    (i, result)
                }
            })
            .buffer_unordered(self.scope.concurrency)
            .filter_map(|(i, r)| async move { r.err().map(|e| (i, e)) })
            .collect()
            .await
    }
}
