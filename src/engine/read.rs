//! The read side of a run: parsing the listed Deployments, looking up
//! the mounts of their paths, and reading Secrets and Vault paths with
//! bounded concurrency.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::carry::{Carried, Later, Packed};
use super::ports::{Cluster, SecretStore, Stage};
use super::{Engine, vault_problem};
use crate::core::annotations;
use crate::core::desired::{self, SecretFetch};
use crate::core::error_kind::ErrorKind;
use crate::core::ownership::{Owner, OwnerPool};
use crate::core::plan::{Located, Observed, Problem};
use crate::core::references::SecretReference;
use crate::core::vault_path::{self, KvLocation, MountTable};
use crate::core::workload::Kind;
use crate::k8s;
use crate::vault::VaultError;

/// One annotated workload after parsing, before any Secret is read. It
/// owns what the run needs of the listed workload, and only that: each
/// listed workload is parsed as its page arrives and then dropped, and
/// what can be derived again (its paths and their locations) is derived
/// when a batch needs it rather than kept for every workload of the run.
pub(super) struct Parsed {
    pub owner: Owner,
    /// What its batch reads and plans from, dropped after its batch (see
    /// [`Parsed::release`]), so that what every workload holds to the end
    /// of the run is its owner.
    wants: Option<Held>,
}

/// A workload's annotations and the Secrets its pod template references.
#[derive(Clone)]
pub(super) struct Wants {
    pub spec: annotations::SyncSpec,
    pub references: Vec<SecretReference>,
}

/// How [`Wants`] are held from the listing to their batch. Every workload
/// of a large run is listed before the first batch, so this is most of
/// the listing's memory: most workloads (no `vault-sync.io/secrets`) are
/// held as one string, not a string per path and per Secret name; their
/// batch unpacks it.
enum Held {
    /// No `vault-sync.io/secrets`, one line each: preserve-on-delete (`1`
    /// or `0`) and reconcile (empty by default, `off`, or the interval in
    /// nanoseconds); the path; each referenced Secret's name, led by `?`
    /// if every reference to it is optional (`=` if not). (A path holds no
    /// control character; a name that holds a line break is held
    /// [`Held::Whole`].)
    Packed(Box<str>),
    Whole(Box<Wants>),
}

impl Held {
    fn new(wants: Wants) -> Self {
        let Wants { spec, references } = wants;
        let packable = matches!(spec.mode, annotations::Mode::AutoDiscover)
            && references.iter().all(|r| !r.name.contains('\n'));
        if !packable {
            return Self::Whole(Box::new(Wants { spec, references }));
        }
        let mut packed = String::from(if spec.preserve_on_delete { "1" } else { "0" });
        match spec.reconcile {
            annotations::Reconcile::Default => {}
            annotations::Reconcile::Off => packed.push_str("off"),
            annotations::Reconcile::Every(every) => packed.push_str(&every.as_nanos().to_string()),
        }
        packed.push('\n');
        packed.push_str(&spec.path);
        for r in &references {
            packed.push('\n');
            packed.push(if r.optional { '?' } else { '=' });
            packed.push_str(&r.name);
        }
        Self::Packed(packed.into_boxed_str())
    }

    fn wants(&self) -> Cow<'_, Wants> {
        let packed = match self {
            Self::Whole(wants) => return Cow::Borrowed(wants),
            Self::Packed(packed) => packed,
        };
        let mut lines = packed.split('\n');
        let flags = lines.next().unwrap_or_default();
        let reconcile = match flags.get(1..).unwrap_or_default() {
            "" => annotations::Reconcile::Default,
            "off" => annotations::Reconcile::Off,
            // Written by `new` from a Duration: it reads back.
            nanos => nanos
                .parse::<u128>()
                .map_or(annotations::Reconcile::Default, |n| {
                    annotations::Reconcile::Every(Duration::new(
                        u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX),
                        (n % 1_000_000_000) as u32,
                    ))
                }),
        };
        let path = lines.next().unwrap_or_default().to_owned();
        let references = lines
            .map(|line| SecretReference {
                name: line.get(1..).unwrap_or_default().to_owned(),
                optional: line.starts_with('?'),
            })
            .collect();
        Cow::Owned(Wants {
            spec: annotations::SyncSpec {
                path,
                mode: annotations::Mode::AutoDiscover,
                preserve_on_delete: flags.starts_with('1'),
                reconcile,
            },
            references,
        })
    }
}

