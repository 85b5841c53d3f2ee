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
//! same owner (KV v1, which has no metadata, is bounded by the cluster's
//! prefix instead). And the index itself is trusted only when its own marker
//! says it is this cluster's index; an index that is not, or that cannot be
//! read whole, stops every creation and deletion of the run and is left as
//! found. A lost index is rebuilt from metadata with
//! `vault-sync prune --rebuild-index --scan <prefix>`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::num::NonZeroU64;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};

use super::error_kind::ErrorKind;
use super::ownership::{Owner, OwnerPool};
use super::vault_path::{KvLocation, KvVersion};

/// One owned path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub owner: Owner,
    pub preserve_on_delete: bool,
    /// The KV v2 version vault-sync's write produces when it puts its
    /// marker on a path that lacked it (a create, a restore, an adoption or
    /// a takeover), recorded before the write. If the marker never lands
    /// (a policy without `metadata/`, a kill between content and marker),
    /// the path is still known as ours while its current version is this
    /// one: nobody has written it since. (KV v2 versions start at 1; the
    /// non-zero type keeps each entry of a large index 8 bytes smaller.)
    pub written: Option<NonZeroU64>,
}

impl IndexEntry {
    pub fn new(owner: Owner, preserve_on_delete: bool) -> Self {
        Self {
            owner,
            preserve_on_delete,
            written: None,
        }
    }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<u64>,
}

/// Marks the chunked format in the stored KV data.
const FORMAT_KEY: &str = "format";
/// Chunks of JSON lines, each zlib-compressed and base64-encoded: the
/// lines repeat their mount, prefixes and owners, and compress about
/// tenfold. A 100,000-path index is then about 1 MB instead of 15, which
/// each batch of a first run rewrites, every run reads, and a Raft
/// storage's `max_entry_size` (1 MiB by default) must hold.
const FORMAT: &str = "vault-sync-index/v2";
/// The same chunks as plain text, as written before: still read, and
/// rewritten as [`FORMAT`] by the next write.
const FORMAT_PLAIN: &str = "vault-sync-index/v1";
/// Largest chunk, in bytes of JSON lines before compression. Servers cap
/// JSON strings (Vault's `max_json_string_value_length` is 1 MiB; a chunk
/// that does not compress grows by a third in base64) and the number of
/// strings per request (OpenBao's `max_request_json_strings`, 1,000 by
/// default), so the index is stored as a few large strings, not one key
/// per path.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Most text one stored chunk may expand to when read. The writer's are at
/// most [`CHUNK_BYTES`] and one entry; anything far larger is not an index
/// chunk (and must not be expanded into memory to find that out).
const MAX_CHUNK_TEXT: u64 = 16 << 20;

/// Encodes the index as the KV data map to store: `format` plus
/// `entries-NNNN` chunks of compressed JSON lines, each from at most
/// [`CHUNK_BYTES`] of text.
pub fn encode(index: &Index) -> BTreeMap<String, String> {
    Encoded(index).entries().collect()
}

/// One chunk's text as it is stored: zlib, then base64.
pub fn pack_chunk(text: &[u8]) -> String {
    let mut z = ZlibEncoder::new(Vec::with_capacity(text.len() / 8), Compression::fast());
    // Into a Vec: writing cannot fail, so neither can finishing.
    let compressed = z
        .write_all(text)
        .and_then(|()| z.finish())
        .unwrap_or_default();
    BASE64.encode(compressed)
}

/// A stored chunk's text; `None` if it is not base64 of zlib data, or
/// expands past [`MAX_CHUNK_TEXT`].
pub fn unpack_chunk(stored: &str) -> Option<String> {
    let compressed = BASE64.decode(stored).ok()?;
    let mut text = String::new();
    ZlibDecoder::new(compressed.as_slice())
        .take(MAX_CHUNK_TEXT + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_CHUNK_TEXT).then_some(text)
}

/// The index as the KV data to store (the map of [`encode`]), made chunk
/// by chunk: a large index's text is never held whole, only its
/// compressed chunks.
#[derive(Clone, Copy)]
pub struct Encoded<'a>(pub &'a Index);

