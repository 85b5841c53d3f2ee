//! Secrets a namespace's LIST returned for a later batch
//! (`--read-secrets list`).
//!
//! A LIST reads the whole namespace whichever names a batch wants, so a
//! namespace whose workloads span several batches used to be listed once
//! per batch: at 100,000 paths in 20 namespaces, 3.5 times over. The batch
//! that lists a namespace now keeps what the next batches will want of it,
//! up to [`CARRY_BYTES`], and a batch all of whose Secrets in a namespace
//! are carried does not list it. A batch that wants anything not carried
//! lists again and drops the rest, so correctness rests only on "all
//! carried, or listed".
//!
//! A carried Secret is seconds older than one its own batch would have
//! listed: a Secret changed in between is written by the next run, as one
//! changed while a LIST pages through its namespace is.
//!
//! Carried Secrets are held packed, one zeroed-on-drop buffer each, not as
//! the [`SecretFetch`] they are read as: a Secret of three small keys is
//! about a kilobyte as a map of shared values (a full tree node, an
//! allocation per key and two per value), and a large run's peak comes
//! late, while the last namespace's Secrets are carried.

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroizing;

use super::read::Parsed;
use crate::core::desired::{SecretFetch, SecretMeta};
use crate::core::value::{NotUtf8, SecretValue};

/// Most the carried Secrets may hold, as [`Packed::cost`] counts them.
pub(super) const CARRY_BYTES: usize = 2 << 20;
/// Heap per carried Secret beyond its packed bytes: its name, its map
/// entry and the allocations' own headers.
const CARRY_OVERHEAD: usize = 96;

/// Namespace → the Secrets of it that later batches will read.
pub(super) type Later = BTreeMap<String, BTreeSet<String>>;

/// The carried Secrets of a run's batch phase, by namespace and name.
#[derive(Default)]
pub(super) struct Carried {
    by_namespace: BTreeMap<String, BTreeMap<String, Packed>>,
    /// What the carried entries cost, as [`Packed::cost`] counts it.
    bytes: usize,
}

impl Carried {
    /// How many Secrets to ask a LIST for beyond a batch's own, judged by
    /// the last batch's paths and Secret bytes (`None` before the first:
    /// nothing is known of values yet, so nothing is carried).
    pub fn capacity(last: Option<(usize, usize)>) -> usize {
        match last {
            None => 0,
            Some((paths, bytes)) => {
                CARRY_BYTES / (bytes.div_ceil(paths.max(1)) + PACKED_FIELDS + CARRY_OVERHEAD)
            }
        }
    }

    /// `names` of `namespace`, if every one is carried; otherwise the
    /// namespace is listed again and what was carried of it is dropped.
    pub fn take(
        &mut self,
        namespace: &str,
        names: &BTreeSet<String>,
    ) -> Option<BTreeMap<String, SecretFetch>> {
        let carried = self.by_namespace.get_mut(namespace)?;
        if !names.iter().all(|n| carried.contains_key(n)) {
            self.forget(namespace);
            return None;
        }
        let mut taken = BTreeMap::new();
        for name in names {
            if let Some((name, packed)) = carried.remove_entry(name) {
                self.bytes -= packed.cost(&name);
                taken.insert(name, packed.unpack());
            }
        }
        if carried.is_empty() {
            self.by_namespace.remove(namespace);
        }
        Some(taken)
    }

    fn forget(&mut self, namespace: &str) {
        if let Some(dropped) = self.by_namespace.remove(namespace) {
            self.bytes -= dropped.iter().map(|(n, p)| p.cost(n)).sum::<usize>();
        }
    }

    /// Keeps one listed Secret for a later batch, unless that would pass
    /// [`CARRY_BYTES`] (then that batch lists its namespace again).
    pub fn keep(&mut self, namespace: &str, name: String, packed: Packed) {
        let cost = packed.cost(&name);
        if self.bytes + cost > CARRY_BYTES {
            return;
        }
        self.bytes += cost;
        self.by_namespace
            .entry(namespace.to_owned())
            .or_default()
            .insert(name, packed);
    }

    /// How many Secrets are carried.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_namespace.values().map(BTreeMap::len).sum()
    }
}

