//! In-memory fakes of the engine's ports: a Kubernetes that holds
//! annotated Deployments and Secrets, and a Vault that models what the
//! shell relies on (KV v1 and v2 mounts, versions, check-and-set, soft
//! deletes, custom_metadata, a metadata-only path), with faults to inject
//! and a log of every write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::core::annotations;
use crate::core::desired::{SecretFetch, SecretMeta};
use crate::core::index::IndexRead;
use crate::core::ownership::PathMetadata;
use crate::core::plan::{Observed, ObservedSecret, Write};
use crate::core::references::SecretReference;
use crate::core::value::ValueDigest;
use crate::core::vault_path::{KvLocation, KvVersion, Mount};
use crate::core::workload::Kind;
use crate::engine::ports::{Cluster, Reporter, SecretStore, Stage, WorkloadState};
use crate::k8s::{KubeError, Listing, WorkloadView};
use crate::vault::VaultError;

// --- Kubernetes ---------------------------------------------------------------

#[derive(Default)]
pub struct FakeCluster {
    state: Mutex<ClusterState>,
}

#[derive(Default)]
struct ClusterState {
    workloads: BTreeMap<(Kind, String, String), WorkloadView>,
    secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Each Secret's uid and resourceVersion, as the API server keeps them:
    /// the version moves on every write, the uid when it is recreated.
    secret_meta: BTreeMap<(String, String), SecretMeta>,
    /// The last resourceVersion handed out.
    revision: u64,
    /// Secret GETs answered, by (namespace, name).
    secret_gets: Vec<(String, String)>,
    /// Secret LISTs answered, by namespace.
    secret_lists: Vec<String>,
}

impl FakeCluster {
    /// A Deployment whose pod template references `secrets`.
    pub fn deployment(&self, ns: &str, name: &str, annotations: &[(&str, &str)], secrets: &[&str]) {
        self.workload(Kind::Deployment, ns, name, annotations, secrets);
    }

    /// A workload of `kind` whose pod template references `secrets`.
    pub fn workload(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        annotations: &[(&str, &str)],
        secrets: &[&str],
    ) {
        let view = WorkloadView {
            kind,
            namespace: ns.into(),
            name: name.into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            references: secrets
                .iter()
                .map(|s| SecretReference {
                    name: (*s).into(),
                    optional: false,
                })
                .collect(),
        };
        self.lock()
            .workloads
            .insert((kind, ns.into(), name.into()), view);
    }

    pub fn delete_deployment(&self, ns: &str, name: &str) {
        self.delete_workload(Kind::Deployment, ns, name);
    }

    pub fn delete_workload(&self, kind: Kind, ns: &str, name: &str) {
        self.lock()
            .workloads
            .remove(&(kind, ns.into(), name.into()));
    }

    /// Creates or changes a Secret (a new resourceVersion either way).
    pub fn secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let data = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        let mut s = self.lock();
        s.revision += 1;
        let resource_version = s.revision.to_string();
        let key = (ns.to_owned(), name.to_owned());
        let uid = s.secret_meta.get(&key).map_or_else(
            || format!("uid-{ns}-{name}-{resource_version}"),
            |m| m.uid.clone(),
        );
        s.secret_meta.insert(
            key.clone(),
            SecretMeta {
                uid,
                resource_version,
            },
        );
        s.secrets.insert(key, data);
    }

    pub fn delete_secret(&self, ns: &str, name: &str) {
        let mut s = self.lock();
        let key = (ns.to_owned(), name.to_owned());
        s.secrets.remove(&key);
        s.secret_meta.remove(&key);
    }

    /// Every Secret GET since the last call.
    pub fn take_secret_gets(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.lock().secret_gets)
    }

    /// Every Secret LIST since the last call, by namespace.
    pub fn take_secret_lists(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().secret_lists)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClusterState> {
        self.state.lock().expect("fake cluster")
    }
}

impl ClusterState {
    fn fetch(&self, namespace: &str, name: &str) -> SecretFetch {
        let key = (namespace.to_owned(), name.to_owned());
        match self.secrets.get(&key) {
            Some(data) => {
                SecretFetch::found(data.clone()).with_meta(self.secret_meta.get(&key).cloned())
            }
            None => SecretFetch::NotFound,
        }
    }
}

