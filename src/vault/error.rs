//! Typed Vault errors, classified from status codes and Vault's error body.
//! Where the status alone does not tell (a 400 or a 503), one function,
//! [`server_says`], reads the server's error text, and names the text it
//! relies on.

use crate::core::error_kind::ErrorKind;

/// A Vault request that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error(
        "cannot reach Vault at {addr}: {message}; check VAULT_ADDR, the network path and TLS settings (VAULT_CACERT)"
    )]
    Connection { addr: String, message: String },
    #[error("Vault login with the {method} auth method failed: {message}")]
    AuthFailed { method: String, message: String },
    #[error("Vault denied {operation} on {path} (403 permission denied): {}", explain_denial(capability, granted.as_deref()))]
    PermissionDenied {
        operation: &'static str,
        path: String,
        capability: &'static str,
        /// What `sys/capabilities-self` says the token has there, if asked.
        granted: Option<String>,
    },
    #[error("{path} is not usable: {message}")]
    InvalidPath { path: String, message: String },
    #[error(
        "{path} changed in Vault while vault-sync was writing it (check-and-set version mismatch); nothing was overwritten, run again to re-plan"
    )]
    CasMismatch { path: String },
    #[error("Vault is sealed (503); unseal it, then run again")]
    Sealed,
    #[error(
        "Vault refused the write of {path} as too large: {message}; the server's request limits (listener settings max_request_json_strings, max_request_size, max_json_string_value_length) are exceeded: split the Secret's keys across paths with vault-sync.io/secrets, or raise the limit"
    )]
    RequestTooLarge { path: String, message: String },
    #[error("Vault answered {status} to {operation} {path}: {message}")]
    Status {
        status: u16,
        operation: &'static str,
        path: String,
        message: String,
    },
    #[error("unexpected answer from Vault for {path}: {message}")]
    Decode { path: String, message: String },
    #[error("Vault configuration: {0}")]
    Config(String),
    #[error("{path} was not written: {reason}")]
    NotAttempted { path: String, reason: String },
    /// `run --plan`: what the saved change was pinned to moved.
    #[error(
        "{path} is stale and was not touched: {reason}; make a new plan, review it, and apply that one"
    )]
    Stale { path: String, reason: String },
}

impl VaultError {
    /// A 403 on `path`, before `Vault::explain` asks what the token has.
    pub(crate) fn denied(operation: &'static str, path: String, capability: &'static str) -> Self {
        Self::PermissionDenied {
            operation,
            path,
            capability,
            granted: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connection { .. } | Self::Sealed => ErrorKind::ConnectionFailed,
            Self::AuthFailed { .. } => ErrorKind::AuthFailed,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::InvalidPath { .. } => ErrorKind::InvalidPath,
            Self::CasMismatch { .. } => ErrorKind::CasMismatch,
            Self::RequestTooLarge { .. } => ErrorKind::RequestTooLarge,
            Self::NotAttempted { .. } => ErrorKind::NotAttempted,
            Self::Stale { .. } => ErrorKind::Stale,
            Self::Status { .. } | Self::Decode { .. } | Self::Config(_) => ErrorKind::Unknown,
        }
    }

    /// Label for `vault_sync_last_run_errors{error_type}` (and, for a write
    /// or delete, `vault_sync_last_run_vault_write_errors`) and the
    /// JSON `error_type` field.
    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }
}

fn explain_denial(capability: &str, granted: Option<&str>) -> String {
    match granted {
        Some(g) => format!(
            "the token's policy grants [{g}] on that path but the operation needs {capability:?}; add it to the policy (see examples/vault-policy.hcl)"
        ),
        None => format!(
            "the token's policy needs the {capability:?} capability on that path, or the token has expired"
        ),
    }
}

/// What a 400 or 503 answer means, where the status does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerSays {
    /// KV v2: "check-and-set parameter did not match the current version".
    CasMismatch,
    /// 503: "Vault is sealed".
    Sealed,
    /// OpenBao and Vault: "refused JSON input due to high complexity:
    /// exceeded maximum number of strings" (and the like, for depth, size
    /// and string length).
    RequestTooLarge,
    Other,
}

/// The one place that reads the server's error text; Vault gives no
/// error codes beyond the HTTP status.
pub(crate) fn server_says(body: &serde_json::Value) -> ServerSays {
    server_says_text(&error_messages(body))
}

/// [`server_says`] for error strings already taken out of the body (the
/// login client hands them over as a list).
pub(crate) fn server_says_text(text: &str) -> ServerSays {
    if text.contains("check-and-set") {
        ServerSays::CasMismatch
    } else if text.contains("sealed") {
        ServerSays::Sealed
    } else if text.contains("refused JSON input") || text.contains("request body too large") {
        ServerSays::RequestTooLarge
    } else {
        ServerSays::Other
    }
}

/// Vault's JSON error body: `{"errors": ["..."]}`.
pub(crate) fn error_messages(body: &serde_json::Value) -> String {
    let msgs: Vec<&str> = body
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|a| a.iter().filter_map(|m| m.as_str()).collect())
        .unwrap_or_default();
    if msgs.is_empty() {
        "no error message".to_owned()
    } else {
        // Vault error strings never echo request bodies, so no secret value
        // can come back through them; keep them short regardless.
        let joined = msgs.join("; ");
        joined.chars().take(500).collect()
    }
}
