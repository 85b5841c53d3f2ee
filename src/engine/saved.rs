//! Saved plans in the shell: recording what each change of `plan --out`
//! is pinned to, and `run --plan`, which applies exactly the file's
//! changes, each only if what it was pinned to has not moved.
//!
//! The judgements are pure ([`crate::core::saved_plan`]); here are the
//! reads and writes, through the same ports and the same write path
//! (index first, then content with check-and-set, then marker) as `run`.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};

use super::ports::{Cluster, Reporter, SecretStore, Stage, WorkloadState};
use super::read::Parsed;
use super::{Engine, IndexState, NamespaceSecrets};
use crate::core::annotations::Mode;
use crate::core::desired::{self, SecretFetch};
use crate::core::error_kind::ErrorKind;
use crate::core::index::Index;
use crate::core::ownership::Owner;
use crate::core::plan::{self, Action, Change, Located, Observed, Plan, PlanOptions};
use crate::core::saved_plan::{
    self, CheckedChange, CheckedPin, MountRecord, OwnerStateRecord, Pins, SelectionRecord,
    SourcePin, VaultPin, WritePin,
};
use crate::core::vault_path::{KvLocation, KvVersion};
use crate::vault::VaultError;

/// What a write's content comes from, before its Vault side is known.
type SourcesOf = BTreeMap<(KvLocation, Owner), (Vec<SourcePin>, Option<Vec<SelectionRecord>>)>;