impl<'a> Encoded<'a> {
    /// Each `entries-NNNN` chunk in turn.
    pub fn chunks(self) -> impl Iterator<Item = (String, String)> + 'a {
        let mut entries = self.0.iter();
        // The first line of the next chunk, made while filling this one.
        let mut pending: Option<Vec<u8>> = None;
        let mut n = 0;
        std::iter::from_fn(move || {
            let mut chunk = pending.take().unwrap_or_default();
            for (loc, e) in entries.by_ref() {
                // Each line is written straight into its chunk (a large
                // first run encodes the index once per batch): moved to
                // the next chunk if it overflows.
                let start = chunk.len();
                write_entry_line(&mut chunk, loc, e);
                chunk.push(b'\n');
                if start > 0 && chunk.len() > CHUNK_BYTES {
                    pending = Some(chunk.split_off(start));
                    break;
                }
            }
            if chunk.is_empty() {
                return None;
            }
            let key = format!("entries-{n:04}");
            n += 1;
            Some((key, pack_chunk(&chunk)))
        })
    }

    /// The KV data to store, entry by entry: the chunks, then `format`.
    pub fn entries(self) -> impl Iterator<Item = (String, String)> + 'a {
        self.chunks()
            .chain(std::iter::once((FORMAT_KEY.to_owned(), FORMAT.to_owned())))
    }
}

/// The stored form of one entry as it is written: [`Stored`]'s fields, in
/// its order, borrowed from the entry rather than copied.
#[derive(Serialize)]
struct StoredRef<'a> {
    #[serde(serialize_with = "as_display")]
    path: &'a KvLocation,
    mount: &'a str,
    kv: u8,
    #[serde(serialize_with = "as_display")]
    owner: &'a Owner,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    preserve: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<NonZeroU64>,
}

fn as_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Appends one entry's JSON line (without its newline) to `out`.
fn write_entry_line(out: &mut Vec<u8>, loc: &KvLocation, e: &IndexEntry) {
    let stored = StoredRef {
        path: loc,
        mount: &loc.mount,
        kv: loc.version.as_u8(),
        owner: &e.owner,
        preserve: e.preserve_on_delete,
        written: e.written,
    };
    // Writing to a Vec cannot fail, nor can serializing strings and numbers.
    let _ = serde_json::to_writer(out, &stored);
}

/// `managed-by` value on the index secret itself, so that no Deployment can
/// claim (or `--adopt`) the index path.
pub const INDEX_MANAGER: &str = "vault-sync-index";
/// The cluster whose index this is, in the index's own custom_metadata.
pub const INDEX_CLUSTER_KEY: &str = "vault-sync.io/cluster";

/// The custom_metadata that marks the index of `cluster`.
pub fn marker(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            super::ownership::MANAGED_BY_KEY.to_owned(),
            INDEX_MANAGER.to_owned(),
        ),
        (INDEX_CLUSTER_KEY.to_owned(), cluster.to_owned()),
    ])
}

/// Why an index cannot be used: the run creates and deletes nothing, and
/// leaves the index as it found it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("{location} is not trusted as the vault-sync index of cluster {cluster:?}: {why}")]
    Untrusted {
        location: String,
        cluster: String,
        why: String,
    },
    #[error(
        "{location} is stored in format {format:?}, which this version of vault-sync does not read (it reads {FORMAT_PLAIN:?} and {FORMAT:?}); upgrade vault-sync"
    )]
    UnknownFormat { location: String, format: String },
    #[error("{location} cannot be read whole: malformed entries at {}", .entries.join(", "))]
    Malformed {
        location: String,
        entries: Vec<String>,
    },
    #[error("the current version ({version}) of {location} is deleted")]
    Deleted { location: String, version: u64 },
    #[error(
        "{location} does not exist, but {} already carries this cluster's ownership marker (e.g. {example}): the index was lost, and with it the record of paths to prune",
        plural(*.marked, "path")
    )]
    Lost {
        location: String,
        marked: usize,
        example: String,
    },
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl IndexError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Untrusted { .. } => ErrorKind::IndexUntrusted,
            Self::UnknownFormat { .. } | Self::Malformed { .. } | Self::Deleted { .. } => {
                ErrorKind::IndexUnreadable
            }
            Self::Lost { .. } => ErrorKind::IndexMissing,
        }
    }

    /// JSON `error_type` and metric label.
    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }

    /// What the user does about it.
    pub fn fix(&self, scan_hint: &str) -> String {
        let rebuild = format!(
            "rebuild it from the paths' own ownership markers with `vault-sync prune --rebuild-index --scan {scan_hint} --yes` (one --scan per prefix vault-sync writes under)"
        );
        match self {
            Self::UnknownFormat { .. } => {
                format!("run a vault-sync that reads it, or {rebuild}")
            }
            Self::Deleted { version, .. } => format!(
                "undelete it (`vault kv undelete -versions={version} <path>`), or {rebuild}"
            ),
            _ => rebuild,
        }
    }
}

/// Decodes the entries of `data`; any entry that does not parse is an
/// error, since running on the rest would forget those paths for good.
/// Also reads the first, one-key-per-path format.
pub fn decode(location: &str, data: &BTreeMap<String, String>) -> Result<Index, IndexError> {
    decode_owned(location, data.clone(), &mut OwnerPool::default())
}

