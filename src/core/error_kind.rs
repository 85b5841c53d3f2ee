//! What went wrong, as one closed set from the adapters to the output.
//!
//! Every error vault-sync reports, on a path, a Deployment or the whole
//! run, has one [`ErrorKind`]: the JSON `error_type`, the metrics'
//! `error_type` label and the log field are its [`ErrorKind::label`], so
//! they cannot drift apart, and [`ErrorKind::ALL`] is the set a dashboard
//! can rely on. Adapters map their errors to a kind from what the server
//! says (status codes first); no kind is ever compared as a string.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    // An annotation.
    InvalidPath,
    InvalidSecretsJson,
    InvalidSecretsEntry,
    InvalidPreserveOnDelete,
    InvalidReconcile,
    // A Secret.
    SecretNotFound,
    SecretKeyMissing,
    BinaryValue,
    // The Kubernetes API.
    Forbidden,
    NotFound,
    Unreachable,
    // Vault.
    PermissionDenied,
    ConnectionFailed,
    AuthFailed,
    CasMismatch,
    RequestTooLarge,
    NotAttempted,
    /// A path rule (`--allow-path`) does not let the workload's namespace
    /// write there.
    OutsideAllowedPaths,
    /// A saved plan's change whose Secret or Vault path moved since the plan.
    Stale,
    // vault-sync's index.
    IndexUntrusted,
    IndexUnreadable,
    IndexMissing,
    // The run.
    Interrupted,
    Config,
    /// An answer vault-sync has no better name for (the message says it).
    Unknown,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: [Self; 25] = [
        Self::AuthFailed,
        Self::BinaryValue,
        Self::CasMismatch,
        Self::Config,
        Self::ConnectionFailed,
        Self::Forbidden,
        Self::IndexMissing,
        Self::IndexUnreadable,
        Self::IndexUntrusted,
        Self::Interrupted,
        Self::InvalidPath,
        Self::InvalidPreserveOnDelete,
        Self::InvalidReconcile,
        Self::InvalidSecretsEntry,
        Self::InvalidSecretsJson,
        Self::NotAttempted,
        Self::NotFound,
        Self::OutsideAllowedPaths,
        Self::PermissionDenied,
        Self::RequestTooLarge,
        Self::SecretKeyMissing,
        Self::SecretNotFound,
        Self::Stale,
        Self::Unknown,
        Self::Unreachable,
    ];

    /// The stable `error_type` of JSON output, metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidPath => "invalid_path",
            Self::InvalidSecretsJson => "invalid_secrets_json",
            Self::InvalidSecretsEntry => "invalid_secrets_entry",
            Self::InvalidPreserveOnDelete => "invalid_preserve_on_delete",
            Self::InvalidReconcile => "invalid_reconcile",
            Self::SecretNotFound => "secret_not_found",
            Self::SecretKeyMissing => "secret_key_missing",
            Self::BinaryValue => "binary_value",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Unreachable => "unreachable",
            Self::PermissionDenied => "permission_denied",
            Self::ConnectionFailed => "connection_failed",
            Self::AuthFailed => "auth_failed",
            Self::CasMismatch => "cas_mismatch",
            Self::RequestTooLarge => "request_too_large",
            Self::NotAttempted => "not_attempted",
            Self::OutsideAllowedPaths => "outside_allowed_paths",
            Self::Stale => "stale",
            Self::IndexUntrusted => "index_untrusted",
            Self::IndexUnreadable => "index_unreadable",
            Self::IndexMissing => "index_missing",
            Self::Interrupted => "interrupted",
            Self::Config => "config",
            Self::Unknown => "unknown",
        }
    }

    /// What to do about it, in a few words: `-o json` carries it as `fix`
    /// beside every `error_type`. Each error's message says what applies to
    /// its own case; this is the general remedy.
    pub fn fix(self) -> &'static str {
        match self {
            Self::InvalidPath
            | Self::InvalidSecretsJson
            | Self::InvalidSecretsEntry
            | Self::InvalidPreserveOnDelete
            | Self::InvalidReconcile => "correct the workload's vault-sync.io/ annotations",
            Self::SecretNotFound => "create the Secret, or stop referencing it",
            Self::SecretKeyMissing => {
                "add the key to the Secret, or drop it from vault-sync.io/secrets"
            }
            Self::BinaryValue => "store the value as UTF-8 text (e.g. base64 it yourself)",
            Self::Forbidden => {
                "grant vault-sync's ServiceAccount the RBAC of cronjob/rbac.yaml (or the chart's)"
            }
            Self::NotFound => "check the name and namespace",
            Self::Unreachable | Self::ConnectionFailed => {
                "check the address and the network path; the next run retries"
            }
            Self::PermissionDenied => {
                "add the capability to the Vault policy (examples/vault-policy.hcl)"
            }
            Self::AuthFailed => {
                "check the token, or the auth role, mount and ServiceAccount binding"
            }
            Self::CasMismatch => "another writer changed the path; the next run re-plans",
            Self::RequestTooLarge => {
                "split the Secret's keys across paths, or raise the server's request limits"
            }
            Self::NotAttempted => "see the error that stopped it; the next run retries",
            Self::OutsideAllowedPaths => {
                "point the annotation under the namespace's allowed prefix, or change the --allow-path rules"
            }
            Self::Stale => "make a new plan, review it, and apply that one",
            Self::IndexUntrusted | Self::IndexUnreadable | Self::IndexMissing => {
                "rebuild it: vault-sync prune --rebuild-index --scan <prefix> --yes (README, Ownership)"
            }
            Self::Interrupted => {
                "give the run more time (activeDeadlineSeconds); the next run continues"
            }
            Self::Config => "correct the flags or environment",
            Self::Unknown => "read the message; Vault's or the API server's own words are in it",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive: a new variant does not compile until it is placed here,
    /// and the test then fails until it is in [`ErrorKind::ALL`] too.
    fn position(kind: ErrorKind) -> usize {
        use ErrorKind::*;
        match kind {
            AuthFailed => 0,
            BinaryValue => 1,
            CasMismatch => 2,
            Config => 3,
            ConnectionFailed => 4,
            Forbidden => 5,
            IndexMissing => 6,
            IndexUnreadable => 7,
            IndexUntrusted => 8,
            Interrupted => 9,
            InvalidPath => 10,
            InvalidPreserveOnDelete => 11,
            InvalidReconcile => 12,
            InvalidSecretsEntry => 13,
            InvalidSecretsJson => 14,
            NotAttempted => 15,
            NotFound => 16,
            OutsideAllowedPaths => 17,
            PermissionDenied => 18,
            RequestTooLarge => 19,
            SecretKeyMissing => 20,
            SecretNotFound => 21,
            Stale => 22,
            Unknown => 23,
            Unreachable => 24,
        }
    }

    #[test]
    fn all_lists_every_kind_once_in_label_order() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(position(*kind), i, "{kind}");
            assert!(!kind.fix().is_empty(), "{kind} has no fix");
        }
        let labels: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(labels, sorted);
    }
}