/// What parsing the listed workloads found.
#[derive(Default)]
pub(super) struct ParsedListing {
    /// The annotated workloads, in listing order once [`ParsedListing::sort`]ed.
    pub parsed: Vec<Parsed>,
    /// Annotation errors.
    pub problems: Vec<Problem>,
    /// One copy of each owner (and of its names): the index, read next,
    /// shares them too.
    pub owners: OwnerPool,
}

impl ParsedListing {
    /// The order the API server lists in (namespace, then name), whatever
    /// order the pages came in, so batches do not depend on paging.
    pub fn sort(&mut self) {
        fn key(p: &Parsed) -> (&str, &str, Kind) {
            (&p.owner.namespace, &p.owner.name, p.owner.kind)
        }
        self.parsed.sort_by(|a, b| key(a).cmp(&key(b)));
    }
}

impl Parsed {
    pub fn namespace(&self) -> &str {
        &self.owner.namespace
    }

    /// What its batch plans from; `None` once [released](Parsed::release).
    pub fn wants(&self) -> Option<Cow<'_, Wants>> {
        self.wants.as_ref().map(Held::wants)
    }

    /// Secrets to read (none when reconcile is off). Derived when a batch
    /// needs them rather than kept for every workload of the run.
    pub fn secrets(&self) -> impl Iterator<Item = String> + '_ {
        self.wants()
            .filter(|w| w.spec.reconcile != annotations::Reconcile::Off)
            .map(|w| desired::required_secrets(&w.spec, &w.references))
            .into_iter()
            .flatten()
            .map(|r| r.name)
    }

    /// Drops what only its batch needed: after it, the run needs only the
    /// owner (for the orphan phase), and a large run holds every workload
    /// to the end.
    pub fn release(&mut self) {
        self.wants = None;
    }

    /// The paths it can want, as its annotations spell them (none when
    /// reconcile is off: nothing is read, its paths are held).
    pub fn raw_paths(&self) -> Vec<String> {
        match self.wants() {
            Some(w) if w.spec.reconcile != annotations::Reconcile::Off => {
                desired::wanted_paths(&w.spec, &w.references)
            }
            _ => Vec::new(),
        }
    }
}

/// The mounts of every wanted path, looked up once per run.
pub(super) struct Mounts {
    table: MountTable,
    /// Raw path → why its mount could not be looked up.
    errors: BTreeMap<String, VaultError>,
    cluster_prefix: Option<String>,
}

impl Mounts {
    pub fn locate(&self, raw: &str) -> Option<Result<KvLocation, vault_path::PathError>> {
        let mount = self.table.find(raw)?;
        Some(vault_path::locate(
            raw,
            mount,
            self.cluster_prefix.as_deref(),
        ))
    }

    /// The path as the plan shows it: where it is written (cluster prefix
    /// included) when that is known, else as the annotation spells it.
    pub fn display(&self, raw: &str) -> String {
        match self.locate(raw) {
            Some(Ok(location)) => location.to_string(),
            _ => raw.to_owned(),
        }
    }

    /// A desired path at its location, or the problem that stops it.
    pub fn resolve(&self, d: desired::DesiredPath) -> Result<Located, Box<Problem>> {
        match (self.errors.get(&d.raw_path), self.locate(&d.raw_path)) {
            (_, Some(Ok(location))) => Ok(Located {
                desired: d,
                location,
            }),
            (_, Some(Err(e))) => Err(Box::new(Problem {
                owner: d.owner.clone(),
                path: Some(d.raw_path.clone()),
                secret: None,
                kind: ErrorKind::InvalidPath,
                message: format!("{}: {e}", d.owner.describe()),
            })),
            (Some(e), None) => Err(Box::new(vault_problem(&d.owner, &d.raw_path, e))),
            (None, None) => Err(Box::new(Problem {
                owner: d.owner.clone(),
                path: Some(d.raw_path.clone()),
                secret: None,
                kind: ErrorKind::Unknown,
                message: format!(
                    "{}: the mount of {} was not looked up",
                    d.owner.describe(),
                    d.raw_path
                ),
            })),
        }
    }
}

