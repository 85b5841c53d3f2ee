//! vault-sync: push Kubernetes Secrets into HashiCorp Vault / OpenBao.
//!
//! # Architecture
//!
//! A functional core and a thin shell:
//!
//! - [`core`]: pure functions over plain data — annotations → spec,
//!   pod template → Secret references, Deployments + Secrets → desired
//!   state, diff(desired, observed) → [`core::plan::Plan`]. No IO, no async.
//! - Adapters, the only code that touches the network: [`k8s`] (API
//!   server), [`vault`] (Vault/OpenBao), [`pushgateway`].
//! - [`engine`]: the shell that feeds adapters' data through the core and
//!   applies the plan.
//! - [`render`]: the only code that writes to stdout (table, JSON, progress).
//! - [`cli`], [`config`], [`telemetry`], [`metrics`], [`shutdown`]: wiring.
//!
//! Invariants:
//! - `run` applies exactly the plan that `plan` prints.
//! - A failure on one Deployment never aborts the others.
//! - A no-op run writes nothing to Vault.
//! - No secret value is ever rendered, logged or pushed: values travel as
//!   [`core::value::SecretValue`], whose `Debug` is redacted.

pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod engine;
pub mod k8s;
pub mod metrics;
pub mod pushgateway;
pub mod render;
pub mod shutdown;
pub mod telemetry;
pub mod vault;

/// An error and its chain of causes on one line: the top-level message of
/// HTTP and client errors is generic ("error sending request"), the causes
/// say what happened (refused, TLS, timeout).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// `vault-sync --version`: the crate version and the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("VAULT_SYNC_GIT_COMMIT"),
    ")"
);
