//! The thin shell around the core: gather inputs through the adapters, call
//! the pure functions, apply the plan. Every failure is attributed to a
//! Deployment or path and never stops the others.

mod orphans;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::core::annotations;
use crate::core::desired::{self, SecretFetch};
use crate::core::index::{Index, IndexEntry};
use crate::core::ownership::Owner;
use crate::core::plan::{
    self, Action, Change, Located, Note, Observed, Plan, PlanOptions, Problem,
};
use crate::core::vault_path::{self, KvLocation, MountTable};
use crate::k8s::{self, KubeError};
use crate::metrics::Metrics;
use crate::render::progress::Progress;
use crate::vault::{Vault, VaultError};
pub use orphans::IndexState;

/// What a run works on, from the command line.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The owner's cluster component (`--cluster-name`, else "default").
    pub cluster: String,
    /// `--cluster-name` given: paths go under `clusters/<name>/`.
    pub cluster_prefix: Option<String>,
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
    pub concurrency: usize,
    pub adopt: bool,
    /// Look for orphans (`run`, `plan` and `prune`; off with `--no-prune`).
    pub prune: bool,
    /// Delete orphans with every version and the metadata.
    pub destroy: bool,
    /// Refuse all deletions of a run that would delete more.
    pub max_deletes: usize,
    /// KV v2 mount holding the index (`--index-mount`).
    pub index_mount: String,
}

/// Everything a command needs after the read phase.
pub struct Prepared {
    pub plan: Plan,
    pub listing_failures: Vec<KubeError>,
    /// Run-wide errors (`error_type`, message) besides listing failures.
    pub errors: Vec<(&'static str, String)>,
    /// The index as read; `None` if it could not be read (then nothing is
    /// deleted and the index is not touched).
    pub index: Option<IndexState>,
    /// Index entries to drop after the deletions.
    pub forget: BTreeSet<KvLocation>,
}

impl Prepared {
    /// Every run-wide error as (`error_type`, message).
    pub fn run_errors(&self) -> Vec<(&'static str, String)> {
        self.listing_failures
            .iter()
            .map(|f| {
                (
                    f.metric_label(),
                    format!("listing incomplete, nothing will be deleted: {f}"),
                )
            })
            .chain(self.errors.iter().cloned())
            .collect()
    }

    pub fn has_failures(&self) -> bool {
        !self.listing_failures.is_empty() || !self.errors.is_empty() || self.plan.has_failures()
    }
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Failed writes and deletes, by change index.
    pub failures: BTreeMap<usize, VaultError>,
    /// Run-wide errors (index writes).
    pub errors: Vec<(&'static str, String)>,
}

pub struct Engine {
    pub kube: kube::Client,
    pub vault: Vault,
    pub scope: Scope,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    /// Reads Kubernetes and Vault and builds the plan. Writes nothing.
    pub async fn prepare(&self, progress: &Progress) -> Prepared {
        let scope = &self.scope;
        let started = std::time::Instant::now();
        let phase = |name: &str| {
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "prepare: {name} done"
            );
        };
        let bar = progress.spinner("listing Deployments");
        let listing =
            k8s::list_deployments(&self.kube, &scope.namespaces, scope.selector.as_deref()).await;
        bar.finish();
        for failure in &listing.failures {
            tracing::error!(error_type = failure.metric_label(), "{failure}");
        }
        phase("listing");

        let mut problems = Vec::new();
        let mut notes = Vec::new();
        // Parse annotations; remember which Secrets each Deployment needs
        // and every path it can want. Both are known before any Secret is
        // read: custom mode names the path, auto-discovery derives it from
        // the referenced Secrets' names. So the mounts are resolved first,
        // and the Secret GETs and the Vault reads then run at the same time.
        let mut specs = Vec::new();
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        let mut raw_paths: BTreeSet<String> = BTreeSet::new();
        for d in &listing.deployments {
            let owner = Owner::new(&scope.cluster, &d.namespace, &d.name);
            match annotations::parse(&d.annotations) {
                Ok(Some(spec)) => {
                    let refs = desired::required_secrets(&spec, &d.references);
                    self.metrics
                        .secrets_discovered
                        .with_label_values(&[d.namespace.as_str(), d.name.as_str()])
                        .set(refs.len() as i64);
                    if spec.reconcile != annotations::Reconcile::Off {
                        if let annotations::Mode::Custom(_) = spec.mode {
                            raw_paths.insert(spec.path.clone());
                        }
                        for r in refs {
                            if spec.mode == annotations::Mode::AutoDiscover {
                                raw_paths.insert(format!("{}/{}", spec.path, r.name));
                            }
                            wanted.insert((d.namespace.clone(), r.name));
                        }
                    }
                    specs.push((owner, spec, d));
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics
                        .config_parse_errors
                        .with_label_values(&[
                            d.namespace.as_str(),
                            d.name.as_str(),
                            e.metric_label(),
                        ])
                        .inc();
                    problems.push(Problem {
                        path: d.annotations.get(annotations::PATH).cloned(),
                        owner,
                        secret: None,
                        kind: e.metric_label(),
                        message: format!("Deployment {}/{}: {e}", d.namespace, d.name),
                    });
                }
            }
        }

