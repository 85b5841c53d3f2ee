//! The thin shell around the core: gather inputs through the adapters, call
//! the pure functions, apply the plan. Every failure is attributed to a
//! Deployment or path and never stops the others.

mod apply;
mod carry;
mod orphans;
pub mod ports;
mod read;
mod saved;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::core::batch;
use crate::core::desired::{self, SecretFetch};
use crate::core::error_kind::ErrorKind;
use crate::core::index::Index;
use crate::core::orphans::WantedPaths;
use crate::core::ownership::{Owner, OwnerPool};
use crate::core::path_rules::PathRules;
use crate::core::plan::{
    self, Action, Change, KeyNamePool, Located, Note, Plan, PlanOptions, Problem, Target,
};
use crate::core::saved_plan::Pins;
use crate::core::vault_path::KvLocation;
use crate::core::workload::Kind;
use crate::k8s::{self, KubeError, Listing};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::vault::VaultError;
use carry::Carried;
pub use orphans::{IndexFailure, IndexState};
use ports::{Cluster, Reporter, SecretStore, Stage, WorkloadState};
use read::{Mounts, Parsed, ParsedListing};
pub use saved::SavedOutcome;

/// What a run works on, from the command line.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The owner's cluster component (`--cluster-name`, else "default").
    pub cluster: String,
    /// `--cluster-name` given: paths go under `clusters/<name>/`.
    pub cluster_prefix: Option<String>,
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
    /// The workload kinds read (`--kinds`).
    pub kinds: Vec<Kind>,
    /// Which paths each namespace may write (`--allow-path`; empty: any).
    pub rules: PathRules,
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
    pub errors: Vec<(ErrorKind, String)>,
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
    pub fn run_errors(&self) -> Vec<(ErrorKind, String)> {
        self.listing_failures
            .iter()
            .map(|f| {
                (
                    f.kind(),
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
    pub errors: Vec<(ErrorKind, String)>,
}

pub struct Engine<C, S> {
    pub kube: C,
    pub vault: S,
    pub scope: Scope,
    pub metrics: Arc<Metrics>,
    /// A stop request: no further batch, no orphan judged or deleted.
    pub shutdown: Shutdown,
}

/// Secret bytes a batch aims to hold: with `--batch-size` as the cap on
/// paths, memory stays flat whether values are 30 bytes or 30 KiB.
const BATCH_VALUE_BYTES: usize = 8 << 20;
/// Paths in the first batch (and the least in any batch, unless
/// `--batch-size` is smaller): small runs stay one batch.
const FIRST_BATCH_PATHS: usize = 64;

/// The progress bars of the batch phase.
struct Bars<St> {
    secrets: St,
    vault: St,
    writes: St,
}

/// What one batch works on.
struct Batch<'b, St> {
    members: &'b [&'b Parsed],
    mounts: &'b Mounts,
    bars: &'b Bars<St>,
    /// `run`: apply the batch's creates and updates.
    writes: bool,
    /// `plan --out`: record what each change is pinned to.
    pin: bool,
}

/// Time since the start of `prepare`, for the debug log of each phase.
struct Clock(std::time::Instant);

impl Clock {
    fn start() -> Self {
        Self(std::time::Instant::now())
    }

    fn elapsed_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    /// Logs the end of a phase, with the process's resident memory then
    /// (what a memory limit is measured against).
    fn phase(&self, name: &str) {
        tracing::debug!(
            elapsed_ms = self.elapsed_ms(),
            rss_kib = resident_kib(),
            "prepare: {name} done"
        );
    }
}

/// The process's resident memory in KiB (Linux; 0 where unknown).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// What the batches add up to.
#[derive(Default)]
struct Gathered {
    /// Every planned change (payloads released).
    changes: Vec<Change>,
    /// Failed writes, by their index in `changes`.
    write_failures: Vec<(usize, VaultError)>,
    notes: Vec<Note>,
    /// Owners whose existing paths must not be judged as orphans.
    held: BTreeSet<Owner>,
    /// Rows of paths outside their namespace's allowed paths: refused,
    /// and not wanted. Kept apart from `changes` until the orphans are
    /// judged, so that the located rows of `changes` are exactly the
    /// wanted paths (see [`Engine::judge_orphans`]).
    excluded: Vec<Change>,
    /// `plan --out`: what each change was computed from (no values).
    pins: Pins,
    /// Key names, shared by the rows that name them.
    names: KeyNamePool,
}

impl<C: Cluster, S: SecretStore> Engine<C, S> {
    /// Reads Kubernetes and Vault and builds the plan, batch by batch. With
    /// `writes` (`run`), each batch's creates and updates are applied before
    /// the next batch is read; deletions wait for [`Engine::apply`]. That
    /// flag is the only difference between `plan` and `run` here, and it is
    /// read in one place ([`Engine::plan_batch`]).
    ///
    /// The phases, each a method: list → parse and locate (every path
    /// derived and its mount looked up once) → open the index → per batch
    /// {read, desire, plan, apply} → orphans → the plan, sorted and guarded.
    ///
    /// Fails as a whole only when no request can succeed (the token is
    /// invalid): that is said once, not once per Deployment.
    pub async fn prepare(
        &self,
        progress: &impl Reporter,
        writes: bool,
    ) -> Result<Prepared, VaultError> {
        Ok(self.prepare_with(progress, writes, false).await?.0)
    }

    /// `plan --out`: the plan, and what each of its changes is pinned to
    /// (source Secrets' revisions, Vault versions and markers as read).
    pub async fn prepare_pinned(
        &self,
        progress: &impl Reporter,
    ) -> Result<(Prepared, Pins), VaultError> {
        self.prepare_with(progress, false, true).await
    }

    async fn prepare_with(
        &self,
        progress: &impl Reporter,
        writes: bool,
        pin: bool,
    ) -> Result<(Prepared, Pins), VaultError> {
        let clock = Clock::start();
        let (
            listing,
            ParsedListing {
                mut parsed,
                problems,
                mut owners,
            },
        ) = self.list(progress).await;
        clock.phase("listing");
        // Phase 2: every path a workload can want is known before any
        // Secret is read (custom mode names the path, auto-discovery
        // derives it from the referenced Secrets' names), so each mount is
        // looked up once, up front; each batch's Secret reads and Vault
        // reads then run at the same time.
        let mounts = self
            .look_up_mounts(parsed.iter().flat_map(Parsed::raw_paths))
            .await;
        let problem_owners: BTreeSet<Owner> = problems.iter().map(|p| p.owner.clone()).collect();
        self.stop_if_fatal()?;
        clock.phase("mount lookups");
        let mut errors = Vec::new();
        let mut index = self.open_index(&mut errors, &mut owners).await;
        drop(owners);
        self.stop_if_fatal()?;
        clock.phase("index read");
        let mut gathered = self
            .plan_batches(
                &mut parsed,
                &mounts,
                &mut index,
                &mut errors,
                progress,
                (writes, pin),
                &clock,
            )
            .await;
        // Annotation errors: no path to read, only a change to show.
        let parse_problems = plan::plan(
            Vec::new(),
            problems,
            Vec::new(),
            &BTreeMap::new(),
            &Index::new(),
            &PlanOptions::default(),
        );
        gathered.changes.extend(parse_problems.changes);
        clock.phase("plan");
        // Every workload listed, for the orphan phase: the parsed ones and
        // those whose annotations did not parse (few), sorted to search.
        let mut listed: Vec<&Owner> = parsed.iter().map(|p| &p.owner).collect();
        listed.extend(&problem_owners);
        listed.sort_unstable();
        let mut forget = self
            .judge_orphans(
                &listing,
                &listed,
                index.as_ref(),
                &mut gathered,
                &mut errors,
            )
            .await;
        gathered.changes.append(&mut gathered.excluded);
        let (mut plan, write_failures) =
            Plan::from_rows(gathered.changes, gathered.write_failures, gathered.notes);
        // Refused by the guard: still ours, still indexed.
        for loc in plan.guard_deletes(self.scope.max_deletes) {
            forget.remove(&loc);
        }
        clock.phase("orphans");
        let prepared = Prepared {
            plan,
            listing_failures: listing.failures,
            errors,
            index,
            forget,
            write_failures,
        };
        Ok((prepared, gathered.pins))
    }

    /// Phase 1: the annotated workloads in scope, each parsed as its page
    /// arrives (the listing itself is never held whole).
    async fn list(&self, progress: &impl Reporter) -> (Listing, ParsedListing) {
        let bar = progress.spinner("listing workloads");
        let mut found = ParsedListing::default();
        let listing = self
            .kube
            .list_workloads(
                &self.scope.kinds,
                &self.scope.namespaces,
                self.scope.selector.as_deref(),
                &mut |view| self.parse_one(view, &mut found),
            )
            .await;
        bar.finish();
        for failure in &listing.failures {
            tracing::error!(error_type = failure.metric_label(), "{failure}");
        }
        found.sort();
        (listing, found)
    }

    fn stop_if_fatal(&self) -> Result<(), VaultError> {
        match self.vault.fatal() {
            Some(fatal) => Err(fatal),
            None => Ok(()),
        }
    }

    /// Phase 3: the index is read before planning: it decides ownership of
    /// KV v1 paths and of writes interrupted before their marker. `None`
    /// when it cannot be used (said in `errors`).
    async fn open_index(
        &self,
        errors: &mut Vec<(ErrorKind, String)>,
        owners: &mut OwnerPool,
    ) -> Option<IndexState> {
        match self.read_index_sharing(owners).await {
            Ok(state) => Some(state),
            Err(e) => {
                self.index_unusable(&e, errors);
                None
            }
        }
    }

    /// Phase 4: the batches, each read, desired, planned and (for `run`)
    /// written before the next is read, so memory follows one batch.
    #[allow(clippy::too_many_arguments)]
    async fn plan_batches(
        &self,
        parsed: &mut [Parsed],
        mounts: &Mounts,
        index: &mut Option<IndexState>,
        errors: &mut Vec<(ErrorKind, String)>,
        progress: &impl Reporter,
        (writes, pin): (bool, bool),
        clock: &Clock,
    ) -> Gathered {
        let scope = &self.scope;
        // Batching needs only which workloads share a location: their
        // fingerprints, in one list (not a list per workload, whose small
        // allocations would stay scattered through the heap all run long),
        // dropped once the batches are cut.
        let mut fingerprints: Vec<u128> = Vec::new();
        let mut ends: Vec<usize> = Vec::with_capacity(parsed.len());
        for p in parsed.iter() {
            let locations = self.locations(p, mounts);
            fingerprints.extend(locations.iter().map(KvLocation::fingerprint));
            ends.push(fingerprints.len());
        }
        let shared: Vec<&[u128]> = ends
            .iter()
            .scan(0, |start, &end| {
                let wanted = &fingerprints[*start..end];
                *start = end;
                Some(wanted)
            })
            .collect();
        drop(ends);
        let paths = fingerprints.len() as u64;
        let rows: usize = shared.iter().map(|l| l.len().max(1)).sum();
        let mut batcher = batch::Batcher::new(&shared);
        drop(shared);
        drop(fingerprints);
        // The first batch is small, since how large values are is not
        // known yet; later ones are sized from what the last one held.
        let min_batch = (2 * scope.concurrency).max(FIRST_BATCH_PATHS);
        let mut limit = min_batch.min(scope.batch_size);
        let bars = Bars {
            secrets: progress.bar(
                "reading Secrets",
                parsed.iter().map(|p| p.secrets().count() as u64).sum(),
            ),
            vault: progress.bar("reading Vault", paths),
            writes: progress.growing("writing Vault", if writes { paths } else { 0 }),
        };
        let mut gathered = Gathered {
            changes: Vec::with_capacity(rows),
            ..Gathered::default()
        };
        let mut batch_number = 0;
        let mut carried = Carried::default();
        let mut last = None;
        while let Some(members) = batcher.next_batch(limit) {
            if self.shutdown.requested().is_some() {
                break;
            }
            batch_number += 1;
            let later = match scope.read_secrets {
                k8s::SecretReads::List => {
                    let mut sorted = members.clone();
                    sorted.sort_unstable();
                    carry::later_secrets(parsed, &sorted, Carried::capacity(last))
                }
                _ => BTreeMap::new(),
            };
            let batch_members: Vec<&Parsed> = members.iter().map(|&i| &parsed[i]).collect();
            let batch = Batch {
                members: &batch_members,
                mounts,
                bars: &bars,
                writes,
                pin,
            };
            let (paths, bytes) = self
                .plan_batch(batch, (&mut carried, later), index, errors, &mut gathered)
                .await;
            drop(batch_members);
            for i in members {
                parsed[i].release();
            }
            last = Some((paths, bytes));
            limit = batch::next_limit(paths, bytes, BATCH_VALUE_BYTES, min_batch, scope.batch_size);
            tracing::debug!(
                elapsed_ms = clock.elapsed_ms(),
                paths,
                secret_bytes = bytes,
                "prepare: batch {batch_number} done"
            );
        }
        bars.secrets.finish();
        bars.vault.finish();
        bars.writes.finish();
        gathered
    }

    /// One batch: its Secrets and Vault paths read at once, the desired
    /// state, the plan against a fresh enough index, and for `run` the
    /// writes. Returns the paths and Secret bytes it held.
    async fn plan_batch<St: Stage>(
        &self,
        batch: Batch<'_, St>,
        carry: (&mut Carried, carry::Later),
        index: &mut Option<IndexState>,
        errors: &mut Vec<(ErrorKind, String)>,
        gathered: &mut Gathered,
    ) -> (usize, usize) {
        let members = batch.members;
        let wanted: BTreeSet<(String, String)> = members
            .iter()
            .flat_map(|p| p.secrets().map(|s| (p.namespace().to_owned(), s)))
            .collect();
        let locations: BTreeSet<KvLocation> = members
            .iter()
            .flat_map(|p| self.locations(p, batch.mounts))
            .collect();
        let paths = locations.len();
        let (fetched, observed) = tokio::join!(
            self.fetch_secrets(wanted, carry, &batch.bars.secrets),
            self.observe(locations, &batch.bars.vault)
        );
        let bytes: usize = fetched.values().map(SecretFetch::value_bytes).sum();

        let (mut located, problems) = self.desire_batch(members, &fetched, batch.mounts, gathered);
        let sources = batch
            .pin
            .then(|| saved::source_pins(members, &located, &fetched));
        drop(fetched);
        if let Some(state) = index.as_mut() {
            self.refresh_index_for(state, &located, &observed).await;
            if let Err(e) = self.check_not_lost(state, &located, &observed) {
                self.index_unusable(&e, errors);
                *index = None;
            }
        }
        let no_index = Index::new();
        let index_now = index.as_ref().map_or(&no_index, |s| &s.index);
        // A row kept to the end of the run points at its path's copy in
        // the index, which is held to the end too.
        for l in &mut located {
            if let Some((indexed, _)) = index_now.get_key_value(&l.location) {
                l.location.rel = indexed.rel.clone();
            }
        }
        let holders = plan::holders_to_check(&located, &observed, index_now, &self.scope.cluster);
        let opts = PlanOptions {
            adopt: self.scope.adopt,
            gone: self.gone_owners(holders).await,
        };
        let batch_plan = plan::plan(located, problems, Vec::new(), &observed, index_now, &opts);
        if let Some(sources) = sources {
            saved::pin_writes(&batch_plan, sources, &observed, &mut gathered.pins);
        }
        drop(observed);
        if batch.writes {
            let failures = self
                .write_batch(&batch_plan, index, errors, &batch.bars.writes)
                .await;
            let offset = gathered.changes.len();
            gathered
                .write_failures
                .extend(failures.into_iter().map(|(i, e)| (offset + i, e)));
        }
        gathered
            .changes
            .extend(batch_plan.changes.into_iter().map(|mut change| {
                change.release_payload();
                change.share_names(&mut gathered.names);
                change
            }));
        (paths, bytes)
    }

    /// Phase 5: the index's entries that nothing wants any more, judged
    /// against the API server and the paths' own markers now. Returns the
    /// entries to drop from the index after the deletions. Nothing is
    /// judged without a usable index, after an incomplete listing, or
    /// after a stop request (the batches left were neither read nor
    /// planned). An incomplete listing holds only the kinds it failed on.
    async fn judge_orphans(
        &self,
        listing: &Listing,
        listed: &[&Owner],
        index: Option<&IndexState>,
        gathered: &mut Gathered,
        errors: &mut Vec<(ErrorKind, String)>,
    ) -> BTreeSet<KvLocation> {
        if let Some(reason) = self.shutdown.reason() {
            errors.push((
                ErrorKind::Interrupted,
                format!("{reason}; the Deployments not reached yet were not synced, and nothing is deleted"),
            ));
            return BTreeSet::new();
        }
        let (true, Some(state)) = (self.scope.prune, index) else {
            return BTreeSet::new();
        };
        let Gathered { changes, held, .. } = gathered;
        held.extend(
            changes
                .iter()
                .filter(|c| matches!(c.action, Action::Error { .. } | Action::Conflict { .. }))
                .map(|c| c.owner.clone()),
        );
        // Only owners of a kind listed in full this run are judged.
        let judged: Vec<Kind> = self
            .scope
            .kinds
            .iter()
            .copied()
            .filter(|k| !listing.incomplete.contains(k))
            .collect();
        // The wanted paths are the located rows': each path a batch
        // planned has its row, and rows outside the allowed paths are
        // not among them yet. Made now, not batch by batch, so that the
        // last batch's working set is gone before this list is made.
        let mut desired = WantedPaths::with_capacity(changes.len());
        for location in changes.iter().filter_map(Change::location) {
            desired.insert(location);
        }
        let desired = desired.seal();
        let findings = self
            .find_orphans(
                &state.index,
                &desired,
                held,
                &|o: &Owner| listed.binary_search(&o).is_ok(),
                &judged,
            )
            .await;
        changes.extend(findings.changes);
        gathered.pins.deletes.extend(findings.pins);
        findings.forget
    }

    /// The desired state of one batch's Deployments: the located paths to
    /// diff and the problems found. Notes, held owners and desired
    /// locations go to `gathered`.
    fn desire_batch(
        &self,
        members: &[&Parsed],
        fetched: &BTreeMap<(String, String), SecretFetch>,
        mounts: &Mounts,
        gathered: &mut Gathered,
    ) -> (Vec<Located>, Vec<Problem>) {
        let mut located = Vec::new();
        let mut problems = Vec::new();
        for p in members {
            let Some(wants) = p.wants() else { continue };
            let secrets = NamespaceSecrets {
                namespace: p.namespace(),
                all: fetched,
            };
            let outcome = desired::desire(&p.owner, &wants.spec, &wants.references, &secrets);
            if outcome.hold_existing {
                gathered.held.insert(p.owner.clone());
            }
            self.count_desire_errors(&outcome.errors);
            for (path, e) in outcome.errors {
                problems.push(Problem {
                    owner: p.owner.clone(),
                    path: path.map(|raw| mounts.display(&raw)),
                    secret: Some(e.secret().to_owned()),
                    kind: e.kind(),
                    message: format!("{}: {e}", p.owner.describe()),
                });
            }
            gathered
                .notes
                .extend(outcome.notes.into_iter().map(|message| Note {
                    owner: p.owner.clone(),
                    message,
                }));
            for d in outcome.paths {
                match mounts.resolve(d) {
                    Ok(l) => match self.allowed(p.namespace(), &l.location) {
                        Ok(()) => {
                            located.push(l);
                        }
                        Err(reason) => gathered.excluded.push(Change {
                            target: Target::Located(l.location),
                            owner: p.owner.clone(),
                            action: Action::Refused {
                                reason: reason.into(),
                                kind: Some(ErrorKind::OutsideAllowedPaths),
                            },
                            write: None,
                            write_released: false,
                            preserve_on_delete: l.desired.preserve_on_delete,
                        }),
                    },
                    Err(problem) => problems.push(*problem),
                }
            }
        }
        (located, problems)
    }

    /// An index that cannot be used: said once, counted, and the run goes
    /// on creating and deleting nothing (`index` becomes `None`).
    fn index_unusable(&self, e: &IndexFailure, errors: &mut Vec<(ErrorKind, String)>) {
        tracing::error!(
            error_type = e.metric_label(),
            "cannot use the vault-sync index: {e}"
        );
        let what = match e {
            IndexFailure::Vault(_) => "cannot read the vault-sync index",
            IndexFailure::Index { .. } => "cannot use the vault-sync index",
        };
        errors.push((
            e.kind(),
            format!("{what}, so nothing is created or deleted and the index is left as found: {e}"),
        ));
    }

    /// Of the owners holding paths others want, those the API server says
    /// are gone (404). One GET per owner; a failed GET keeps the conflict.
    async fn gone_owners(&self, holders: BTreeSet<Owner>) -> BTreeSet<Owner> {
        stream::iter(holders)
            .map(|owner| async move {
                let gone = matches!(
                    self.kube
                        .workload(owner.kind, &owner.namespace, &owner.name)
                        .await,
                    Ok(WorkloadState::Gone)
                );
                gone.then_some(owner)
            })
            .buffer_unordered(self.scope.concurrency)
            .filter_map(|o| async move { o })
            .collect()
            .await
    }

    /// Whether a workload in `namespace` may write `location`.
    fn allowed(&self, namespace: &str, location: &KvLocation) -> Result<(), String> {
        self.scope
            .rules
            .allows(namespace, location, self.scope.cluster_prefix.as_deref())
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
        kind: e.kind(),
        message: format!("{}: {e}", owner.describe()),
    }
}
