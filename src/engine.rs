//! The thin shell around the core: gather inputs through the adapters, call
//! the pure functions, apply the plan. Every failure is attributed to a
//! Deployment or path and never stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::core::annotations;
use crate::core::desired::{self, SecretFetch};
use crate::core::ownership::Owner;
use crate::core::plan::{self, Located, Note, Observed, Plan, PlanOptions, Problem};
use crate::core::vault_path::{self, KvLocation, MountTable};
use crate::k8s::{self, KubeError};
use crate::metrics::Metrics;
use crate::render::progress::Progress;
use crate::vault::{Vault, VaultError};

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
}

/// Everything a command needs after the read phase.
pub struct Prepared {
    pub plan: Plan,
    pub listing_failures: Vec<KubeError>,
    pub deployments: usize,
}

impl Prepared {
    pub fn listing_complete(&self) -> bool {
        self.listing_failures.is_empty()
    }
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
        let bar = progress.spinner("listing Deployments");
        let listing =
            k8s::list_deployments(&self.kube, &scope.namespaces, scope.selector.as_deref()).await;
        bar.finish();
        for failure in &listing.failures {
            tracing::error!(error_type = failure.metric_label(), "{failure}");
        }

        let mut problems = Vec::new();
        let mut notes = Vec::new();
        // Parse annotations; remember which Secrets each Deployment needs.
        let mut specs = Vec::new();
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        for d in &listing.deployments {
            let owner = Owner::new(&scope.cluster, &d.namespace, &d.name);
            match annotations::parse(&d.annotations) {
                Ok(Some(spec)) => {
                    let refs = desired::required_secrets(&spec, d.pod.as_ref());
                    self.metrics
                        .secrets_discovered
                        .with_label_values(&[d.namespace.as_str(), d.name.as_str()])
                        .set(refs.len() as i64);
                    if spec.reconcile != annotations::Reconcile::Off {
                        for r in refs {
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

        // Fetch each needed Secret once.
        let bar = progress.bar("reading Secrets", wanted.len() as u64);
        let fetched: BTreeMap<(String, String), SecretFetch> = stream::iter(wanted)
            .map(|(ns, name)| {
                let client = self.kube.clone();
                let bar = &bar;
                async move {
                    let fetch = k8s::get_secret(&client, &ns, &name).await;
                    bar.inc();
                    ((ns, name), fetch)
                }
            })
            .buffer_unordered(scope.concurrency)
            .collect()
            .await;
        bar.finish();

        // Desired state per Deployment.
        let mut desired_paths = Vec::new();
        for (owner, spec, d) in &specs {
            let secrets: BTreeMap<String, SecretFetch> = fetched
                .range((d.namespace.clone(), String::new())..)
                .take_while(|((ns, _), _)| *ns == d.namespace)
                .map(|((_, name), f)| (name.clone(), f.clone()))
                .collect();
            let outcome = desired::desire(owner, spec, d.pod.as_ref(), &secrets);
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
            desired_paths.extend(outcome.paths);
        }
        drop(fetched);

        // Resolve every path against the mount table (one lookup per mount).
        let mut mounts = MountTable::default();
        let mut located = Vec::with_capacity(desired_paths.len());
        for d in desired_paths {
            let mount = match mounts.find(&d.raw_path) {
                Some(m) => m.clone(),
                None => match self.vault.lookup_mount(&d.raw_path).await {
                    Ok(m) => {
                        mounts.insert(m.clone());
                        m
                    }
                    Err(e) => {
                        problems.push(vault_problem(&d.owner, &d.raw_path, &e));
                        continue;
                    }
                },
            };
            match vault_path::locate(&d.raw_path, &mount, scope.cluster_prefix.as_deref()) {
                Ok(location) => located.push(Located {
                    desired: d,
                    location,
                }),
                Err(e) => problems.push(Problem {
                    owner: d.owner.clone(),
                    path: Some(d.raw_path.clone()),
                    secret: None,
                    kind: "invalid_path",
                    message: format!("Deployment {}: {e}", d.owner.short()),
                }),
            }
        }

        // Observe: one read per distinct location.
        let locations: BTreeSet<KvLocation> = located.iter().map(|l| l.location.clone()).collect();
        let bar = progress.bar("reading Vault", locations.len() as u64);
        let observed: BTreeMap<KvLocation, Observed> = stream::iter(locations)
            .map(|loc| {
                let bar = &bar;
                async move {
                    let observed = match self.vault.read(&loc).await {
                        Ok(o) => o,
                        Err(e) => {
                            self.metrics
                                .vault_write_errors
                                .with_label_values(&[e.metric_label()])
                                .inc();
                            Observed::Failed {
                                kind: e.metric_label(),
                                message: e.to_string(),
                            }
                        }
                    };
                    bar.inc();
                    (loc, observed)
                }
            })
            .buffer_unordered(scope.concurrency)
            .collect()
            .await;
        bar.finish();

        let plan = plan::plan(
            located,
            problems,
            notes,
            &observed,
            &BTreeMap::new(),
            &PlanOptions { adopt: scope.adopt },
        );
        Prepared {
            plan,
            listing_failures: listing.failures,
            deployments: specs.len(),
        }
    }

    /// Executes the plan's writes with bounded concurrency. Returns, per
    /// change index, the error of each write that failed.
    pub async fn apply(&self, plan: &Plan, progress: &Progress) -> BTreeMap<usize, VaultError> {
        let writes: Vec<usize> = plan
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.write.is_some() && c.location.is_some())
            .map(|(i, _)| i)
            .collect();
        let bar = progress.bar("writing Vault", writes.len() as u64);
        let failures = stream::iter(writes)
            .map(|i| {
                let change = &plan.changes[i];
                let bar = &bar;
                async move {
                    let result = match (&change.location, &change.write) {
                        (Some(loc), Some(write)) => self.vault.write(loc, write).await,
                        _ => Ok(()),
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
            .collect::<BTreeMap<_, _>>()
            .await;
        bar.finish();
        for e in failures.values() {
            self.metrics
                .vault_write_errors
                .with_label_values(&[e.metric_label()])
                .inc();
        }
        failures
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