impl<C: Cluster, S: SecretStore> Engine<C, S> {
    /// Parses one listed workload's annotations into `into`: an annotated
    /// workload, an annotation error, or nothing.
    pub(super) fn parse_one(&self, d: k8s::WorkloadView, into: &mut ParsedListing) {
        let owner = into.owners.intern(Owner::of(
            d.kind,
            self.scope.cluster.as_str(),
            d.namespace.as_str(),
            d.name.as_str(),
        ));
        match annotations::parse(&d.annotations) {
            Ok(Some(spec)) => {
                let refs = desired::required_secrets(&spec, &d.references);
                self.metrics
                    .secrets_discovered
                    .set(&owner, "", refs.len() as i64);
                into.parsed.push(Parsed {
                    owner,
                    wants: Some(Held::new(Wants {
                        spec,
                        references: d.references,
                    })),
                });
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics
                    .config_parse_errors
                    .with_label_values(&[d.namespace.as_str(), d.name.as_str(), e.metric_label()])
                    .inc();
                into.problems.push(Problem {
                    path: d.annotations.get(annotations::PATH).cloned(),
                    message: format!("{}: {e}", owner.describe()),
                    owner,
                    secret: None,
                    kind: e.kind(),
                });
            }
        }
    }

    /// Where `p`'s paths are, of those it may write: a path outside its
    /// namespace's allowed paths is not even read.
    pub(super) fn locations(&self, p: &Parsed, mounts: &Mounts) -> Vec<KvLocation> {
        p.raw_paths()
            .iter()
            .filter_map(|raw| mounts.locate(raw).and_then(Result::ok))
            .filter(|l| self.allowed(p.namespace(), l).is_ok())
            .collect()
    }

    /// One lookup per mount: a known mount that prefixes a path is its mount.
    pub(super) async fn look_up_mounts(&self, raw_paths: impl Iterator<Item = String>) -> Mounts {
        let mut mounts = Mounts {
            table: MountTable::default(),
            errors: BTreeMap::new(),
            cluster_prefix: self.scope.cluster_prefix.clone(),
        };
        for raw in raw_paths {
            if mounts.table.find(&raw).is_some() || mounts.errors.contains_key(&raw) {
                continue;
            }
            match self.vault.lookup_mount(&raw).await {
                Ok(m) => mounts.table.insert(m),
                Err(e) => {
                    mounts.errors.insert(raw, e);
                }
            }
        }
        mounts
    }