/// The Secrets that workloads after this batch will read from the
/// namespaces it reads, at most `capacity` names, nearest first: `parsed`
/// is sorted by namespace and batches follow that order, so the nearest
/// are the next batch's. `members` are this batch's, sorted; workloads of
/// earlier batches are released.
pub(super) fn later_secrets(parsed: &[Parsed], members: &[usize], capacity: usize) -> Later {
    let mut later = Later::new();
    let mut left = capacity;
    let namespaces: BTreeSet<&str> = members.iter().map(|&i| parsed[i].namespace()).collect();
    for ns in namespaces {
        let start = parsed.partition_point(|p| p.namespace() < ns);
        let in_namespace = parsed[start..]
            .iter()
            .enumerate()
            .take_while(|(_, p)| p.namespace() == ns)
            .filter(|(at, _)| members.binary_search(&(start + at)).is_err());
        for (_, p) in in_namespace {
            if left == 0 {
                return later;
            }
            for name in p.secrets() {
                if left > 0 && later.entry(ns.to_owned()).or_default().insert(name) {
                    left -= 1;
                }
            }
        }
    }
    later
}

/// One carried Secret in one buffer, zeroed when dropped: a tag (absent,
/// found, found with uid and resourceVersion), then those two, then each
/// key with its value or a mark that it is not UTF-8. Each field is its
/// length (4 bytes, little-endian) and its bytes.
pub(super) struct Packed(Zeroizing<Vec<u8>>);

const NOT_FOUND: u8 = 0;
const FOUND: u8 = 1;
const FOUND_WITH_META: u8 = 2;
const VALUE: u8 = 0;
const NOT_UTF8: u8 = 1;
/// Packed bytes beyond a small Secret's keys and values: tag, meta and
/// three keys' lengths and marks.
const PACKED_FIELDS: usize = 1 + 2 * 4 + 48 + 3 * 9;

impl Packed {
    /// A Secret as read, packed; `None` for a failed read, which is not
    /// carried (its batch reads it again).
    pub fn pack(fetch: SecretFetch) -> Option<Self> {
        let mut out = Zeroizing::new(Vec::new());
        match &fetch {
            SecretFetch::NotFound => out.push(NOT_FOUND),
            SecretFetch::Failed { .. } => return None,
            SecretFetch::Found(data, meta) => {
                let size = 1
                    + meta
                        .as_ref()
                        .map_or(0, |m| 8 + m.uid.len() + m.resource_version.len())
                    + data
                        .iter()
                        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, SecretValue::len))
                        .sum::<usize>();
                out.reserve_exact(size);
                match meta {
                    None => out.push(FOUND),
                    Some(m) => {
                        out.push(FOUND_WITH_META);
                        field(&mut out, m.uid.as_bytes());
                        field(&mut out, m.resource_version.as_bytes());
                    }
                }
                for (key, value) in data {
                    field(&mut out, key.as_bytes());
                    match value {
                        Ok(v) => {
                            out.push(VALUE);
                            field(&mut out, v.expose().as_bytes());
                        }
                        Err(NotUtf8) => out.push(NOT_UTF8),
                    }
                }
            }
        }
        Some(Self(out))
    }

    /// A Secret that does not exist.
    pub fn not_found() -> Self {
        Self(Zeroizing::new(vec![NOT_FOUND]))
    }

    fn cost(&self, name: &str) -> usize {
        self.0.len() + name.len() + CARRY_OVERHEAD
    }

    /// The Secret as it was read. The buffer is written only by
    /// [`Packed::pack`], so it always reads back; were it not to, the
    /// Secret reads as failed rather than as anything else.
    fn unpack(&self) -> SecretFetch {
        self.try_unpack().unwrap_or_else(|| SecretFetch::Failed {
            kind: crate::core::error_kind::ErrorKind::Unknown,
            message: "a carried Secret did not read back".into(),
        })
    }

    fn try_unpack(&self) -> Option<SecretFetch> {
        let mut rest: &[u8] = &self.0;
        let tag = take_u8(&mut rest)?;
        let meta = match tag {
            NOT_FOUND => return Some(SecretFetch::NotFound),
            FOUND => None,
            FOUND_WITH_META => Some(SecretMeta {
                uid: take_str(&mut rest)?,
                resource_version: take_str(&mut rest)?,
            }),
            _ => return None,
        };
        let mut data = BTreeMap::new();
        while !rest.is_empty() {
            let key = take_str(&mut rest)?;
            let value = match take_u8(&mut rest)? {
                VALUE => Ok(SecretValue::new(take_str(&mut rest)?)),
                NOT_UTF8 => Err(NotUtf8),
                _ => return None,
            };
            data.insert(key, value);
        }
        Some(SecretFetch::Found(data, meta))
    }
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // A Secret is at most 1 MiB: its lengths fit in 4 bytes.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_u8(rest: &mut &[u8]) -> Option<u8> {
    let (&first, tail) = rest.split_first()?;
    *rest = tail;
    Some(first)
}

