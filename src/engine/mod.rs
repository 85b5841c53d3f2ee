//! The thin shell around the core: gather inputs through the adapters, call
//! the pure functions, apply the plan. Every failure is attributed to a
//! Deployment or path and never stops the others.

mod apply;
mod orphans;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::core::annotations;
use crate::core::batch;
use crate::core::desired::{self, SecretFetch};
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
    /// Locations read, planned and written together (`--batch-size`).
    pub batch_size: usize,
    /// GET each Secret, or LIST each namespace (`--read-secrets`).
    pub read_secrets: k8s::SecretReads,
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
    /// `run`: writes that failed, by change index (taken by `apply`).
    pub write_failures: BTreeMap<usize, VaultError>,
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

/// Secret bytes a batch aims to hold: with `--batch-size` as the cap on
/// paths, memory stays flat whether values are 30 bytes or 30 KiB.
const BATCH_VALUE_BYTES: usize = 8 << 20;
/// Paths in the first batch (and the least in any batch, unless
/// `--batch-size` is smaller): small runs stay one batch.
const FIRST_BATCH_PATHS: usize = 64;

/// One annotated Deployment after parsing, before any Secret is read.
struct Parsed<'a> {
    owner: Owner,
    spec: annotations::SyncSpec,
    deployment: &'a k8s::DeploymentView,
    /// Secrets to read (none when reconcile is off).
    secrets: Vec<String>,
    /// Locations it can want, for the Vault reads and for batching.
    locations: Vec<KvLocation>,
}

