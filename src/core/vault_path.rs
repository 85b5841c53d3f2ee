//! Vault paths: validating what users write, and resolving it against the
//! server's mount table into a [`KvLocation`].
//!
//! The operator this tool replaces guessed the KV version from the string
//! prefix `secret/data/`; here the mount and its version always come from the
//! server (`sys/internal/ui/mounts/<path>`), and both `secret/data/app` and
//! `secret/app` spell the same KV v2 secret.

use super::name::Name;
use std::fmt;

/// Longest path accepted; far beyond any sane layout, small enough to keep
/// errors and URLs readable.
pub const MAX_PATH_LEN: usize = 512;

/// Characters refused in paths: URL syntax (`?`, `#`, `%` would make the
/// request address something other than the path shown in the plan), Vault
/// policy globs (`*`, `+`), and quoting characters.
pub const RESERVED_CHARS: &str = "?#%*+\\\"'<>[]{}|^`";

/// The folder, inside every KV mount, where vault-sync keeps its index of
/// owned paths (`<mount>vault-sync/index/<cluster>`). Reserved in every
/// mount, not only the `--index-mount` of this run: a path written there by
/// one run could pose as another run's index.
pub const INDEX_FOLDER: &str = "vault-sync/index";

/// Top-level Vault paths that are never secrets engines.
const RESERVED_PREFIXES: &[&str] = &["sys", "auth", "identity", "cubbyhole"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the Vault path is empty; set it to a path such as \"secret/my-app\"")]
    Empty,
    #[error("the Vault path {0:?} is longer than {MAX_PATH_LEN} characters")]
    TooLong(String),
    #[error(
        "the Vault path {0:?} starts or ends with '/'; write it without, e.g. \"secret/my-app\""
    )]
    EdgeSlash(String),
    #[error("the Vault path {0:?} has an empty segment (\"//\")")]
    EmptySegment(String),
    #[error("the Vault path {0:?} has a \".\" or \"..\" segment; Vault paths are not relative")]
    DotSegment(String),
    #[error(
        "the Vault path {0:?} contains whitespace, a control character, or one of {RESERVED_CHARS}; use letters, digits, '-', '_', '.' and '/'"
    )]
    BadCharacter(String),
    #[error(
        "the Vault path {path:?} is under {prefix}/, which is Vault's own API, not a KV secrets engine"
    )]
    Reserved { path: String, prefix: &'static str },
    #[error(
        "the Vault path {path:?} is under mount {mount:?}, which is a {engine:?} engine, not KV; point the annotation at a KV mount"
    )]
    NotKv {
        path: String,
        mount: String,
        engine: String,
    },
    #[error(
        "the Vault path {path:?} names the mount {mount:?} itself; add a secret name after it, e.g. \"{mount}my-app\""
    )]
    MountRoot { path: String, mount: String },
    #[error(
        "the Vault path {path:?} is under {mount}{INDEX_FOLDER}/, which is reserved for vault-sync's own index of owned paths; choose another path"
    )]
    ReservedIndex { path: String, mount: String },
}

/// Whether a path inside a mount lies in the reserved [`INDEX_FOLDER`].
pub fn is_index_path(rel: &str) -> bool {
    rel.strip_prefix(INDEX_FOLDER)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Checks a path as written in an annotation. Returns it trimmed of
/// surrounding whitespace (YAML block scalars add a trailing newline).
pub fn validate(raw: &str) -> Result<String, PathError> {
    let path = raw.trim();
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    let owned = || path.to_owned();
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong(path.chars().take(64).collect()));
    }
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || RESERVED_CHARS.contains(c))
    {
        return Err(PathError::BadCharacter(owned()));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(PathError::EdgeSlash(owned()));
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment(owned())),
            "." | ".." => return Err(PathError::DotSegment(owned())),
            _ => {}
        }
    }
    if let Some(first) = path.split('/').next()
        && let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| **p == first)
    {
        return Err(PathError::Reserved {
            path: owned(),
            prefix,
        });
    }
    Ok(path.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KvVersion {
    V1,
    V2,
}

impl KvVersion {
    pub fn as_u8(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// One entry of the server's mount table, as `sys/internal/ui/mounts` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// With trailing slash, e.g. `secret/`.
    pub path: Name,
    /// Engine type, e.g. `kv`.
    pub engine: String,
    /// KV version; `None` for other engines.
    pub kv_version: Option<KvVersion>,
}

impl Mount {
    pub fn contains(&self, path: &str) -> bool {
        path.starts_with(self.path.as_str()) || format!("{path}/") == self.path.as_str()
    }
}

/// Mounts learnt so far in a run. Vault refuses to mount inside another
/// mount, so a known mount that prefixes a path is *the* mount of that path:
/// one lookup per mount, not per path.
#[derive(Debug, Default, Clone)]
pub struct MountTable {
    mounts: Vec<Mount>,
}

impl MountTable {
    pub fn insert(&mut self, mount: Mount) {
        if !self.mounts.iter().any(|m| m.path == mount.path) {
            self.mounts.push(mount);
        }
    }

    /// The mount holding `path`, longest prefix first.
    pub fn find(&self, path: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| m.contains(path))
            .max_by_key(|m| m.path.len())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter()
    }
}

/// Where a secret lives: the mount, its KV version and the path inside it.
/// Ordering and equality are by physical location, so `secret/data/app` and
/// `secret/app` on a KV v2 mount are the same location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KvLocation {
    /// With trailing slash, e.g. `secret/`; shared by every location of
    /// the mount.
    pub mount: Name,
    /// Path inside the mount, without leading slash.
    pub rel: Name,
    pub version: KvVersion,
}