fn take_str(rest: &mut &[u8]) -> Option<String> {
    let len = rest.get(..4)?.try_into().ok().map(u32::from_le_bytes)? as usize;
    let bytes = rest.get(4..4 + len)?;
    *rest = &rest[4 + len..];
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::{CARRY_BYTES, Carried, Packed};
    use crate::core::desired::{SecretFetch, SecretMeta};

    fn secret(bytes: usize) -> SecretFetch {
        SecretFetch::found(BTreeMap::from([("k".to_owned(), vec![b'x'; bytes])]))
    }

    fn packed(fetch: SecretFetch) -> Packed {
        Packed::pack(fetch).expect("a read that did not fail")
    }

    fn names(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    /// What a fetch holds, values included (tests only).
    fn shown(fetch: &SecretFetch) -> String {
        match fetch {
            SecretFetch::Found(data, meta) => {
                let data: Vec<_> = data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.expose().to_owned())))
                    .collect();
                format!("found {data:?} {meta:?}")
            }
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_carried_secret_reads_back_as_it_was_read() {
        let found = SecretFetch::found(BTreeMap::from([
            ("password".to_owned(), b"s3cr3t".to_vec()),
            ("empty".to_owned(), Vec::new()),
            ("binary".to_owned(), vec![0xff, 0xfe]),
        ]));
        let with_meta = found.clone().with_meta(Some(SecretMeta {
            uid: "8c1f-uid".into(),
            resource_version: "4711".into(),
        }));
        let empty = SecretFetch::found(BTreeMap::new());
        for fetch in [found, with_meta, empty, SecretFetch::NotFound] {
            let packed = Packed::pack(fetch.clone()).expect("packed");
            assert_eq!(shown(&packed.unpack()), shown(&fetch));
        }
        let failed = SecretFetch::Failed {
            kind: crate::core::error_kind::ErrorKind::Unknown,
            message: "forbidden".into(),
        };
        assert!(
            Packed::pack(failed).is_none(),
            "a failed read is read again"
        );
    }

    #[test]
    fn carried_secrets_stay_within_their_budget() {
        let mut carried = Carried::default();
        for name in ["a", "b", "c", "d"] {
            carried.keep("ns", name.into(), packed(secret(CARRY_BYTES / 3)));
        }
        // A third of the budget each plus their overhead: two fit, not three.
        assert_eq!(carried.len(), 2);
        assert!(carried.bytes <= CARRY_BYTES);
        let taken = carried.take("ns", &names(&["a"])).expect("carried");
        assert_eq!(taken.len(), 1);
        assert_eq!(carried.len(), 1);
        // Room again for one more.
        carried.keep("ns", "d".into(), packed(secret(CARRY_BYTES / 3)));
        assert_eq!(carried.len(), 2);
    }

    #[test]
    fn a_batch_not_wholly_carried_lists_again_and_drops_the_rest() {
        let mut carried = Carried::default();
        carried.keep("ns", "a".into(), Packed::not_found());
        carried.keep("ns", "b".into(), packed(secret(10)));
        carried.keep("other", "c".into(), packed(secret(10)));
        assert!(carried.take("ns", &names(&["a", "z"])).is_none());
        assert_eq!(carried.len(), 1, "only the other namespace's stays");
        assert!(carried.take("ns", &names(&["b"])).is_none());
        let taken = carried.take("other", &names(&["c"])).expect("carried");
        assert!(matches!(taken.get("c"), Some(SecretFetch::Found(..))));
        assert_eq!((carried.len(), carried.bytes), (0, 0));
    }

    #[test]
    fn nothing_is_carried_before_value_sizes_are_known() {
        assert_eq!(Carried::capacity(None), 0);
        let small = Carried::capacity(Some((2_000, 2_000 * 100)));
        let large = Carried::capacity(Some((10, 10 << 20)));
        assert!(small > 5_000, "{small}");
        assert_eq!(large, 1);
    }
}
