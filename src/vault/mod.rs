//! Vault adapter: the only module that talks to Vault.

// An adapter: it owns the Vault HTTP clients. (clippy.toml)
#![allow(clippy::disallowed_types)]

mod auth;
mod client;
mod error;
mod kv;

pub use auth::{AuthMethod, JwtSource};
pub use client::{Vault, VaultConfig};
pub use error::VaultError;

use std::collections::BTreeMap;

use crate::core::index::IndexRead;
use crate::core::ownership::PathMetadata;
use crate::core::plan::{Observed, Write};
use crate::core::vault_path::{KvLocation, Mount};

impl crate::engine::ports::SecretStore for Vault {
    async fn lookup_mount(&self, path: &str) -> Result<Mount, VaultError> {
        Vault::lookup_mount(self, path).await
    }

    async fn read(&self, loc: &KvLocation) -> Result<Observed, VaultError> {
        Vault::read(self, loc).await
    }

    async fn write(&self, loc: &KvLocation, write: &Write) -> Result<(), VaultError> {
        Vault::write(self, loc, write).await
    }

    async fn read_metadata(&self, loc: &KvLocation) -> Result<Option<PathMetadata>, VaultError> {
        Vault::read_metadata(self, loc).await
    }

    async fn delete(&self, loc: &KvLocation, destroy: bool) -> Result<(), VaultError> {
        Vault::delete(self, loc, destroy).await
    }

    async fn read_record(&self, loc: &KvLocation) -> Result<IndexRead, VaultError> {
        Vault::read_record(self, loc).await
    }

    async fn write_record(
        &self,
        loc: &KvLocation,
        data: crate::core::index::Encoded<'_>,
        cas: u64,
    ) -> Result<(), VaultError> {
        // Compressed, a large index is a megabyte or so: made once and
        // held, rather than compressed again for each pass of write_raw,
        // and lent to each pass rather than copied.
        let entries: Vec<(String, String)> = data.entries().collect();
        let pairs = || entries.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Vault::write_raw(self, loc, pairs, cas).await
    }

    async fn write_metadata(
        &self,
        loc: &KvLocation,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        Vault::write_metadata(self, loc, metadata).await
    }

    async fn list(&self, mount: &str, rel: &str) -> Result<Vec<String>, VaultError> {
        Vault::list(self, mount, rel).await
    }

    async fn explain(&self, e: VaultError) -> VaultError {
        Vault::explain(self, e).await
    }

    fn fatal(&self) -> Option<VaultError> {
        Vault::fatal(self)
    }
}