/// [`decode`], consuming what was read: each chunk's text is dropped once
/// its entries are parsed, and each chunk's entries are appended to the
/// index in bulk (full tree nodes: inserting sorted keys one by one leaves
/// nodes about half empty), so a 100,000-path index costs a little over
/// its decoded size at its peak, not that plus its text plus slack.
fn decode_owned(
    location: &str,
    data: BTreeMap<String, String>,
    owners: &mut OwnerPool,
) -> Result<Index, IndexError> {
    let mut index = Index::new();
    let mut bad = Vec::new();
    let format = data.get(FORMAT_KEY).cloned();
    match format.as_deref() {
        Some(f @ (FORMAT | FORMAT_PLAIN)) => {
            let packed = f == FORMAT;
            let mut stray = Vec::new();
            for (key, stored) in data {
                if key == FORMAT_KEY {
                    continue;
                }
                if !key.starts_with("entries-") {
                    stray.push(key);
                    continue;
                }
                let chunk = if packed {
                    match unpack_chunk(&stored) {
                        Some(text) => text,
                        None => {
                            bad.push(format!("{key} (not a compressed chunk)"));
                            continue;
                        }
                    }
                } else {
                    stored
                };
                let mut part = Index::new();
                for (n, line) in chunk.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
                    // Each line is parsed once: it names its own path.
                    let decoded = serde_json::from_str::<Stored>(line).ok().and_then(|mut s| {
                        let path = std::mem::take(&mut s.path);
                        stored_entry(&path, s, owners)
                    });
                    match decoded {
                        Some((loc, entry)) => {
                            part.insert(loc, entry);
                        }
                        None => bad.push(format!("{key} line {}", n + 1)),
                    }
                }
                drop(chunk);
                index.append(&mut part);
            }
            bad.extend(stray);
        }
        Some(other) => {
            return Err(IndexError::UnknownFormat {
                location: location.to_owned(),
                format: other.to_owned(),
            });
        }
        None => {
            for (path, value) in &data {
                let decoded = serde_json::from_str::<Stored>(value).ok();
                match decoded.and_then(|s| stored_entry(path, s, owners)) {
                    Some((loc, entry)) => {
                        index.insert(loc, entry);
                    }
                    None => bad.push(path.clone()),
                }
            }
        }
    }
    if bad.is_empty() {
        Ok(index)
    } else {
        Err(IndexError::Malformed {
            location: location.to_owned(),
            entries: bad,
        })
    }
}

/// What one read of the index location found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexRead {
    /// A data version exists (possibly deleted).
    Present {
        version: u64,
        deleted: bool,
        data: BTreeMap<String, String>,
        custom_metadata: BTreeMap<String, String>,
    },
    /// No data version; the metadata, if any (a first write that put its
    /// marker but not yet its content).
    Absent {
        custom_metadata: Option<BTreeMap<String, String>>,
    },
}

/// A usable index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub index: Index,
    /// The check-and-set base (0: no content yet).
    pub version: u64,
    /// The marker names this cluster (false: none yet, or an index written
    /// before the cluster key existed, which is trusted and re-marked).
    pub marked: bool,
}

/// Judges what was read at `location` as the index of `cluster`.
pub fn load(location: &str, cluster: &str, read: IndexRead) -> Result<Loaded, IndexError> {
    load_with(location, cluster, read, &mut OwnerPool::default())
}

/// [`load`], the owners shared with those `owners` has seen (the listed
/// workloads'): the index holds an entry per path for the whole run.
pub fn load_with(
    location: &str,
    cluster: &str,
    read: IndexRead,
    owners: &mut OwnerPool,
) -> Result<Loaded, IndexError> {
    let (version, data, md) = match read {
        IndexRead::Absent {
            custom_metadata: None,
        } => {
            return Ok(Loaded {
                index: Index::new(),
                version: 0,
                marked: false,
            });
        }
        IndexRead::Absent {
            custom_metadata: Some(md),
        } => (0, BTreeMap::new(), md),
        IndexRead::Present {
            version,
            deleted: true,
            ..
        } => {
            return Err(IndexError::Deleted {
                location: location.to_owned(),
                version,
            });
        }
        IndexRead::Present {
            version,
            data,
            custom_metadata,
            ..
        } => (version, data, custom_metadata),
    };
    let untrusted = |why: String| IndexError::Untrusted {
        location: location.to_owned(),
        cluster: cluster.to_owned(),
        why,
    };
    match md.get(super::ownership::MANAGED_BY_KEY).map(String::as_str) {
        Some(INDEX_MANAGER) => {}
        Some(other) => {
            return Err(untrusted(format!(
                "its custom_metadata says managed-by={other:?}, not {INDEX_MANAGER:?}"
            )));
        }
        None => {
            return Err(untrusted(format!(
                "it has no managed-by={INDEX_MANAGER:?} marker in its custom_metadata"
            )));
        }
    }
    let marked = match md.get(INDEX_CLUSTER_KEY) {
        Some(c) if c == cluster => true,
        Some(c) => {
            return Err(untrusted(format!(
                "its marker says it is the index of cluster {c:?}"
            )));
        }
        None => false,
    };
    Ok(Loaded {
        index: decode_owned(location, data, owners)?,
        version,
        marked,
    })
}

