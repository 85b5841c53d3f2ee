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

/// The stored form of one entry (a JSON string value in the KV secret, keyed
/// by the display path).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    mount: String,
    kv: u8,
    owner: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    preserve: bool,
}

/// Encodes the index as the KV data map to store.
pub fn encode(index: &Index) -> BTreeMap<String, String> {
    index
        .iter()
        .map(|(loc, e)| {
            let stored = Stored {
                mount: loc.mount.clone(),
                kv: loc.version.as_u8(),
                owner: e.owner.to_string(),
                preserve: e.preserve_on_delete,
            };
            (
                loc.to_string(),
                serde_json::to_string(&stored).unwrap_or_default(),
            )
        })
        .collect()
}

/// Decodes a stored index. Entries that do not parse are skipped and
/// returned by display path, so a tampered index cannot stop a run.
pub fn decode(data: &BTreeMap<String, String>) -> (Index, Vec<String>) {
    let mut index = Index::new();
    let mut bad = Vec::new();
    for (path, value) in data {
        let parsed = serde_json::from_str::<Stored>(value).ok().and_then(|s| {
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
        });
        match parsed {
            Some((loc, entry)) => {
                index.insert(loc, entry);
            }
            None => bad.push(path.clone()),
        }
    }
    (index, bad)
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
        assert!(encoded.contains_key("secret/a/b"));
        let (decoded, bad) = decode(&encoded);
        assert!(bad.is_empty());
        assert_eq!(decoded, index);
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