        // One lookup per mount: a known mount that prefixes a path is its mount.
        let mut mounts = MountTable::default();
        let mut mount_errors: BTreeMap<String, VaultError> = BTreeMap::new();
        for raw in &raw_paths {
            if mounts.find(raw).is_some() {
                continue;
            }
            match self.vault.lookup_mount(raw).await {
                Ok(m) => mounts.insert(m),
                Err(e) => {
                    self.metrics.count_vault_error(e.metric_label());
                    mount_errors.insert(raw.clone(), e);
                }
            }
        }
        let locate = |raw: &str| -> Option<Result<KvLocation, vault_path::PathError>> {
            let mount = mounts.find(raw)?;
            Some(vault_path::locate(
                raw,
                mount,
                scope.cluster_prefix.as_deref(),
            ))
        };
        let locations: BTreeSet<KvLocation> = raw_paths
            .iter()
            .filter_map(|raw| locate(raw).and_then(Result::ok))
            .collect();

        phase("mount lookups");
        let secrets_bar = progress.bar("reading Secrets", wanted.len() as u64);
        let vault_bar = progress.bar("reading Vault", locations.len() as u64);
        let (fetched, observed) = tokio::join!(
            async {
                let fetched = self.fetch_secrets(wanted, &secrets_bar).await;
                phase("Secret reads");
                fetched
            },
            async {
                let observed = self.observe(locations, &vault_bar).await;
                phase("Vault reads");
                observed
            }
        );
        secrets_bar.finish();
        vault_bar.finish();

        // Desired state per Deployment.
        let mut located = Vec::new();
        // Owners whose existing paths must not be judged as orphans.
        let mut held: BTreeSet<Owner> = BTreeSet::new();
        for (owner, spec, d) in &specs {
            let secrets = NamespaceSecrets {
                namespace: &d.namespace,
                all: &fetched,
            };
            let outcome = desired::desire(owner, spec, &d.references, &secrets);
            if outcome.hold_existing {
                held.insert(owner.clone());
            }
            for (path, e) in outcome.errors {
                match &e {
                    desired::DesiredError::SecretNotFound { namespace, secret } => self
                        .metrics
                        .secret_not_found_errors
                        .with_label_values(&[namespace.as_str(), secret.as_str()])
                        .inc(),
                    desired::DesiredError::KeyMissing {
                        namespace, secret, ..
                    } => self
                        .metrics
                        .secret_key_missing_errors
                        .with_label_values(&[namespace.as_str(), secret.as_str()])
                        .inc(),
                    _ => {}
                }
                problems.push(Problem {
                    owner: owner.clone(),
                    path,
                    secret: Some(e.secret().to_owned()),
                    kind: e.metric_label(),
                    message: format!("Deployment {}: {e}", owner.short()),
                });
            }
            notes.extend(outcome.notes.into_iter().map(|message| Note {
                owner: owner.clone(),
                message,
            }));
            for d in outcome.paths {
                match (mount_errors.get(&d.raw_path), locate(&d.raw_path)) {
                    (_, Some(Ok(location))) => located.push(Located {
                        desired: d,
                        location,
                    }),
                    (_, Some(Err(e))) => problems.push(Problem {
                        owner: d.owner.clone(),
                        path: Some(d.raw_path.clone()),
                        secret: None,
                        kind: "invalid_path",
                        message: format!("Deployment {}: {e}", d.owner.short()),
                    }),
                    (Some(e), None) => problems.push(vault_problem(&d.owner, &d.raw_path, e)),
                    (None, None) => problems.push(Problem {
                        owner: d.owner.clone(),
                        path: Some(d.raw_path.clone()),
                        secret: None,
                        kind: "unknown",
                        message: format!(
                            "Deployment {}: the mount of {} was not looked up",
                            d.owner.short(),
                            d.raw_path
                        ),
                    }),
                }
            }
        }
        drop(fetched);