impl Cluster for FakeCluster {
    async fn list_workloads(
        &self,
        kinds: &[Kind],
        namespaces: &[String],
        _selector: Option<&str>,
        each: &mut impl FnMut(WorkloadView),
    ) -> Listing {
        let workloads: Vec<WorkloadView> = self
            .lock()
            .workloads
            .values()
            .filter(|w| kinds.contains(&w.kind))
            .filter(|w| w.annotations.contains_key(annotations::PATH))
            .filter(|w| namespaces.is_empty() || namespaces.contains(&w.namespace))
            .cloned()
            .collect();
        workloads.into_iter().for_each(each);
        Listing {
            incomplete: BTreeSet::new(),
            failures: Vec::new(),
            requests: 1,
        }
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> SecretFetch {
        let mut s = self.lock();
        s.secret_gets.push((namespace.to_owned(), name.to_owned()));
        s.fetch(namespace, name)
    }

    async fn list_secrets(
        &self,
        namespace: &str,
        names: &BTreeSet<String>,
        each: &mut impl FnMut(String, SecretFetch),
    ) -> Result<(), KubeError> {
        let mut s = self.lock();
        s.secret_lists.push(namespace.to_owned());
        for name in names {
            if let found @ SecretFetch::Found(..) = s.fetch(namespace, name) {
                each(name.clone(), found);
            }
        }
        Ok(())
    }

    async fn workload(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<WorkloadState, KubeError> {
        let key = (kind, namespace.to_owned(), name.to_owned());
        Ok(match self.lock().workloads.get(&key) {
            None => WorkloadState::Gone,
            Some(w) => WorkloadState::Exists {
                annotated: w.annotations.contains_key(annotations::PATH),
            },
        })
    }
}

// --- Vault ---------------------------------------------------------------------

#[derive(Default)]
pub struct FakeVault {
    state: Mutex<VaultState>,
}

#[derive(Default)]
struct VaultState {
    mounts: BTreeMap<String, KvVersion>,
    /// (mount, rel) → path.
    paths: BTreeMap<(String, String), FakePath>,
    /// Every write, as (operation, API path).
    writes: Vec<(&'static str, String)>,
    /// Content writes to these display paths fail with a 500.
    failing: BTreeSet<String>,
    /// Metadata writes to these display paths are denied (403).
    no_metadata: BTreeSet<String>,
    /// The next record write is beaten to it by another writer, which
    /// adds this entry line first (a concurrent run).
    racer: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FakePath {
    /// Content of each version (index 0 is version 1); `None`: deleted.
    pub versions: Vec<Option<BTreeMap<String, String>>>,
    pub custom_metadata: BTreeMap<String, String>,
}

impl FakePath {
    pub fn current(&self) -> Option<&BTreeMap<String, String>> {
        self.versions.last().and_then(Option::as_ref)
    }
}

fn key(loc: &KvLocation) -> (String, String) {
    (loc.mount.to_string(), loc.rel.to_string())
}

impl FakeVault {
    /// With KV v2 `secret/` and KV v1 `kv1/`.
    pub fn new() -> Self {
        let v = Self::default();
        v.lock().mounts.insert("secret/".into(), KvVersion::V2);
        v.lock().mounts.insert("kv1/".into(), KvVersion::V1);
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VaultState> {
        self.state.lock().expect("fake vault")
    }

    /// The path at `display` (`secret/a/b`), as stored.
    pub fn get(&self, display: &str) -> Option<FakePath> {
        let s = self.lock();
        s.paths
            .iter()
            .find(|((m, r), _)| format!("{m}{r}") == display)
            .map(|(_, p)| p.clone())
    }

    /// Writes content as someone else would (no marker).
    pub fn put(&self, display: &str, data: &[(&str, &str)]) {
        let (mount, rel) = self.split(display);
        let data = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.lock()
            .paths
            .entry((mount, rel))
            .or_default()
            .versions
            .push(Some(data));
    }

    /// Sets a path's custom_metadata as someone else would.
    pub fn set_metadata(&self, display: &str, md: BTreeMap<String, String>) {
        let (mount, rel) = self.split(display);
        self.lock()
            .paths
            .entry((mount, rel))
            .or_default()
            .custom_metadata = md;
    }

    pub fn remove(&self, display: &str) {
        let k = self.split(display);
        self.lock().paths.remove(&k);
    }

    pub fn fail_content_writes(&self, display: &str) {
        self.lock().failing.insert(display.into());
    }

    pub fn deny_metadata_writes(&self, display: &str) {
        self.lock().no_metadata.insert(display.into());
    }

    pub fn race_next_record_write(&self, line: &str) {
        self.lock().racer = Some(line.into());
    }

    /// Every write since the last call.
    pub fn take_writes(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.lock().writes)
    }

    fn split(&self, display: &str) -> (String, String) {
        let s = self.lock();
        let mount = s
            .mounts
            .keys()
            .filter(|m| display.starts_with(m.as_str()))
            .max_by_key(|m| m.len())
            .cloned()
            .expect("a mount");
        let rel = display[mount.len()..].to_owned();
        (mount, rel)
    }

    fn version_of(&self, loc: &KvLocation) -> u64 {
        self.lock()
            .paths
            .get(&key(loc))
            .map_or(0, |p| p.versions.len() as u64)
    }

    fn push_version(
        &self,
        loc: &KvLocation,
        data: BTreeMap<String, String>,
        cas: Option<u64>,
    ) -> Result<(), VaultError> {
        let mut s = self.lock();
        let path = s.paths.entry(key(loc)).or_default();
        if loc.version == KvVersion::V1 {
            path.versions = vec![Some(data)];
        } else {
            if cas.is_some_and(|c| c != path.versions.len() as u64) {
                return Err(VaultError::CasMismatch {
                    path: loc.to_string(),
                });
            }
            path.versions.push(Some(data));
        }
        s.writes.push(("write", loc.data_path()));
        Ok(())
    }
}

impl SecretStore for FakeVault {
    async fn lookup_mount(&self, path: &str) -> Result<Mount, VaultError> {
        let s = self.lock();
        s.mounts
            .iter()
            .filter(|(m, _)| path.starts_with(m.as_str()) || format!("{path}/") == **m)
            .max_by_key(|(m, _)| m.len())
            .map(|(m, v)| Mount {
                path: m.as_str().into(),
                engine: "kv".into(),
                kv_version: Some(*v),
            })
            .ok_or_else(|| VaultError::InvalidPath {
                path: path.into(),
                message: "no secrets engine is mounted there".into(),
            })
    }

    async fn read(&self, loc: &KvLocation) -> Result<Observed, VaultError> {
        let s = self.lock();
        let Some(path) = s.paths.get(&key(loc)).filter(|p| !p.versions.is_empty()) else {
            return Ok(Observed::Absent);
        };
        let current = path.current();
        Ok(Observed::Present(ObservedSecret {
            version: match loc.version {
                KvVersion::V1 => 0,
                KvVersion::V2 => path.versions.len() as u64,
            },
            deleted: current.is_none(),
            data: current
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| (k.clone(), Some(ValueDigest::of(v))))
                        .collect()
                })
                .unwrap_or_default(),
            custom_metadata: path.custom_metadata.clone(),
        }))
    }

    async fn write(&self, loc: &KvLocation, write: &Write) -> Result<(), VaultError> {
        let display = loc.to_string();
        if let Some(data) = &write.data {
            if self.lock().failing.contains(&display) {
                return Err(VaultError::Status {
                    status: 500,
                    operation: "write",
                    path: loc.data_path(),
                    message: "injected".into(),
                });
            }
            let plain = data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect();
            self.push_version(loc, plain, write.cas)?;
        }
        if let (KvVersion::V2, Some(md)) = (loc.version, &write.metadata) {
            self.write_metadata(loc, md).await?;
        }
        Ok(())
    }

    async fn read_metadata(&self, loc: &KvLocation) -> Result<Option<PathMetadata>, VaultError> {
        Ok(self.lock().paths.get(&key(loc)).map(|p| PathMetadata {
            custom_metadata: p.custom_metadata.clone(),
            current_version: p.versions.len() as u64,
            current_deleted: !p.versions.is_empty() && p.current().is_none(),
        }))
    }

    async fn delete(&self, loc: &KvLocation, destroy: bool) -> Result<(), VaultError> {
        let mut s = self.lock();
        if destroy || loc.version == KvVersion::V1 {
            s.paths.remove(&key(loc));
            s.writes.push(("destroy", loc.metadata_path()));
        } else {
            if let Some(current) = s
                .paths
                .get_mut(&key(loc))
                .and_then(|p| p.versions.last_mut())
            {
                *current = None;
            }
            s.writes.push(("delete", loc.data_path()));
        }
        Ok(())
    }

    async fn read_record(&self, loc: &KvLocation) -> Result<IndexRead, VaultError> {
        let s = self.lock();
        Ok(match s.paths.get(&key(loc)) {
            None => IndexRead::Absent {
                custom_metadata: None,
            },
            Some(p) if p.versions.is_empty() => IndexRead::Absent {
                custom_metadata: Some(p.custom_metadata.clone()),
            },
            Some(p) => IndexRead::Present {
                version: p.versions.len() as u64,
                deleted: p.current().is_none(),
                data: p.current().cloned().unwrap_or_default(),
                custom_metadata: p.custom_metadata.clone(),
            },
        })
    }

    async fn write_record(
        &self,
        loc: &KvLocation,
        data: crate::core::index::Encoded<'_>,
        cas: u64,
    ) -> Result<(), VaultError> {
        let data: BTreeMap<String, String> = crate::core::index::encode(data.0);
        if self.lock().failing.contains(&loc.to_string()) {
            return Err(VaultError::Status {
                status: 500,
                operation: "write",
                path: loc.data_path(),
                message: "injected".into(),
            });
        }
        let racer = self.lock().racer.take();
        if let Some(line) = racer {
            // Another run's entry lands first, in the index's own format.
            let mut theirs = self
                .lock()
                .paths
                .get(&key(loc))
                .and_then(|p| p.current().cloned())
                .unwrap_or_else(|| crate::core::index::encode(&Default::default()));
            theirs.insert(
                "entries-9000".into(),
                crate::core::index::pack_chunk(format!("{line}\n").as_bytes()),
            );
            let version = self.version_of(loc);
            self.push_version(loc, theirs, Some(version))?;
        }
        self.push_version(loc, data, Some(cas))
    }

    async fn write_metadata(
        &self,
        loc: &KvLocation,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        let mut s = self.lock();
        if s.no_metadata.contains(&loc.to_string()) {
            return Err(VaultError::denied(
                "write",
                loc.metadata_path(),
                "create/update",
            ));
        }
        s.paths.entry(key(loc)).or_default().custom_metadata = metadata.clone();
        s.writes.push(("write", loc.metadata_path()));
        Ok(())
    }

    async fn list(&self, mount: &str, rel: &str) -> Result<Vec<String>, VaultError> {
        let s = self.lock();
        let keys: BTreeSet<String> = s
            .paths
            .keys()
            .filter(|(m, _)| m == mount)
            .filter_map(|(_, r)| r.strip_prefix(rel))
            .map(|rest| match rest.split_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => rest.to_owned(),
            })
            .collect();
        Ok(keys.into_iter().collect())
    }

    async fn explain(&self, e: VaultError) -> VaultError {
        e
    }

    fn fatal(&self) -> Option<VaultError> {
        None
    }
}

// --- progress --------------------------------------------------------------------

/// Draws nothing.
pub struct Quiet;

impl Reporter for Quiet {
    type Stage = Quiet;

    fn spinner(&self, _: &str) -> Quiet {
        Quiet
    }

    fn bar(&self, _: &str, _: u64) -> Quiet {
        Quiet
    }

    fn growing(&self, _: &str, _: u64) -> Quiet {
        Quiet
    }
}

impl Stage for Quiet {
    fn inc(&self) {}
    fn grow(&self, _: u64) {}
    fn finish(&self) {}
}