/// The entry for `path` that `s` stores (its own `path` field unused),
/// if it is well formed.
fn stored_entry(path: &str, s: Stored, owners: &mut OwnerPool) -> Option<(KvLocation, IndexEntry)> {
    let rel = path.strip_prefix(&s.mount)?;
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
            mount: owners.name(s.mount.into()),
            rel: rel.into(),
            version,
        },
        IndexEntry {
            owner: owners.intern(Owner::parse(&s.owner)?),
            preserve_on_delete: s.preserve,
            // A version 0 names no write (versions start at 1).
            written: s.written.and_then(NonZeroU64::new),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A KV v2 entry kept on delete and a KV v1 one.
    fn two_entries() -> Index {
        let mut index = Index::new();
        index.insert(
            KvLocation {
                mount: "secret/".into(),
                rel: "a/b".into(),
                version: KvVersion::V2,
            },
            IndexEntry::new(Owner::new("c", "ns", "d"), true),
        );
        index.insert(
            KvLocation {
                mount: "kv1/".into(),
                rel: "x".into(),
                version: KvVersion::V1,
            },
            IndexEntry::new(Owner::new("c", "ns", "e"), false),
        );
        index
    }

    #[test]
    fn round_trip() {
        let index = two_entries();
        let encoded = encode(&index);
        assert_eq!(encoded.len(), 2, "format + one chunk: {encoded:?}");
        assert_eq!(decode("idx", &encoded), Ok(index));
    }

    #[test]
    fn an_entry_is_written_as_its_stored_form() {
        let loc = KvLocation {
            mount: "secret/".into(),
            rel: "team \"a\"/app".into(),
            version: KvVersion::V2,
        };
        let mut entry = IndexEntry::new(Owner::new("c", "ns", "d"), true);
        entry.written = NonZeroU64::new(7);
        let mut line = Vec::new();
        write_entry_line(&mut line, &loc, &entry);
        let stored = Stored {
            path: loc.to_string(),
            mount: "secret/".into(),
            kv: 2,
            owner: entry.owner.to_string(),
            preserve: true,
            written: Some(7),
        };
        assert_eq!(
            String::from_utf8(line).unwrap(),
            serde_json::to_string(&stored).unwrap()
        );
    }

    #[test]
    fn large_indexes_are_chunked_below_server_limits() {
        let index: Index = (0..10_000)
            .map(|i| {
                (
                    KvLocation {
                        mount: "secret/".into(),
                        rel: format!("clusters/prod/team-{}/app-{i}/credentials", i % 50).into(),
                        version: KvVersion::V2,
                    },
                    IndexEntry::new(
                        Owner::new("prod", format!("team-{}", i % 50), format!("app-{i}")),
                        i % 7 == 0,
                    ),
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
        // Stored compressed: far less than its text (about 1.2 MB here).
        let text: usize = Encoded(&index)
            .chunks()
            .map(|(_, v)| unpack_chunk(&v).expect("a chunk").len())
            .sum();
        let stored: usize = encoded.values().map(String::len).sum();
        assert!(text > 1_000_000 && stored * 6 < text, "{stored} of {text}");
        assert_eq!(decode("idx", &encoded), Ok(index));
    }

    #[test]
    fn the_plain_chunked_format_is_still_read() {
        let index = two_entries();
        let text = unpack_chunk(&encode(&index)["entries-0000"]).expect("a chunk");
        let plain = BTreeMap::from([
            ("format".to_owned(), FORMAT_PLAIN.to_owned()),
            ("entries-0000".to_owned(), text),
        ]);
        assert_eq!(decode("idx", &plain), Ok(index));
    }

    #[test]
    fn a_chunk_that_expands_too_far_is_not_expanded() {
        let bomb = pack_chunk(&vec![b'\n'; MAX_CHUNK_TEXT as usize + 1]);
        assert!(bomb.len() < CHUNK_BYTES, "{}", bomb.len());
        assert_eq!(unpack_chunk(&bomb), None);
        let mut data = encode(&Index::new());
        data.insert("entries-0000".into(), bomb);
        assert!(matches!(
            decode("idx", &data),
            Err(IndexError::Malformed { ref entries, .. })
                if entries == &["entries-0000 (not a compressed chunk)"]
        ));
    }

    #[test]
    fn the_one_key_per_path_format_is_still_read() {
        let data = BTreeMap::from([(
            "secret/e".to_owned(),
            r#"{"mount":"secret/","kv":2,"owner":"c/n/d"}"#.to_owned(),
        )]);
        assert_eq!(decode("idx", &data).map(|i| i.len()), Ok(1));
    }

    #[test]
    fn any_malformed_entry_makes_the_whole_index_unreadable() {
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
        assert_eq!(
            decode("idx", &data),
            Err(IndexError::Malformed {
                location: "idx".into(),
                entries: vec![
                    "secret/a".into(),
                    "secret/b".into(),
                    "secret/c".into(),
                    "secret/d".into()
                ],
            })
        );
        let mut chunked = encode(&Index::new());
        chunked.insert("entries-0000".into(), pack_chunk(b"not json\n"));
        chunked.insert("entries-0001".into(), "not json\n".into());
        chunked.insert("stray".into(), String::new());
        assert!(matches!(
            decode("idx", &chunked),
            Err(IndexError::Malformed { ref entries, .. }) if entries == &[
                "entries-0000 line 1",
                "entries-0001 (not a compressed chunk)",
                "stray"
            ]
        ));
    }

    #[test]
    fn a_newer_format_is_not_read() {
        let data = BTreeMap::from([("format".to_owned(), "vault-sync-index/v99".to_owned())]);
        assert!(matches!(
            decode("idx", &data),
            Err(IndexError::UnknownFormat { ref format, .. }) if format == "vault-sync-index/v99"
        ));
    }

    fn present(md: BTreeMap<String, String>) -> IndexRead {
        IndexRead::Present {
            version: 3,
            deleted: false,
            data: encode(&Index::new()),
            custom_metadata: md,
        }
    }

    #[test]
    fn only_an_index_marked_for_this_cluster_is_trusted() {
        let ok = load("idx", "prod", present(marker("prod"))).expect("trusted");
        assert!(ok.marked);
        assert_eq!(ok.version, 3);
        // Written before the cluster key existed: trusted, re-marked later.
        let legacy = BTreeMap::from([("managed-by".to_owned(), INDEX_MANAGER.to_owned())]);
        assert!(!load("idx", "prod", present(legacy)).expect("legacy").marked);
        for md in [
            BTreeMap::new(),
            marker("staging"),
            BTreeMap::from([
                ("managed-by".to_owned(), "vault-sync".to_owned()),
                ("vault-sync.io/owner".to_owned(), "prod/ns/d".to_owned()),
            ]),
        ] {
            let e = load("idx", "prod", present(md.clone())).expect_err("untrusted");
            assert_eq!(e.metric_label(), "index_untrusted", "{md:?}");
        }
    }

    #[test]
    fn absent_deleted_and_marker_only_indexes() {
        let none = IndexRead::Absent {
            custom_metadata: None,
        };
        assert_eq!(
            load("idx", "prod", none),
            Ok(Loaded {
                index: Index::new(),
                version: 0,
                marked: false
            })
        );
        let marker_only = IndexRead::Absent {
            custom_metadata: Some(marker("prod")),
        };
        assert!(
            load("idx", "prod", marker_only)
                .expect("first write")
                .marked
        );
        let foreign = IndexRead::Absent {
            custom_metadata: Some(BTreeMap::new()),
        };
        assert!(load("idx", "prod", foreign).is_err());
        let deleted = IndexRead::Present {
            version: 7,
            deleted: true,
            data: BTreeMap::new(),
            custom_metadata: marker("prod"),
        };
        let e = load("idx", "prod", deleted).expect_err("deleted");
        assert_eq!(e.metric_label(), "index_unreadable");
        assert!(e.fix("secret/clusters/prod").contains("-versions=7"));
    }

    #[test]
    fn written_versions_round_trip() {
        let mut entry = IndexEntry::new(Owner::new("c", "ns", "d"), false);
        entry.written = NonZeroU64::new(1);
        let index = Index::from([(
            KvLocation {
                mount: "secret/".into(),
                rel: "a".into(),
                version: KvVersion::V2,
            },
            entry,
        )]);
        assert_eq!(decode("idx", &encode(&index)), Ok(index));
    }
}