impl KvLocation {
    /// A 128-bit digest of the location, the same throughout a run: two
    /// SipHash digests with fixed, different keys (std's `DefaultHasher`
    /// is keyed with zeros; the second is salted). Where a run only needs
    /// to tell locations apart, 16 bytes instead of a copy of the path.
    pub fn fingerprint(&self) -> u128 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut a = DefaultHasher::new();
        self.hash(&mut a);
        let mut b = DefaultHasher::new();
        0x5eed_u16.hash(&mut b);
        self.hash(&mut b);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }

    /// The API path for reading and writing content.
    pub fn data_path(&self) -> String {
        match self.version {
            KvVersion::V1 => format!("{}{}", self.mount, self.rel),
            KvVersion::V2 => format!("{}data/{}", self.mount, self.rel),
        }
    }

    /// The KV v2 metadata path (ownership lives here).
    pub fn metadata_path(&self) -> String {
        format!("{}metadata/{}", self.mount, self.rel)
    }
}

impl fmt::Display for KvLocation {
    /// The canonical spelling, as `vault kv get` takes it: `secret/app`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.mount, self.rel)
    }
}

/// Where the index of `cluster` lives in `mount` (a KV v2 mount): the one
/// location [`locate`] never yields for an annotation.
pub fn index_location(mount: &Mount, cluster: &str) -> KvLocation {
    KvLocation {
        mount: mount.path.clone(),
        rel: format!("{INDEX_FOLDER}/{cluster}").into(),
        version: KvVersion::V2,
    }
}