        phase("desired state");
        let mut errors = Vec::new();
        let index = match self.read_index().await {
            Ok(state) => Some(state),
            Err(e) => {
                self.metrics.count_vault_error(e.metric_label());
                tracing::error!(
                    error_type = e.metric_label(),
                    "cannot read the vault-sync index: {e}"
                );
                errors.push((
                    e.metric_label(),
                    format!("cannot read the vault-sync index, so nothing will be deleted: {e}"),
                ));
                None
            }
        };
        let index_owners: BTreeMap<KvLocation, Owner> = index
            .iter()
            .flat_map(|s| s.index.iter())
            .map(|(l, e)| (l.clone(), e.owner.clone()))
            .collect();
        let desired_locations: BTreeSet<KvLocation> =
            located.iter().map(|l| l.location.clone()).collect();
        let mut plan = plan::plan(
            located,
            problems,
            notes,
            &observed,
            &index_owners,
            &PlanOptions { adopt: scope.adopt },
        );

        phase("index read and diff");
        let mut forget = BTreeSet::new();
        if let (true, true, Some(state)) = (scope.prune, listing.complete, &index) {
            held.extend(
                plan.changes
                    .iter()
                    .filter(|c| matches!(c.action, Action::Error { .. } | Action::Conflict { .. }))
                    .map(|c| c.owner.clone()),
            );
            let listed: BTreeSet<Owner> = listing
                .deployments
                .iter()
                .map(|d| Owner::new(&scope.cluster, &d.namespace, &d.name))
                .collect();
            let findings = self
                .find_orphans(&state.index, &desired_locations, &held, &listed)
                .await;
            plan.changes.extend(findings.changes);
            forget = findings.forget;
            // Refused by the guard: still ours, still indexed.
            for loc in plan.guard_deletes(scope.max_deletes) {
                forget.remove(&loc);
            }
            plan.sort();
        }
        Prepared {
            plan,
            listing_failures: listing.failures,
            errors,
            index,
            forget,
        }
    }

    /// Fetches each needed Secret once.
    async fn fetch_secrets(
        &self,
        wanted: BTreeSet<(String, String)>,
        bar: &crate::render::progress::Stage,
    ) -> BTreeMap<(String, String), SecretFetch> {
        stream::iter(wanted)
            .map(|(ns, name)| async move {
                let fetch = k8s::get_secret(&self.kube, &ns, &name).await;
                bar.inc();
                ((ns, name), fetch)
            })
            .buffer_unordered(self.scope.concurrency)
            .collect()
            .await
    }

    /// One KV read per location.
    async fn observe(
        &self,
        locations: BTreeSet<KvLocation>,
        bar: &crate::render::progress::Stage,
    ) -> BTreeMap<KvLocation, Observed> {
        stream::iter(locations)
            .map(|loc| async move {
                let observed = match self.vault.read(&loc).await {
                    Ok(o) => o,
                    Err(e) => {
                        let e = self.vault.explain(e).await;
                        self.metrics.count_vault_error(e.metric_label());
                        Observed::Failed {
                            kind: e.metric_label(),
                            message: e.to_string(),
                        }
                    }
                };
                bar.inc();
                (loc, observed)
            })
            .buffer_unordered(self.scope.concurrency)
            .collect()
            .await
    }

    /// Executes the plan: records new paths in the index first (so no
    /// written path can go untracked), writes, deletes orphans, then drops
    /// what is gone from the index. `writes` is false for `prune`.
    pub async fn apply(
        &self,
        prepared: &mut Prepared,
        writes: bool,
        progress: &Progress,
    ) -> Applied {
        let mut applied = Applied::default();
        let plan = &prepared.plan;
        let Some(mut index) = prepared.index.clone() else {
            // Without an index nothing may be created (it would go
            // untracked); updates of existing paths are still safe.
            tracing::warn!("the vault-sync index is unreadable: only updates are applied");
            let only_updates = |c: &Change| matches!(c.action, Action::Update { .. });
            if writes {
                applied.failures = self.write_all(plan, only_updates, progress).await;
                for (i, c) in plan.changes.iter().enumerate() {
                    if c.write.is_some() && !only_updates(c) {
                        applied.failures.insert(
                            i,
                            VaultError::NotAttempted {
                                path: c.path.clone(),
                                reason: "the vault-sync index is unreadable, and a path created now would go untracked".into(),
                            },
                        );
                    }
                }
            }
            return applied;
        };

        if writes {
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
                    let entry = IndexEntry {
                        owner: c.owner.clone(),
                        preserve_on_delete: c.preserve_on_delete,
                    };
                    c.location.clone().map(|l| (l, entry))
                })
                .collect();
            if let Err(e) = self
                .update_index(&mut index, &owned, &BTreeSet::new())
                .await
            {
                applied.errors.push((
                    e.metric_label(),
                    format!("cannot record new paths in the vault-sync index, so nothing was written or deleted: {e}"),
                ));
                return applied;
            }
            applied.failures = self.write_all(plan, |_| true, progress).await;
        }

