//! Vault adapter: the only module that talks to Vault.

mod auth;
mod client;
mod error;
mod kv;

pub use auth::{AuthMethod, JwtSource};
pub use client::{Vault, VaultConfig};
pub use error::VaultError;
