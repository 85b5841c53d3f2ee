//! The engine's ports: what it asks of Kubernetes, of Vault and of a
//! progress display, as small traits. Each has one production adapter
//! (`k8s` for [`Cluster`], `vault::Vault` for [`SecretStore`],
//! `render::progress::Progress` for [`Reporter`]) and an in-memory fake in
//! the engine's unit tests, so every rule of the shell (conflicts,
//! orphans, batching, the index's check-and-set, content before marker,
//! the delete guard) is proved without a server.
//!
//! The futures are not required to be `Send`: the binary runs the engine on
//! one thread (see `main.rs`), and the traits are used generically, never
//! as trait objects.
#![allow(async_fn_in_trait)]

use std::collections::{BTreeMap, BTreeSet};

use crate::core::desired::SecretFetch;
use crate::core::index::IndexRead;
use crate::core::ownership::PathMetadata;
use crate::core::plan::{Observed, Write};
use crate::core::vault_path::{KvLocation, Mount};
use crate::core::workload::Kind;
use crate::k8s::{KubeError, Listing, WorkloadView};
use crate::vault::VaultError;

/// A workload as the orphan check sees it, read right before judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadState {
    /// The API server answered 404.
    Gone,
    /// It exists; whether it still carries `vault-sync.io/path`.
    Exists { annotated: bool },
}

/// Kubernetes, as the engine reads it.
pub trait Cluster {
    /// The annotated workloads of `kinds` in `namespaces` (all when
    /// empty), each handed to `each` as its page arrives.
    async fn list_workloads(
        &self,
        kinds: &[Kind],
        namespaces: &[String],
        selector: Option<&str>,
        each: &mut impl FnMut(WorkloadView),
    ) -> Listing;
    /// One Secret.
    async fn get_secret(&self, namespace: &str, name: &str) -> SecretFetch;
    /// The Secrets `names` of one namespace, by paged LISTs, each handed
    /// to `each` as its page arrives; a name never handed over does not
    /// exist. (Handed over, not collected: a batch keeps some Secrets for
    /// later batches in a smaller form, and a namespace's worth of them
    /// decoded at once would be the run's peak.)
    async fn list_secrets(
        &self,
        namespace: &str,
        names: &BTreeSet<String>,
        each: &mut impl FnMut(String, SecretFetch),
    ) -> Result<(), KubeError>;
    /// Whether a workload exists now (one GET).
    async fn workload(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<WorkloadState, KubeError>;
}

/// Vault's KV engines, as the engine reads and writes them.
pub trait SecretStore {
    /// The mount holding `path`, from the server's mount table.
    async fn lookup_mount(&self, path: &str) -> Result<Mount, VaultError>;
    /// Content digests, version and ownership of one path.
    async fn read(&self, loc: &KvLocation) -> Result<Observed, VaultError>;
    /// One planned write: content (with check-and-set), then marker.
    async fn write(&self, loc: &KvLocation, write: &Write) -> Result<(), VaultError>;
    /// A KV v2 path's metadata; `None` when it has none.
    async fn read_metadata(&self, loc: &KvLocation) -> Result<Option<PathMetadata>, VaultError>;
    /// Soft delete (KV v2), or every version and the metadata (`destroy`,
    /// and always on KV v1).
    async fn delete(&self, loc: &KvLocation, destroy: bool) -> Result<(), VaultError>;
    /// vault-sync's own record (the index): plain strings, or the metadata
    /// alone when there is no content.
    async fn read_record(&self, loc: &KvLocation) -> Result<IndexRead, VaultError>;
    /// Writes the index with check-and-set, encoded as it is sent.
    async fn write_record(
        &self,
        loc: &KvLocation,
        data: crate::core::index::Encoded<'_>,
        cas: u64,
    ) -> Result<(), VaultError>;
    /// Replaces a KV v2 path's custom_metadata.
    async fn write_metadata(
        &self,
        loc: &KvLocation,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), VaultError>;
    /// The keys of a KV v2 metadata folder (folders end with `/`).
    async fn list(&self, mount: &str, rel: &str) -> Result<Vec<String>, VaultError>;
    /// Adds to an error what the server can say about it (a 403: the
    /// capabilities the token does have there).
    async fn explain(&self, e: VaultError) -> VaultError;
    /// The failure that ends the run for every request, if any.
    fn fatal(&self) -> Option<VaultError>;
}

/// Progress of a run's stages (bars on a terminal, nothing elsewhere).
pub trait Reporter {
    type Stage: Stage;
    /// A stage of unknown length.
    fn spinner(&self, label: &str) -> Self::Stage;
    /// A stage of `len` steps.
    fn bar(&self, label: &str, len: u64) -> Self::Stage;
    /// A stage that grows as work is found, up to `at_most` steps.
    fn growing(&self, label: &str, at_most: u64) -> Self::Stage;
}

/// One stage of a [`Reporter`].
pub trait Stage {
    fn inc(&self);
    fn grow(&self, n: u64);
    fn finish(&self);
}
