//! The one reader of Vault's file audit log, the suite's witness of what
//! vault-sync really sent: the shared OpenBao's log ([`AuditLog::shared`])
//! or a private server's ([`AuditLog::at`]). Take a [`AuditMark`] before
//! the run under test; [`AuditMark::entries`] are the entries written since.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::STACK;

/// The operations that change something.
pub const WRITE_OPS: &[&str] = &["create", "update", "patch", "delete"];

/// A file audit log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

/// A position in an audit log; entries after it are "new".
#[derive(Debug, Clone)]
pub struct AuditMark {
    log: AuditLog,
    offset: u64,
}

/// One audit-log entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// "request" or "response".
    pub kind: String,
    pub operation: String,
    pub path: String,
    /// Top-level `error` (response entries of failed requests).
    pub error: String,
    /// The token's display name (`token-<display_name>` for created tokens).
    pub client: String,
}

/// Entries of an audit log, in the order written.
pub struct AuditEntries(pub Vec<AuditEntry>);

/// A mark at the shared OpenBao's audit log's current end.
pub fn audit_mark() -> AuditMark {
    let log = AuditLog::shared();
    assert!(log.path.is_file(), "no audit log at {}", log.path.display());
    log.mark()
}

impl AuditLog {
    /// The shared OpenBao's (`VAULT_AUDIT_LOG`).
    pub fn shared() -> Self {
        Self::at(Path::new(STACK.audit_log()))
    }

    /// The file audit log at `path` (it may not exist yet).
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// Its current end (the start if there is no file yet).
    pub fn mark(&self) -> AuditMark {
        let offset = match std::fs::metadata(&self.path) {
            Ok(md) => md.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("audit log {}: {e}", self.path.display()),
        };
        AuditMark {
            log: self.clone(),
            offset,
        }
    }

    /// Every complete entry from its start.
    pub fn entries(&self) -> AuditEntries {
        AuditMark {
            log: self.clone(),
            offset: 0,
        }
        .entries()
    }
}

impl AuditMark {
    /// Every complete entry written since the mark, as the JSON the audit
    /// device wrote (request bodies included, strings HMAC'd). A line cut
    /// short (a concurrent write, or a server killed mid-line) is skipped.
    pub fn raw_entries(&self) -> Vec<Value> {
        let mut file = match std::fs::File::open(&self.log.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("audit log {}: {e}", self.log.path.display()),
        };
        file.seek(SeekFrom::Start(self.offset)).expect("seek");
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).expect("read audit log");
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes[..end]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .collect()
    }

    /// Every complete entry written since the mark.
    pub fn entries(&self) -> AuditEntries {
        let entries = self
            .raw_entries()
            .into_iter()
            .map(|v| AuditEntry {
                kind: v["type"].as_str().unwrap_or_default().to_owned(),
                operation: v["request"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                path: v["request"]["path"].as_str().unwrap_or_default().to_owned(),
                error: v["error"].as_str().unwrap_or_default().to_owned(),
                client: v["auth"]["display_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect();
        AuditEntries(entries)
    }
}

/// The deletes among `writes` (operation, API path), in order.
pub fn only_deletes(writes: Vec<(String, String)>) -> Vec<(String, String)> {
    writes
        .into_iter()
        .filter(|(op, _)| op == "delete")
        .collect()
}

impl AuditEntries {
    /// Request entries whose path contains `needle`.
    pub fn requests<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = &'a AuditEntry> + 'a {
        self.0
            .iter()
            .filter(move |e| e.kind == "request" && e.path.contains(needle))
    }

    /// Requests with one of `ops` on paths containing `needle`, as
    /// (operation, API path), in order.
    pub fn requests_of(&self, ops: &[&str], needle: &str) -> Vec<(String, String)> {
        self.requests(needle)
            .filter(|e| ops.contains(&e.operation.as_str()))
            .map(|e| (e.operation.clone(), e.path.clone()))
            .collect()
    }

    /// Request counts by operation for paths containing `needle`.
    pub fn ops(&self, needle: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in self.requests(needle) {
            *out.entry(e.operation.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Write requests (create/update/patch/delete) on paths containing `needle`.
    pub fn writes(&self, needle: &str) -> Vec<(String, String)> {
        self.requests_of(WRITE_OPS, needle)
    }

    /// Write requests made with the token whose display name is `client`,
    /// on any path.
    pub fn writes_by(&self, client: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|e| {
                e.kind == "request"
                    && e.client == client
                    && WRITE_OPS.contains(&e.operation.as_str())
            })
            .map(|e| (e.operation.clone(), e.path.clone()))
            .collect()
    }

    /// Request entries made with the token whose display name is `client`.
    pub fn requests_by(&self, client: &str) -> usize {
        self.0
            .iter()
            .filter(|e| e.kind == "request" && e.client == client)
            .count()
    }

    /// Failed writes: response entries of create/update/patch requests on
    /// paths containing `needle` that carry an error. (OpenBao logs a
    /// check-and-set refusal as "invalid request"; the detail is HMAC'd.)
    pub fn failed_writes(&self, needle: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|e| {
                e.kind == "response"
                    && e.path.contains(needle)
                    && ["create", "update", "patch"].contains(&e.operation.as_str())
                    && !e.error.is_empty()
            })
            .map(|e| (e.operation.clone(), e.path.clone()))
            .collect()
    }
}
