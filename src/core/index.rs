//! The index of owned paths: vault-sync's record of what it wrote, kept in
//! Vault itself (one KV v2 secret per `--cluster-name`, written with
//! check-and-set).
//!
//! Why an index: orphans are paths whose Deployment, annotation or Secret
//! reference is gone, so nothing in Kubernetes points at them any more.
//! Finding them by walking the mount would cost a request per secret in the
//! mount, unrelated data included. The index costs one read per run.
//!
//! The index is a hint, never the authority: before anything is deleted, the
//! path's own `custom_metadata` must name this cluster's vault-sync and the
//! same owner. A lost index is rebuilt from metadata with
//! `vault-sync prune --rebuild-index --scan <prefix>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ownership::Owner;
use super::vault_path::{KvLocation, KvVersion};

/// One owned path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub owner: Owner,
    pub preserve_on_delete: bool,
}

/// Location → entry.
pub type Index = BTreeMap<KvLocation, IndexEntry>;

/// The stored form of one entry.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    path: String,
    mount: String,
    kv: u8,
    owner: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    preserve: bool,
}

/// Marks the chunked format in the stored KV data.
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "vault-sync-index/v1";
/// Largest chunk, in bytes. Servers cap JSON strings (Vault's
/// `max_json_string_value_length` is 1 MiB) and the number of strings per
/// request (OpenBao's `max_request_json_strings`, 1,000 by default), so the
/// index is stored as a few large JSON-lines strings, not one key per path.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Encodes the index as the KV data map to store: `format` plus
/// `entries-NNNN` chunks of JSON lines, each at most [`CHUNK_BYTES`].
pub fn encode(index: &Index) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(FORMAT_KEY.to_owned(), FORMAT.to_owned())]);
    let mut chunk = String::new();
    let flush = |chunk: &mut String, out: &mut BTreeMap<String, String>| {
        if !chunk.is_empty() {
            let key = format!("entries-{:04}", out.len() - 1);
            out.insert(key, std::mem::take(chunk));
        }
    };
    for (loc, e) in index {
        let stored = Stored {
            path: loc.to_string(),
            mount: loc.mount.clone(),
            kv: loc.version.as_u8(),
            owner: e.owner.to_string(),
            preserve: e.preserve_on_delete,
        };
        let line = serde_json::to_string(&stored).unwrap_or_default();
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > CHUNK_BYTES {
            flush(&mut chunk, &mut out);
        }
        chunk.push_str(&line);
        chunk.push('\n');
    }
    flush(&mut chunk, &mut out);
    out
}

/// Decodes a stored index. Entries that do not parse are skipped and
/// returned (by path, or by line), so a tampered index cannot stop a run.
/// Also reads the first, one-key-per-path format.
pub fn decode(data: &BTreeMap<String, String>) -> (Index, Vec<String>) {
    let mut index = Index::new();
    let mut bad = Vec::new();
    let mut add = |label: &str, path: &str, value: &str| match parse_entry(path, value) {
        Some((loc, entry)) => {
            index.insert(loc, entry);
        }
        None => bad.push(label.to_owned()),
    };
    if data.get(FORMAT_KEY).map(String::as_str) == Some(FORMAT) {
        for (key, chunk) in data.iter().filter(|(k, _)| k.starts_with("entries-")) {
            for (n, line) in chunk.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
                let path = serde_json::from_str::<Stored>(line)
                    .map(|s| s.path)
                    .unwrap_or_default();
                add(&format!("{key} line {}", n + 1), &path, line);
            }
        }
    } else {
        for (path, value) in data {
            add(path, path, value);
        }
    }
    (index, bad)
}

fn parse_entry(path: &str, value: &str) -> Option<(KvLocation, IndexEntry)> {
    let s = serde_json::from_str::<Stored>(value).ok()?;
    let rel = path.strip_prefix(&s.mount)?.to_owned();
    let version = match s.kv {
        1 => KvVersion::V1,
        2 => KvVersion::V2,
        _ => return None,
    };
    if rel.is_empty() || !s.mount.ends_with('/') {
        return None;
    }
    Some((
        KvLocation {
            mount: s.mount,
            rel,
            version,
        },
        IndexEntry {
            owner: Owner::parse(&s.owner)?,
            preserve_on_delete: s.preserve,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut index = Index::new();
        index.insert(
            KvLocation {
                mount: "secret/".into(),
                rel: "a/b".into(),
                version: KvVersion::V2,
            },
            IndexEntry {
                owner: Owner::new("c", "ns", "d"),
                preserve_on_delete: true,
            },
        );
        index.insert(
            KvLocation {
                mount: "kv1/".into(),
                rel: "x".into(),
                version: KvVersion::V1,
            },
            IndexEntry {
                owner: Owner::new("c", "ns", "e"),
                preserve_on_delete: false,
            },
        );
        let encoded = encode(&index);
        assert_eq!(encoded.len(), 2, "format + one chunk: {encoded:?}");
        let (decoded, bad) = decode(&encoded);
        assert!(bad.is_empty());
        assert_eq!(decoded, index);
    }

    #[test]
    fn large_indexes_are_chunked_below_server_limits() {
        let index: Index = (0..10_000)
            .map(|i| {
                (
                    KvLocation {
                        mount: "secret/".into(),
                        rel: format!("clusters/prod/team-{}/app-{i}/credentials", i % 50),
                        version: KvVersion::V2,
                    },
                    IndexEntry {
                        owner: Owner::new("prod", format!("team-{}", i % 50), format!("app-{i}")),
                        preserve_on_delete: i % 7 == 0,
                    },
                )
            })
            .collect();
        let encoded = encode(&index);
        assert!(encoded.len() > 2, "several chunks");
        assert!(
            encoded.len() * 2 < 1000,
            "far below OpenBao's 1,000 JSON strings"
        );
        assert!(encoded.values().all(|v| v.len() <= CHUNK_BYTES));
        let (decoded, bad) = decode(&encoded);
        assert!(bad.is_empty());
        assert_eq!(decoded, index);
    }

    #[test]
    fn the_one_key_per_path_format_is_still_read() {
        let data = BTreeMap::from([(
            "secret/e".to_owned(),
            r#"{"mount":"secret/","kv":2,"owner":"c/n/d"}"#.to_owned(),
        )]);
        assert_eq!(decode(&data).0.len(), 1);
    }

    #[test]
    fn garbage_entries_are_skipped_and_reported() {
        let data = BTreeMap::from([
            ("secret/a".to_owned(), "not json".to_owned()),
            (
                "secret/b".to_owned(),
                r#"{"mount":"other/","kv":2,"owner":"c/n/d"}"#.to_owned(),
            ),
            (
                "secret/c".to_owned(),
                r#"{"mount":"secret/","kv":3,"owner":"c/n/d"}"#.to_owned(),
            ),
            (
                "secret/d".to_owned(),
                r#"{"mount":"secret/","kv":2,"owner":"bad"}"#.to_owned(),
            ),
            (
                "secret/e".to_owned(),
                r#"{"mount":"secret/","kv":2,"owner":"c/n/d"}"#.to_owned(),
            ),
        ]);
        let (index, bad) = decode(&data);
        assert_eq!(index.len(), 1);
        assert_eq!(bad, ["secret/a", "secret/b", "secret/c", "secret/d"]);
    }
}