/// Resolves a validated path against its mount.
///
/// With a cluster name, the secret goes to `<mount>clusters/<cluster>/<rest>`:
/// the prefix is placed inside the mount, so the mount lookup is unaffected.
pub fn locate(path: &str, mount: &Mount, cluster: Option<&str>) -> Result<KvLocation, PathError> {
    let Some(version) = mount.kv_version else {
        return Err(PathError::NotKv {
            path: path.to_owned(),
            mount: mount.path.to_string(),
            engine: mount.engine.clone(),
        });
    };
    let mut rel = path.strip_prefix(mount.path.as_str()).unwrap_or("");
    if version == KvVersion::V2
        && let Some(stripped) = rel.strip_prefix("data/")
    {
        rel = stripped;
    }
    if rel.is_empty() || (version == KvVersion::V2 && rel == "data") {
        return Err(PathError::MountRoot {
            path: path.to_owned(),
            mount: mount.path.to_string(),
        });
    }
    let rel = match cluster {
        Some(cluster) => format!("clusters/{cluster}/{rel}"),
        None => rel.to_owned(),
    };
    if is_index_path(&rel) {
        return Err(PathError::ReservedIndex {
            path: path.to_owned(),
            mount: mount.path.to_string(),
        });
    }
    Ok(KvLocation {
        mount: mount.path.clone(),
        rel: rel.into(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&PathError) -> bool;

    fn kv2() -> Mount {
        Mount {
            path: "secret/".into(),
            engine: "kv".into(),
            kv_version: Some(KvVersion::V2),
        }
    }

    #[test]
    fn validate_accepts_and_trims() {
        assert_eq!(validate(" secret/app\n"), Ok("secret/app".into()));
        assert_eq!(
            validate("secret/data/a/b-c_d.e"),
            Ok("secret/data/a/b-c_d.e".into())
        );
    }

    #[test]
    fn validate_rejects() {
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, PathError::Empty)),
            ("   ", |e| matches!(e, PathError::Empty)),
            ("/secret/app", |e| matches!(e, PathError::EdgeSlash(_))),
            ("secret/app/", |e| matches!(e, PathError::EdgeSlash(_))),
            ("secret//app", |e| matches!(e, PathError::EmptySegment(_))),
            ("secret/../sys", |e| matches!(e, PathError::DotSegment(_))),
            ("secret/./app", |e| matches!(e, PathError::DotSegment(_))),
            ("secret/a b", |e| matches!(e, PathError::BadCharacter(_))),
            ("secret/x?y=1", |e| matches!(e, PathError::BadCharacter(_))),
            ("secret/x#f", |e| matches!(e, PathError::BadCharacter(_))),
            ("secret/a/%2e%2e/b", |e| {
                matches!(e, PathError::BadCharacter(_))
            }),
            ("secret/a%2Fb", |e| matches!(e, PathError::BadCharacter(_))),
            ("secret/app/*", |e| matches!(e, PathError::BadCharacter(_))),
            ("secret/a\u{0}b", |e| {
                matches!(e, PathError::BadCharacter(_))
            }),
            ("secret/a\u{1b}[31m", |e| {
                matches!(e, PathError::BadCharacter(_))
            }),
            ("sys/policies/acl/x", |e| {
                matches!(e, PathError::Reserved { prefix: "sys", .. })
            }),
            ("auth/token/create", |e| {
                matches!(e, PathError::Reserved { prefix: "auth", .. })
            }),
        ];
        for (raw, check) in cases {
            let e = validate(raw).expect_err(raw);
            assert!(check(&e), "{raw:?}: {e:?}");
        }
        assert!(matches!(
            validate(&"a/".repeat(400)),
            Err(PathError::TooLong(_))
        ));
    }

    #[test]
    fn both_spellings_locate_the_same_kv2_secret() {
        let a = locate("secret/data/app", &kv2(), None).unwrap();
        let b = locate("secret/app", &kv2(), None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.data_path(), "secret/data/app");
        assert_eq!(a.metadata_path(), "secret/metadata/app");
        assert_eq!(a.to_string(), "secret/app");
    }

    #[test]
    fn cluster_prefix_goes_inside_the_mount() {
        let loc = locate("secret/data/app", &kv2(), Some("prod")).unwrap();
        assert_eq!(loc.data_path(), "secret/data/clusters/prod/app");
    }

    #[test]
    fn the_index_folder_is_reserved_in_every_mount_and_spelling() {
        let kv1 = Mount {
            path: "kv1/".into(),
            engine: "kv".into(),
            kv_version: Some(KvVersion::V1),
        };
        for (raw, mount) in [
            ("secret/vault-sync/index/prod", kv2()),
            ("secret/data/vault-sync/index/prod", kv2()),
            ("secret/vault-sync/index", kv2()),
            ("kv1/vault-sync/index/x/y", kv1.clone()),
        ] {
            assert!(
                matches!(
                    locate(raw, &mount, None),
                    Err(PathError::ReservedIndex { .. })
                ),
                "{raw}"
            );
        }
        // Neighbours stay usable, and a cluster prefix moves paths away
        // from the folder.
        assert!(locate("secret/vault-sync/indexes", &kv2(), None).is_ok());
        assert!(locate("secret/vault-sync/app", &kv2(), None).is_ok());
        assert!(locate("secret/vault-sync/index/x", &kv2(), Some("prod")).is_ok());
    }

    #[test]
    fn kv1_paths_are_used_verbatim() {
        let m = Mount {
            path: "kv1/".into(),
            engine: "kv".into(),
            kv_version: Some(KvVersion::V1),
        };
        let loc = locate("kv1/data/app", &m, None).unwrap();
        assert_eq!(loc.data_path(), "kv1/data/app");
    }

    #[test]
    fn mount_root_and_non_kv_are_errors() {
        assert!(matches!(
            locate("secret", &kv2(), None),
            Err(PathError::MountRoot { .. })
        ));
        assert!(matches!(
            locate("secret/data", &kv2(), None),
            Err(PathError::MountRoot { .. })
        ));
        let pki = Mount {
            path: "pki/".into(),
            engine: "pki".into(),
            kv_version: None,
        };
        assert!(matches!(
            locate("pki/app", &pki, None),
            Err(PathError::NotKv { .. })
        ));
    }

    #[test]
    fn longest_mount_wins() {
        let mut table = MountTable::default();
        table.insert(kv2());
        table.insert(Mount {
            path: "secret-team/".into(),
            engine: "kv".into(),
            kv_version: Some(KvVersion::V1),
        });
        table.insert(Mount {
            path: "a/b/".into(),
            engine: "kv".into(),
            kv_version: Some(KvVersion::V2),
        });
        table.insert(Mount {
            path: "a/".into(),
            engine: "kv".into(),
            kv_version: Some(KvVersion::V2),
        });
        assert_eq!(table.find("secret-team/x").unwrap().path, "secret-team/");
        assert_eq!(table.find("secret/x").unwrap().path, "secret/");
        assert_eq!(table.find("a/b/c").unwrap().path, "a/b/");
        assert!(table.find("other/x").is_none());
        assert_eq!(table.find("secret").unwrap().path, "secret/");
    }
}