/// The source Secrets of each located path, with their revisions. A path
/// one of whose Secrets came without uid/resourceVersion gets none, and
/// the plan then cannot be saved (`saved_plan::BuildError`).
pub(super) fn source_pins(
    members: &[&Parsed],
    located: &[Located],
    fetched: &BTreeMap<(String, String), SecretFetch>,
) -> SourcesOf {
    let specs: BTreeMap<&Owner, Mode> = members
        .iter()
        .filter_map(|p| Some((&p.owner, p.wants()?.into_owned().spec.mode)))
        .collect();
    located
        .iter()
        .filter_map(|l| {
            let owner = &l.desired.owner;
            let sources = l
                .desired
                .sources
                .iter()
                .map(|name| {
                    let meta = fetched
                        .get(&(owner.namespace.to_string(), name.clone()))?
                        .meta()?;
                    Some(SourcePin {
                        namespace: owner.namespace.to_string(),
                        name: name.clone(),
                        uid: meta.uid.clone(),
                        resource_version: meta.resource_version.clone(),
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            let select = match specs.get(owner)? {
                Mode::AutoDiscover => None,
                Mode::Custom(selections) => {
                    Some(selections.iter().map(SelectionRecord::from).collect())
                }
            };
            Some(((l.location.clone(), owner.clone()), (sources, select)))
        })
        .collect()
}

/// Adds the Vault side to each planned write's pin.
pub(super) fn pin_writes(
    batch_plan: &Plan,
    mut sources: SourcesOf,
    observed: &BTreeMap<KvLocation, Observed>,
    pins: &mut Pins,
) {
    for c in &batch_plan.changes {
        let (Some(location), Some(_)) = (c.location(), &c.write) else {
            continue;
        };
        let key = (location.clone(), c.owner.clone());
        let Some(vault) = observed.get(location).and_then(VaultPin::from_observed) else {
            continue;
        };
        if let Some((sources, select)) = sources.remove(&key) {
            pins.writes.insert(
                key,
                WritePin {
                    sources,
                    select,
                    vault,
                },
            );
        }
    }
}

/// What `run --plan` did.
#[derive(Debug, Default)]
pub struct SavedOutcome {
    /// The file's changes, as the report shows them (deletions over
    /// `--max-deletes` turned `refused`).
    pub plan: Plan,
    /// Stale, refused-at-apply and failed changes, by index in `plan`.
    pub failures: BTreeMap<usize, VaultError>,
    /// Run-wide errors (the index).
    pub errors: Vec<(ErrorKind, String)>,
}

impl<C: Cluster, S: SecretStore> Engine<C, S> {
    /// Applies a checked saved plan: its creates and updates (each re-read
    /// and re-derived, written only if nothing it was pinned to moved),
    /// then its deletions (each re-checked the same way), then drops the
    /// deleted paths from the index. No other path is read for writing,
    /// written or deleted.
    ///
    /// Fails as a whole, before any write, when a mount is not what the
    /// plan recorded.
    pub async fn apply_saved(
        &self,
        changes: Vec<CheckedChange>,
        mounts: &[MountRecord],
        progress: &impl Reporter,
    ) -> Result<SavedOutcome, VaultError> {
        for m in mounts {
            let now = self.vault.lookup_mount(&m.path).await?;
            if now.path != m.path || now.kv_version.map(KvVersion::as_u8) != Some(m.kv_version) {
                return Err(VaultError::InvalidPath {
                    path: m.path.clone(),
                    message: format!(
                        "the plan recorded it as a KV v{} mount, and the server now says {:?} (KV {:?}); nothing was applied: make a new plan",
                        m.kv_version, now.path, now.kv_version
                    ),
                });
            }
        }
        let mut outcome = SavedOutcome {
            plan: Plan {
                changes: changes.iter().map(CheckedChange::to_change).collect(),
                notes: Vec::new(),
            },
            ..SavedOutcome::default()
        };
        // The guard counts the file's deletions, as `run` counts its own.
        let refused: BTreeSet<KvLocation> = outcome
            .plan
            .guard_deletes(self.scope.max_deletes)
            .into_iter()
            .collect();

        let mut index = match self.read_index().await {
            Ok(state) => Some(state),
            Err(e) => {
                self.index_unusable(&e, &mut outcome.errors);
                None
            }
        };
        let writes: Vec<usize> = (0..changes.len())
            .filter(|&i| matches!(changes[i].pin, CheckedPin::Write { .. }))
            .collect();
        let bar = progress.growing("applying the saved plan", changes.len() as u64);
        for chunk in writes.chunks(self.scope.batch_size.max(1)) {
            self.write_saved(&changes, chunk, &mut index, &mut outcome, &bar)
                .await;
        }
        let deletes: Vec<usize> = (0..changes.len())
            .filter(|&i| {
                matches!(changes[i].pin, CheckedPin::Delete { .. })
                    && !refused.contains(&changes[i].location)
            })
            .collect();
        self.delete_saved(&changes, deletes, &mut index, &mut outcome, &bar)
            .await;
        bar.finish();
        Ok(outcome)
    }

    /// One chunk of writes: each verified against its pins and re-derived
    /// (concurrently), then the fresh ones written like a batch of `run`.
    async fn write_saved(
        &self,
        changes: &[CheckedChange],
        chunk: &[usize],
        index: &mut Option<IndexState>,
        outcome: &mut SavedOutcome,
        bar: &impl Stage,
    ) {
        let no_index = Index::new();
        let index_now = index.as_ref().map_or(&no_index, |s| &s.index);
        let verified: Vec<(usize, Result<Change, VaultError>)> =
            stream::iter(chunk.iter().copied())
                .map(|i| async move { (i, self.verify_write(&changes[i], index_now).await) })
                .buffer_unordered(self.scope.concurrency)
                .collect()
                .await;
        let mut fresh = Plan::default();
        let mut positions = Vec::new();
        for (i, result) in verified {
            match result {
                Ok(change) => {
                    positions.push(i);
                    fresh.changes.push(change);
                }
                Err(e) => {
                    self.report_unapplied(&changes[i], &e);
                    outcome.failures.insert(i, e);
                    bar.grow(1);
                    bar.inc();
                }
            }
        }
        let failures = self
            .write_batch(&fresh, index, &mut outcome.errors, bar)
            .await;
        for (j, e) in failures {
            outcome.failures.insert(positions[j], e);
        }
    }

    /// Re-reads what a create or update was pinned to and derives it
    /// again: the change to write, or why it is stale.
    async fn verify_write(&self, c: &CheckedChange, index: &Index) -> Result<Change, VaultError> {
        let CheckedPin::Write {
            sources,
            spec,
            references,
            vault: pinned,
        } = &c.pin
        else {
            return Err(not_attempted(c, "not a write".into()));
        };
        let stale = |reason: String| VaultError::Stale {
            path: c.location.to_string(),
            reason,
        };
        let (fetched, observed) = tokio::join!(
            stream::iter(sources)
                .map(|s| async move {
                    let fetch = self.kube.get_secret(&s.namespace, &s.name).await;
                    (s, fetch)
                })
                .buffer_unordered(self.scope.concurrency)
                .collect::<Vec<_>>(),
            self.vault.read(&c.location)
        );
        let mut secrets = BTreeMap::new();
        for (pin, fetch) in fetched {
            match saved_plan::secret_moved(pin, &fetch) {
                Ok(None) => {}
                Ok(Some(reason)) => return Err(stale(reason)),
                Err(reason) => return Err(not_attempted(c, reason)),
            }
            secrets.insert((pin.namespace.clone(), pin.name.clone()), fetch);
        }
        let observed = match observed {
            Ok(o) => o,
            Err(e) => return Err(self.vault.explain(e).await),
        };
        let now = VaultPin::from_observed(&observed)
            .ok_or_else(|| not_attempted(c, "the Vault path could not be read".into()))?;
        if let Some(reason) = saved_plan::vault_moved(pinned, &now) {
            return Err(stale(reason));
        }
        // A takeover needs its previous owner still gone.
        let mut gone = BTreeSet::new();
        if let Action::Update {
            previous_owner: Some(previous),
            ..
        } = &c.action
        {
            match self
                .kube
                .workload(previous.kind, &previous.namespace, &previous.name)
                .await
            {
                Ok(WorkloadState::Gone) => {
                    gone.insert(Owner::clone(previous));
                }
                Ok(WorkloadState::Exists { .. }) => {
                    return Err(stale(format!(
                        "Deployment {} was gone at plan time and exists again",
                        previous.short()
                    )));
                }
                Err(e) => return Err(not_attempted(c, e.to_string())),
            }
        }

        // The content, derived from the Secrets as they are now, which are
        // the revisions the plan was made from.
        let view = NamespaceSecrets {
            namespace: &c.owner.namespace,
            all: &secrets,
        };
        let outcome = desired::desire(&c.owner, spec, references, &view);
        if let Some((_, e)) = outcome.errors.first() {
            return Err(not_attempted(c, e.to_string()));
        }
        let [desired_path] = <[_; 1]>::try_from(outcome.paths).map_err(|_| {
            not_attempted(c, "its Secrets no longer derive exactly one path".into())
        })?;
        drop(secrets);
        let located = Located {
            desired: desired_path,
            location: c.location.clone(),
        };
        let opts = PlanOptions {
            adopt: self.scope.adopt,
            gone,
        };
        let observed = BTreeMap::from([(c.location.clone(), observed)]);
        let mut planned = plan::plan(
            vec![located],
            Vec::new(),
            Vec::new(),
            &observed,
            index,
            &opts,
        );
        let change = planned
            .changes
            .pop()
            .ok_or_else(|| not_attempted(c, "nothing was planned".into()))?;
        if change.action != c.action || !change.writes() {
            return Err(stale(format!(
                "planned again on the same revisions it is now {:?}, not the saved {:?}",
                change.action.name(),
                c.action.name()
            )));
        }
        Ok(change)
    }

    /// The deletions: each owner and path re-read and compared with the
    /// plan, the marker re-checked, then deleted; the deleted paths then
    /// leave the index. Without a usable index nothing is deleted.
    async fn delete_saved(
        &self,
        changes: &[CheckedChange],
        deletes: Vec<usize>,
        index: &mut Option<IndexState>,
        outcome: &mut SavedOutcome,
        bar: &impl Stage,
    ) {
        let Some(state) = index else {
            for i in deletes {
                let e = not_attempted(
                    &changes[i],
                    "the vault-sync index is unusable, so nothing is deleted".into(),
                );
                self.report_unapplied(&changes[i], &e);
                outcome.failures.insert(i, e);
            }
            return;
        };
        let entries = &state.index;
        bar.grow(deletes.len() as u64);
        let failures = self
            .for_each_change(&outcome.plan, deletes.clone(), bar, |change| {
                let saved = changes
                    .iter()
                    .find(|c| Some(&c.location) == change.location());
                async move {
                    match saved {
                        Some(saved) => self.delete_one(saved, entries).await,
                        None => Ok(()),
                    }
                }
            })
            .await;
        let gone: BTreeSet<KvLocation> = deletes
            .iter()
            .filter(|i| !failures.contains_key(i))
            .map(|&i| changes[i].location.clone())
            .collect();
        outcome.failures.extend(failures);
        if let Err(e) = self.update_index(state, &Index::new(), &gone).await {
            outcome.errors.push((
                e.kind(),
                format!("cannot drop deleted paths from the vault-sync index (the next run retries): {e}"),
            ));
        }
    }

    async fn delete_one(&self, c: &CheckedChange, index: &Index) -> Result<(), VaultError> {
        let CheckedPin::Delete {
            owner_state,
            vault: pinned,
        } = &c.pin
        else {
            return Ok(());
        };
        let stale = |reason: String| VaultError::Stale {
            path: c.location.to_string(),
            reason,
        };
        let Action::Delete { destroy, .. } = c.action else {
            return Ok(());
        };
        if index.get(&c.location).map(|e| &e.owner) != Some(&c.owner) {
            return Err(stale(format!(
                "the vault-sync index no longer lists it for Deployment {}",
                c.owner.short()
            )));
        }
        let now_owner = match self
            .kube
            .workload(c.owner.kind, &c.owner.namespace, &c.owner.name)
            .await
        {
            Ok(WorkloadState::Gone) => OwnerStateRecord::Gone,
            Ok(WorkloadState::Exists { annotated: false }) => OwnerStateRecord::NotAnnotated,
            Ok(WorkloadState::Exists { annotated: true }) => OwnerStateRecord::Listed,
            Err(e) => return Err(not_attempted(c, e.to_string())),
        };
        if let Some(reason) = saved_plan::owner_moved(&c.owner, *owner_state, now_owner) {
            return Err(stale(reason));
        }
        // The marker and version, read right before deleting.
        let now = match c.location.version {
            KvVersion::V2 => {
                VaultPin::from_metadata(self.vault.read_metadata(&c.location).await?.as_ref())
            }
            KvVersion::V1 => VaultPin::from_observed(&self.vault.read(&c.location).await?)
                .unwrap_or(VaultPin::Absent),
        };
        if let Some(reason) = saved_plan::vault_moved(pinned, &now) {
            return Err(stale(reason));
        }
        self.vault.delete(&c.location, destroy).await
    }

    fn report_unapplied(&self, c: &CheckedChange, e: &VaultError) {
        tracing::error!(
            namespace = c.owner.namespace.as_str(),
            kind = c.owner.kind.as_str(),
            deployment = c.owner.name.as_str(),
            path = c.location.to_string(),
            action = c.action.name(),
            error_type = e.metric_label(),
            "{e}"
        );
    }
}

fn not_attempted(c: &CheckedChange, reason: String) -> VaultError {
    VaultError::NotAttempted {
        path: c.location.to_string(),
        reason,
    }
}