impl Engine {
    /// Reads Kubernetes and Vault and builds the plan, batch by batch. With
    /// `writes` (`run`), each batch's creates and updates are applied before
    /// the next batch is read; deletions wait for [`Engine::apply`].
    pub async fn prepare(&self, progress: &Progress, writes: bool) -> Prepared {
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

        // Parse annotations; remember which Secrets each Deployment needs
        // and every path it can want. Both are known before any Secret is
        // read: custom mode names the path, auto-discovery derives it from
        // the referenced Secrets' names. So the mounts are resolved first,
        // and the Secret GETs and the Vault reads then run at the same time.
        let mut problems = Vec::new();
        let mut parsed = Vec::new();
        let mut raw_paths_of = Vec::new();
        for d in &listing.deployments {
            let owner = Owner::new(&scope.cluster, &d.namespace, &d.name);
            match annotations::parse(&d.annotations) {
                Ok(Some(spec)) => {
                    let refs = desired::required_secrets(&spec, &d.references);
                    self.metrics
                        .secrets_discovered
                        .with_label_values(&[d.namespace.as_str(), d.name.as_str()])
                        .set(refs.len() as i64);
                    let mut raw_paths = Vec::new();
                    let mut secrets = Vec::new();
                    if spec.reconcile != annotations::Reconcile::Off {
                        if let annotations::Mode::Custom(_) = spec.mode {
                            raw_paths.push(spec.path.clone());
                        }
                        for r in refs {
                            if spec.mode == annotations::Mode::AutoDiscover {
                                raw_paths.push(format!("{}/{}", spec.path, r.name));
                            }
                            secrets.push(r.name);
                        }
                    }
                    raw_paths_of.push(raw_paths);
                    parsed.push(Parsed {
                        owner,
                        spec,
                        deployment: d,
                        secrets,
                        locations: Vec::new(),
                    });
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
        for raw in raw_paths_of.iter().flatten() {
            if mounts.find(raw).is_some() || mount_errors.contains_key(raw) {
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
        for (p, raw_paths) in parsed.iter_mut().zip(&raw_paths_of) {
            p.locations = raw_paths
                .iter()
                .filter_map(|raw| locate(raw).and_then(Result::ok))
                .collect();
        }
        drop(raw_paths_of);
        phase("mount lookups");

        // The index is read before planning: it decides ownership of KV v1
        // paths and of creates interrupted before their marker.
        let mut errors = Vec::new();
        let mut index = match self.read_index().await {
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
        phase("index read");

        let mut batcher = batch::Batcher::new(
            &parsed
                .iter()
                .map(|p| p.locations.as_slice())
                .collect::<Vec<_>>(),
        );
        // The first batch is small, since how large values are is not
        // known yet; later ones are sized from what the last one held.
        let min_batch = (2 * scope.concurrency).max(FIRST_BATCH_PATHS);
        let mut limit = min_batch.min(scope.batch_size);
        let secrets_bar = progress.bar(
            "reading Secrets",
            parsed.iter().map(|p| p.secrets.len() as u64).sum(),
        );
        let vault_bar = progress.bar(
            "reading Vault",
            parsed.iter().map(|p| p.locations.len() as u64).sum(),
        );
        // Every planned change, and the failed writes by their index there.
        let mut rows: Vec<Change> =
            Vec::with_capacity(parsed.iter().map(|p| p.locations.len().max(1)).sum());
        let mut write_failures: Vec<(usize, VaultError)> = Vec::new();
        let mut notes = Vec::new();
        // Owners whose existing paths must not be judged as orphans.
        let mut held: BTreeSet<Owner> = BTreeSet::new();
        let mut desired_locations: BTreeSet<KvLocation> = BTreeSet::new();
        let mut batch_number = 0;
        while let Some(members) = batcher.next_batch(limit) {
            batch_number += 1;
            let members: Vec<&Parsed> = members.into_iter().map(|i| &parsed[i]).collect();
            let wanted: BTreeSet<(String, String)> = members
                .iter()
                .flat_map(|p| {
                    p.secrets
                        .iter()
                        .map(|s| (p.deployment.namespace.clone(), s.clone()))
                })
                .collect();
            let locations: BTreeSet<KvLocation> = members
                .iter()
                .flat_map(|p| p.locations.iter().cloned())
                .collect();
            let paths = locations.len();
            let (fetched, observed) = tokio::join!(
                self.fetch_secrets(wanted, &secrets_bar),
                self.observe(locations, &vault_bar)
            );
            let bytes: usize = fetched.values().map(SecretFetch::value_bytes).sum();
            limit = batch::next_limit(paths, bytes, BATCH_VALUE_BYTES, min_batch, scope.batch_size);

            let mut located = Vec::new();
            let mut batch_problems = Vec::new();
            for p in members {
                let secrets = NamespaceSecrets {
                    namespace: &p.deployment.namespace,
                    all: &fetched,
                };
                let outcome =
                    desired::desire(&p.owner, &p.spec, &p.deployment.references, &secrets);
                if outcome.hold_existing {
                    held.insert(p.owner.clone());
                }
                self.count_desire_errors(&outcome.errors);
                for (path, e) in outcome.errors {
                    batch_problems.push(Problem {
                        owner: p.owner.clone(),
                        path,
                        secret: Some(e.secret().to_owned()),
                        kind: e.metric_label(),
                        message: format!("Deployment {}: {e}", p.owner.short()),
                    });
                }
                notes.extend(outcome.notes.into_iter().map(|message| Note {
                    owner: p.owner.clone(),
                    message,
                }));
                for d in outcome.paths {
                    match (mount_errors.get(&d.raw_path), locate(&d.raw_path)) {
                        (_, Some(Ok(location))) => {
                            desired_locations.insert(location.clone());
                            located.push(Located {
                                desired: d,
                                location,
                            });
                        }
                        (_, Some(Err(e))) => batch_problems.push(Problem {
                            owner: d.owner.clone(),
                            path: Some(d.raw_path.clone()),
                            secret: None,
                            kind: "invalid_path",
                            message: format!("Deployment {}: {e}", d.owner.short()),
                        }),
                        (Some(e), None) => {
                            batch_problems.push(vault_problem(&d.owner, &d.raw_path, e))
                        }
                        (None, None) => batch_problems.push(Problem {
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
            let batch_plan = plan::plan(
                located,
                batch_problems,
                Vec::new(),
                &observed,
                &index_owners,
                &PlanOptions { adopt: scope.adopt },
            );
            drop(observed);
            if writes {
                let failures = self
                    .write_batch(&batch_plan, &mut index, &mut errors, progress)
                    .await;
                write_failures.extend(failures.into_iter().map(|(i, e)| (rows.len() + i, e)));
            }
            rows.extend(batch_plan.changes.into_iter().map(|mut change| {
                change.release_payload();
                change
            }));
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                paths,
                secret_bytes = bytes,
                "prepare: batch {batch_number} done"
            );
        }
        secrets_bar.finish();
        vault_bar.finish();
        let parse_problems = plan::plan(
            Vec::new(),
            problems,
            Vec::new(),
            &BTreeMap::new(),
            &index_owners,
            &PlanOptions { adopt: scope.adopt },
        );
        rows.reserve_exact(parse_problems.changes.len());
        rows.extend(parse_problems.changes);
        phase("plan");

        let mut forget = BTreeSet::new();
        // After a failed index update `index` is gone: nothing is deleted.
        if let (true, true, Some(state)) = (scope.prune, listing.complete, &index) {
            held.extend(
                rows.iter()
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
            rows.reserve_exact(findings.changes.len());
            rows.extend(findings.changes);
            forget = findings.forget;
        }

        let (mut plan, write_failures) = Plan::from_rows(rows, write_failures, notes);
        // Refused by the guard: still ours, still indexed.
        for loc in plan.guard_deletes(scope.max_deletes) {
            forget.remove(&loc);
        }
        phase("orphans");
        Prepared {
            plan,
            listing_failures: listing.failures,
            errors,
            index,
            forget,
            write_failures,
        }
    }

    fn count_desire_errors(&self, errors: &[(Option<String>, desired::DesiredError)]) {
        for (_, e) in errors {
            match e {
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
        }
    }

    /// Fetches each needed Secret once: a GET each, or with
    /// `--read-secrets list` paged LISTs of their namespaces. A namespace
    /// whose LIST is forbidden falls back to GETs.
    async fn fetch_secrets(
        &self,
        wanted: BTreeSet<(String, String)>,
        bar: &crate::render::progress::Stage,
    ) -> BTreeMap<(String, String), SecretFetch> {
        let mut by_namespace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (ns, name) in wanted {
            by_namespace.entry(ns).or_default().insert(name);
        }
        let mut fetched = BTreeMap::new();
        let mut to_get = Vec::new();
        if self.scope.read_secrets == k8s::SecretReads::List {
            let listed: Vec<_> = stream::iter(by_namespace)
                .map(|(ns, names)| async move {
                    let result = k8s::list_secrets(&self.kube, &ns, &names).await;
                    (ns, names, result)
                })
                .buffer_unordered(self.scope.concurrency)
                .collect()
                .await;
            for (ns, names, result) in listed {
                match result {
                    Ok(found) => {
                        for (name, fetch) in found {
                            bar.inc();
                            fetched.insert((ns.clone(), name), fetch);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            namespace = ns.as_str(),
                            error_type = e.metric_label(),
                            "{e}; reading its Secrets one GET at a time instead"
                        );
                        to_get.extend(names.into_iter().map(|name| (ns.clone(), name)));
                    }
                }
            }
        } else {
            to_get = by_namespace
                .into_iter()
                .flat_map(|(ns, names)| names.into_iter().map(move |name| (ns.clone(), name)))
                .collect();
        }
        let got: Vec<_> = stream::iter(to_get)
            .map(|(ns, name)| async move {
                let fetch = k8s::get_secret(&self.kube, &ns, &name).await;
                bar.inc();
                ((ns, name), fetch)
            })
            .buffer_unordered(self.scope.concurrency)
            .collect()
            .await;
        fetched.extend(got);
        fetched
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