    /// Fetches each needed Secret once: a GET each, or with
    /// `--read-secrets list` paged LISTs of their namespaces. A namespace
    /// whose LIST is forbidden falls back to GETs.
    ///
    /// What a LIST returns beyond `wanted` is kept in `carried` when
    /// `later` batches want it, and taken from there by the batch that does.
    pub(super) async fn fetch_secrets(
        &self,
        wanted: BTreeSet<(String, String)>,
        (carried, mut later): (&mut Carried, Later),
        bar: &impl Stage,
    ) -> BTreeMap<(String, String), SecretFetch> {
        let mut by_namespace: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (ns, name) in wanted {
            by_namespace.entry(ns).or_default().insert(name);
        }
        let mut fetched = BTreeMap::new();
        let mut to_get = Vec::new();
        if self.scope.read_secrets == k8s::SecretReads::List {
            let mut to_list = Vec::new();
            for (ns, names) in by_namespace {
                match carried.take(&ns, &names) {
                    Some(found) => {
                        for (name, fetch) in found {
                            bar.inc();
                            fetched.insert((ns.clone(), name), fetch);
                        }
                    }
                    None => {
                        let also = later.remove(&ns).unwrap_or_default();
                        to_list.push((ns, names, also));
                    }
                }
            }
            let listed: Vec<_> = stream::iter(to_list)
                .map(|(ns, names, also)| async move {
                    // This batch's Secrets as read; later batches' packed.
                    let mut now = BTreeMap::new();
                    let mut kept = BTreeMap::new();
                    let mut each = |name: String, fetch: SecretFetch| {
                        if names.contains(&name) {
                            now.insert(name, fetch);
                        } else if let Some(packed) = Packed::pack(fetch) {
                            kept.insert(name, packed);
                        }
                    };
                    let result = if also.is_empty() {
                        self.kube.list_secrets(&ns, &names, &mut each).await
                    } else {
                        let mut all = also;
                        all.extend(names.iter().cloned());
                        let result = self.kube.list_secrets(&ns, &all, &mut each).await;
                        // Not found is an answer too: carried as such.
                        for name in all.into_iter().filter(|n| !names.contains(n)) {
                            kept.entry(name).or_insert_with(Packed::not_found);
                        }
                        result
                    };
                    (ns, names, result.map(|()| (now, kept)))
                })
                .buffer_unordered(self.scope.concurrency)
                .collect()
                .await;
            for (ns, names, result) in listed {
                match result {
                    Ok((mut now, kept)) => {
                        for name in names {
                            bar.inc();
                            let fetch = now.remove(&name).unwrap_or(SecretFetch::NotFound);
                            fetched.insert((ns.clone(), name), fetch);
                        }
                        for (name, packed) in kept {
                            carried.keep(&ns, name, packed);
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
                let fetch = self.kube.get_secret(&ns, &name).await;
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
    pub(super) async fn observe(
        &self,
        locations: BTreeSet<KvLocation>,
        bar: &impl Stage,
    ) -> BTreeMap<KvLocation, Observed> {
        stream::iter(locations)
            .map(|loc| async move {
                let observed = match self.vault.read(&loc).await {
                    Ok(o) => o,
                    Err(e) => {
                        let e = self.vault.explain(e).await;
                        Observed::Failed {
                            kind: e.kind(),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Held, Wants};
    use crate::core::annotations::{Mode, Reconcile, SecretSelection, SyncSpec};
    use crate::core::references::SecretReference;

    fn wants(mode: Mode, names: &[(&str, bool)]) -> Wants {
        Wants {
            spec: SyncSpec {
                path: "secret/team/app".into(),
                mode,
                preserve_on_delete: true,
                reconcile: Reconcile::Every(Duration::from_secs(90)),
            },
            references: names
                .iter()
                .map(|&(name, optional)| SecretReference {
                    name: name.into(),
                    optional,
                })
                .collect(),
        }
    }

    fn round_trip(w: &Wants) -> (bool, Wants) {
        let held = Held::new(w.clone());
        (matches!(held, Held::Packed(_)), held.wants().into_owned())
    }

    #[test]
    fn held_wants_unpack_to_what_was_parsed() {
        let cases = [
            (
                wants(Mode::AutoDiscover, &[("db", false), ("tls", true)]),
                true,
            ),
            (wants(Mode::AutoDiscover, &[]), true),
            // Held whole: a selection, and a name the packing cannot hold.
            (
                wants(
                    Mode::Custom(vec![SecretSelection {
                        name: "db".into(),
                        keys: vec!["password".into()],
                        prefix: Some("DB_".into()),
                    }]),
                    &[("db", false)],
                ),
                false,
            ),
            (wants(Mode::AutoDiscover, &[("a\nb", false)]), false),
        ];
        let reconciles = [
            Reconcile::Default,
            Reconcile::Off,
            Reconcile::Every(Duration::from_millis(30_500)),
        ];
        for (w, packed) in cases {
            for (reconcile, preserve_on_delete) in reconciles.iter().zip([false, true, false]) {
                let mut w = w.clone();
                w.spec.reconcile = *reconcile;
                w.spec.preserve_on_delete = preserve_on_delete;
                let (was_packed, back) = round_trip(&w);
                assert_eq!(was_packed, packed, "{:?}", w.spec);
                assert_eq!(back.spec, w.spec);
                assert_eq!(back.references, w.references);
            }
        }
    }
}