        let deletes = self.delete_all(plan, progress).await;
        let gone: BTreeSet<KvLocation> = prepared
            .forget
            .iter()
            .filter(|loc| {
                !plan
                    .changes
                    .iter()
                    .enumerate()
                    .any(|(i, c)| c.location.as_ref() == Some(*loc) && deletes.contains_key(&i))
            })
            .cloned()
            .collect();
        applied.failures.extend(deletes);
        if let Err(e) = self.update_index(&mut index, &Index::new(), &gone).await {
            applied.errors.push((
                e.metric_label(),
                format!("cannot drop deleted paths from the vault-sync index (the next run retries): {e}"),
            ));
        }
        prepared.index = Some(index);
        applied
    }

    async fn write_all(
        &self,
        plan: &Plan,
        select: impl Fn(&Change) -> bool,
        progress: &Progress,
    ) -> BTreeMap<usize, VaultError> {
        let writes: Vec<usize> = plan
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.write.is_some() && c.location.is_some() && select(c))
            .map(|(i, _)| i)
            .collect();
        let bar = progress.bar("writing Vault", writes.len() as u64);
        let failures = self
            .for_each_change(plan, writes, &bar, |change| async move {
                match (&change.location, &change.write) {
                    (Some(loc), Some(write)) => {
                        let timer = self.metrics.sync_duration.start_timer();
                        let r = self.vault.write(loc, write).await;
                        timer.observe_duration();
                        r
                    }
                    _ => Ok(()),
                }
            })
            .await;
        bar.finish();
        failures
    }

    async fn delete_all(&self, plan: &Plan, progress: &Progress) -> BTreeMap<usize, VaultError> {
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
                let (Some(loc), Action::Delete { destroy, .. }) =
                    (&change.location, &change.action)
                else {
                    return Ok(());
                };
                // The marker is checked on the path itself right before
                // deleting, whatever the index and the plan said.
                if loc.version == vault_path::KvVersion::V2 {
                    use crate::core::ownership::{self, Ownership};
                    match self.vault.read_metadata(loc).await? {
                        None => return Ok(()),
                        Some(md) => match ownership::read(&md) {
                            Ownership::VaultSync { owner, preserve_on_delete: false }
                                if owner == change.owner => {}
                            now => {
                                return Err(VaultError::NotAttempted {
                                    path: loc.to_string(),
                                    reason: format!(
                                        "its ownership changed since the plan (now {now:?}), so it was not deleted"
                                    ),
                                });
                            }
                        },
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
    async fn for_each_change<'a, F, Fut>(
        &'a self,
        plan: &'a Plan,
        selected: Vec<usize>,
        bar: &'a crate::render::progress::Stage,
        op: F,
    ) -> BTreeMap<usize, VaultError>
    where
        F: Fn(&'a Change) -> Fut,
        Fut: std::future::Future<Output = Result<(), VaultError>> + 'a,
    {
        let failures: BTreeMap<usize, VaultError> = stream::iter(selected)
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
                            deployment = change.owner.deployment.as_str(),
                            path = change.path.as_str(),
                            action = change.action.name(),
                            "applied"
                        ),
                        Err(e) => tracing::error!(
                            namespace = change.owner.namespace.as_str(),
                            deployment = change.owner.deployment.as_str(),
                            path = change.path.as_str(),
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
            .await;
        for e in failures.values() {
            self.metrics.count_vault_error(e.metric_label());
        }
        failures
    }
}

/// One namespace's view of the fetched Secrets, without copying them.
struct NamespaceSecrets<'a> {
    namespace: &'a str,
    all: &'a BTreeMap<(String, String), SecretFetch>,
}

impl desired::Secrets for NamespaceSecrets<'_> {
    fn secret(&self, name: &str) -> Option<&SecretFetch> {
        self.all.get(&(self.namespace.to_owned(), name.to_owned()))
    }
}

fn vault_problem(owner: &Owner, raw_path: &str, e: &VaultError) -> Problem {
    Problem {
        owner: owner.clone(),
        path: Some(raw_path.to_owned()),
        secret: None,
        kind: e.metric_label(),
        message: format!("Deployment {}: {e}", owner.short()),
    }
}
