//! Orphans: paths this cluster's vault-sync wrote that nothing wants any more.
//!
//! Candidates come from the index ([`super::index`]); each is then judged
//! with what the API server says about its owner *now* and what the path's
//! own metadata says *now*. Anything uncertain is kept.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::ops::ControlFlow::{self, Break, Continue};

use super::error_kind::ErrorKind;
use super::index::{Index, IndexEntry};
use super::ownership::{self, Owner, Ownership, PathMetadata};
use super::path_rules::PathRules;
use super::plan::Action;
use super::vault_path::{self, KvLocation, KvVersion};
use super::workload::Kind;

/// Which owners a run may judge.
#[derive(Debug, Clone)]
pub struct OrphanScope<'a> {
    pub cluster: &'a str,
    /// `-n`: only owners in these namespaces (empty: all).
    pub namespaces: &'a [String],
    /// `--cluster-name` given: every path this cluster writes is under
    /// `clusters/<name>/` in its mount.
    pub prefix: Option<&'a str>,
    /// The kinds listed in full this run: an owner of another kind may
    /// still want its paths.
    pub kinds: &'a [Kind],
    /// `--allow-path`: a path outside its former namespace's rules is
    /// reported, never deleted because a rule changed.
    pub rules: &'a PathRules,
}

/// Whether this cluster can have written `loc`: a named cluster only under
/// its own `clusters/<name>/`; the unnamed cluster never in the reserved
/// index folder, and, on KV v1 (no metadata to confirm ownership), never
/// under `clusters/`, where named clusters write. Deletion is bounded by
/// this whatever the index says.
pub fn within_reach(loc: &KvLocation, prefix: Option<&str>) -> bool {
    if vault_path::is_index_path(&loc.rel) {
        return false;
    }
    match prefix {
        Some(name) => loc
            .rel
            .strip_prefix("clusters/")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('/')),
        None => loc.version == KvVersion::V2 || !loc.rel.starts_with("clusters/"),
    }
}

/// The locations some workload wants this run, as orphan detection needs
/// them: only "is this index entry wanted?" is ever asked.
pub trait Wanted {
    fn wants(&self, loc: &KvLocation) -> bool;
}

impl Wanted for BTreeSet<KvLocation> {
    fn wants(&self, loc: &KvLocation) -> bool {
        self.contains(loc)
    }
}

/// The wanted locations of a run as 128-bit fingerprints: 16 bytes a path
/// instead of a copy of each path (about 150 bytes with the set's nodes),
/// so a run over 100,000 paths does not hold every path twice. A
/// fingerprint collision (odds about n² / 2¹²⁹) can only make an orphan
/// look wanted, so it is kept: never a wrong deletion.
#[derive(Debug, Default, Clone)]
pub struct WantedPaths(Vec<u128>);

impl WantedPaths {
    /// Room for `n` locations: a run knows how many paths it may want, and
    /// a list grown by doubling leaves its earlier copies behind.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn insert(&mut self, loc: &KvLocation) {
        self.0.push(loc.fingerprint());
    }

    /// The locations, sorted to be looked up: only the sealed set answers
    /// [`Wanted::wants`], so no lookup can see an unsorted list.
    pub fn seal(self) -> SealedWantedPaths {
        let mut all = self.0;
        all.sort_unstable();
        all.dedup();
        SealedWantedPaths(all)
    }
}

/// [`WantedPaths`], sorted: 16 bytes a location, not a hash set's 17 plus
/// its slack.
#[derive(Debug, Default, Clone)]
pub struct SealedWantedPaths(Vec<u128>);

impl SealedWantedPaths {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Wanted for SealedWantedPaths {
    fn wants(&self, loc: &KvLocation) -> bool {
        self.0.binary_search(&loc.fingerprint()).is_ok()
    }
}

/// Index entries that may be orphans: this cluster's, in scope, not desired
/// by this run, and whose owner is not held (failed or reconcile off).
pub fn candidates(
    index: &Index,
    desired: &impl Wanted,
    held: &BTreeSet<Owner>,
    scope: &OrphanScope<'_>,
) -> Vec<(KvLocation, IndexEntry)> {
    index
        .iter()
        .filter(|(loc, e)| {
            e.owner.cluster == scope.cluster
                && scope.kinds.contains(&e.owner.kind)
                && (scope.namespaces.is_empty()
                    || scope.namespaces.iter().any(|n| e.owner.namespace == *n))
                && !desired.wants(loc)
                && !held.contains(&e.owner)
        })
        .map(|(l, e)| (l.clone(), e.clone()))
        .collect()
}

/// What the API server says about a candidate's owner, fetched right before
/// judging (one GET per owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerState {
    /// 404: the Deployment is gone.
    Gone,
    /// Exists but no longer carries `vault-sync.io/path`.
    NotAnnotated,
    /// Exists, annotated, and was part of this run's listing: its desired
    /// paths are known, and this one is not among them.
    Listed,
    /// Exists and annotated, but outside this run's scope (e.g. no longer
    /// matching `-l`): it may still want the path. Not judged.
    OutOfScope,
    /// The GET failed.
    Unknown(String),
}

/// What the path's own metadata says, read right before judging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    /// No such path (any more).
    Missing,
    /// KV v2 metadata.
    Metadata(PathMetadata),
    /// KV v1: exists, but has no metadata to check.
    NoMetadata,
    /// The read failed.
    Unknown(String),
}

/// The verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the plan shows (None: nothing to show).
    pub action: Option<Action>,
    /// Drop the entry from the index after this run.
    pub forget: bool,
}

pub fn judge(
    loc: &KvLocation,
    entry: &IndexEntry,
    owner: &OwnerState,
    path: &PathState,
    scope: &OrphanScope<'_>,
    destroy: bool,
) -> Verdict {
    match judge_steps(loc, entry, owner, path, scope, destroy) {
        Continue(verdict) | Break(verdict) => verdict,
    }
}

/// [`judge`]'s rules in order; each step either lets the path through to
/// the next or stops with its verdict (`Break`).
fn judge_steps(
    loc: &KvLocation,
    entry: &IndexEntry,
    owner: &OwnerState,
    path: &PathState,
    scope: &OrphanScope<'_>,
    destroy: bool,
) -> ControlFlow<Verdict, Verdict> {
    within_this_clusters_reach(loc, scope)?;
    let why_orphan = why_orphan(loc, entry, owner)?;
    if let Err(reason) = scope
        .rules
        .allows(&entry.owner.namespace, loc, scope.prefix)
    {
        return Break(Verdict {
            action: Some(Action::Refused {
                reason: format!(
                    "{reason}; an orphan there is not deleted while the rules exclude it (kept in the index)"
                )
                .into(),
                kind: Some(ErrorKind::OutsideAllowedPaths),
            }),
            forget: false,
        });
    }
    let Marked {
        preserve,
        unmarked_version,
    } = still_ours(loc, entry, path)?;
    if preserve {
        return Continue(Verdict {
            action: Some(Action::Keep {
                reason: format!(
                    "{why_orphan}; preserve-on-delete is set, so it stays in Vault (dropped from the index)"
                )
                .into(),
            }),
            forget: true,
        });
    }
    let hard = loc.version == KvVersion::V1;
    let how = match (hard, destroy) {
        (true, _) => "hard delete: KV v1 keeps no versions, this cannot be undone",
        (false, true) => "--destroy: all versions and metadata removed",
        (false, false) => "soft delete of the current version; undo with `vault kv undelete`",
    };
    Continue(Verdict {
        action: Some(Action::Delete {
            reason: format!("{why_orphan} ({how})").into(),
            destroy: destroy || hard,
            unmarked_version,
        }),
        forget: true,
    })
}

/// An index entry outside what this cluster can have written is never
/// deleted (a forged or foreign entry), only dropped.
fn within_this_clusters_reach(
    loc: &KvLocation,
    scope: &OrphanScope<'_>,
) -> ControlFlow<Verdict, ()> {
    if within_reach(loc, scope.prefix) {
        return Continue(());
    }
    let reach = match scope.prefix {
        Some(name) => format!("clusters/{name}/ in its mount"),
        None => format!(
            "the unnamed cluster writes neither in {}/ nor, on KV v1, under clusters/",
            vault_path::INDEX_FOLDER
        ),
    };
    Break(refused(format!(
        "the index lists it, but it is outside what this cluster can have written ({reach}); not deleted, dropped from the index"
    )))
}

/// Why the path is an orphan, from its owner's state; an owner out of
/// scope or not known to be gone stops here.
fn why_orphan(
    loc: &KvLocation,
    entry: &IndexEntry,
    owner: &OwnerState,
) -> ControlFlow<Verdict, String> {
    match owner {
        OwnerState::Gone => Continue(format!("{} no longer exists", entry.owner.describe())),
        OwnerState::NotAnnotated => Continue(format!(
            "{} no longer has vault-sync.io/path",
            entry.owner.describe()
        )),
        OwnerState::Listed => Continue(format!(
            "{} no longer wants this path",
            entry.owner.describe()
        )),
        OwnerState::OutOfScope => Break(Verdict {
            action: None,
            forget: false,
        }),
        OwnerState::Unknown(e) => Break(Verdict {
            action: Some(Action::error(
                ErrorKind::Unreachable,
                format!(
                    "cannot confirm that {} is gone, so {loc} is kept: {e}",
                    entry.owner.describe()
                ),
                None,
            )),
            forget: false,
        }),
    }
}

/// What the path's own metadata says, read just before deleting.
struct Marked {
    /// preserve-on-delete, from the marker or the index.
    preserve: bool,
    /// Our write whose marker never landed, untouched since: its version.
    unmarked_version: Option<NonZeroU64>,
}

/// The path still exists and is still the index entry owner's, by its
/// marker (or, unmarked, by the version our write produced).
fn still_ours(
    loc: &KvLocation,
    entry: &IndexEntry,
    path: &PathState,
) -> ControlFlow<Verdict, Marked> {
    let marked = |preserve| Marked {
        preserve,
        unmarked_version: None,
    };
    match path {
        PathState::Missing
        | PathState::Metadata(PathMetadata {
            current_deleted: true,
            ..
        }) => Break(Verdict {
            action: None,
            forget: true,
        }),
        PathState::Unknown(e) => Break(Verdict {
            action: Some(Action::error(
                ErrorKind::Unknown,
                format!("cannot read the metadata of {loc}, so it is kept: {e}"),
                None,
            )),
            forget: false,
        }),
        PathState::NoMetadata => Continue(marked(entry.preserve_on_delete)),
        PathState::Metadata(md) => match ownership::read(&md.custom_metadata) {
            Ownership::VaultSync {
                owner: marked_owner,
                preserve_on_delete,
            } if marked_owner == entry.owner => {
                Continue(marked(preserve_on_delete || entry.preserve_on_delete))
            }
            Ownership::VaultSync {
                owner: marked_owner,
                ..
            } => Break(refused(format!(
                "the index says {} owns it, but its metadata names {marked_owner}; not deleted, dropped from the index",
                entry.owner
            ))),
            Ownership::OtherManager(manager) => Break(refused(format!(
                "the index lists it, but it is managed by {manager:?} (custom_metadata managed-by); not deleted, dropped from the index"
            ))),
            // Our write whose marker never landed, untouched since.
            Ownership::Unowned
                if entry.written.map(NonZeroU64::get) == Some(md.current_version) =>
            {
                Continue(Marked {
                    preserve: entry.preserve_on_delete,
                    unmarked_version: entry.written,
                })
            }
            Ownership::Unowned if entry.written.is_some() => Break(refused(format!(
                "vault-sync wrote version {} without its ownership marker, and the path is now at version {}: someone else wrote it since; not deleted, dropped from the index",
                entry.written.map_or(0, NonZeroU64::get),
                md.current_version
            ))),
            Ownership::Unowned | Ownership::Malformed => Break(refused(
                "the index lists it, but its metadata has no vault-sync owner marker; not deleted, dropped from the index"
                    .into(),
            )),
        },
    }
}

fn refused(reason: String) -> Verdict {
    Verdict {
        action: Some(Action::Refused {
            reason: reason.into(),
            kind: None,
        }),
        forget: true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn wanted_paths_want_exactly_what_was_inserted() {
        let mut wanted = WantedPaths::default();
        for i in (0..1000).rev() {
            wanted.insert(&loc(&format!("app/{i}")));
        }
        // A location wanted twice is one location.
        wanted.insert(&loc("app/7"));
        let wanted = wanted.seal();
        assert_eq!(wanted.len(), 1000);
        assert!((0..1000).all(|i| wanted.wants(&loc(&format!("app/{i}")))));
        assert!(!(1000..2000).any(|i| wanted.wants(&loc(&format!("app/{i}")))));
        // Same path on another KV version is another location.
        let v1 = KvLocation {
            version: KvVersion::V1,
            ..loc("app/1")
        };
        assert!(!wanted.wants(&v1));
    }

    static NO_RULES: PathRules = PathRules::new(Vec::new());

    fn loc(rel: &str) -> KvLocation {
        KvLocation {
            mount: "secret/".into(),
            rel: rel.into(),
            version: KvVersion::V2,
        }
    }

    fn entry(ns: &str, d: &str) -> IndexEntry {
        IndexEntry::new(Owner::new("prod", ns, d), false)
    }

    fn metadata(custom_metadata: BTreeMap<String, String>) -> PathState {
        PathState::Metadata(PathMetadata {
            custom_metadata,
            current_version: 1,
            current_deleted: false,
        })
    }

    fn marked(ns: &str, d: &str, preserve: bool) -> PathState {
        metadata(ownership::stamp(
            &BTreeMap::new(),
            &Owner::new("prod", ns, d),
            preserve,
        ))
    }

    /// [`super::judge`] for the unnamed cluster, all namespaces.
    fn judge(
        loc: &KvLocation,
        entry: &IndexEntry,
        owner: &OwnerState,
        path: &PathState,
        destroy: bool,
    ) -> Verdict {
        let scope = OrphanScope {
            cluster: "prod",
            namespaces: &[],
            prefix: None,
            kinds: &Kind::ALL,
            rules: &NO_RULES,
        };
        super::judge(loc, entry, owner, path, &scope, destroy)
    }

    #[test]
    fn candidates_respect_cluster_scope_desire_and_holds() {
        let mut index = Index::new();
        index.insert(loc("a"), entry("shop", "api"));
        index.insert(loc("b"), entry("shop", "web"));
        index.insert(loc("c"), entry("other", "x"));
        index.insert(
            loc("d"),
            IndexEntry::new(Owner::new("staging", "shop", "api"), false),
        );
        index.insert(loc("e"), entry("shop", "held"));
        let desired = BTreeSet::from([loc("b")]);
        let held = BTreeSet::from([Owner::new("prod", "shop", "held")]);
        let namespaces = vec!["shop".to_owned()];
        let scope = OrphanScope {
            cluster: "prod",
            namespaces: &namespaces,
            prefix: None,
            kinds: &Kind::ALL,
            rules: &NO_RULES,
        };
        let c: Vec<_> = candidates(&index, &desired, &held, &scope)
            .into_iter()
            .map(|(l, _)| l.rel)
            .collect();
        assert_eq!(c, ["a"]);
        let all = OrphanScope {
            cluster: "prod",
            namespaces: &[],
            prefix: None,
            kinds: &Kind::ALL,
            rules: &NO_RULES,
        };
        let c: Vec<_> = candidates(&index, &desired, &held, &all)
            .into_iter()
            .map(|(l, _)| l.rel)
            .collect();
        assert_eq!(c, ["a", "c"]);
    }

    #[test]
    fn deleted_deployment_soft_deletes_its_path() {
        let v = judge(
            &loc("a"),
            &entry("shop", "api"),
            &OwnerState::Gone,
            &marked("shop", "api", false),
            false,
        );
        assert!(
            matches!(v.action, Some(Action::Delete { destroy: false, ref reason, .. }) if reason.contains("undelete"))
        );
        assert!(v.forget);
        let v = judge(
            &loc("a"),
            &entry("shop", "api"),
            &OwnerState::Listed,
            &marked("shop", "api", false),
            true,
        );
        assert!(matches!(
            v.action,
            Some(Action::Delete { destroy: true, .. })
        ));
    }

    #[test]
    fn preserve_on_delete_keeps_the_path_and_forgets_it() {
        let v = judge(
            &loc("a"),
            &entry("shop", "api"),
            &OwnerState::Gone,
            &marked("shop", "api", true),
            false,
        );
        assert!(matches!(v.action, Some(Action::Keep { .. })));
        assert!(v.forget);
    }

    #[test]
    fn foreign_or_missing_marker_is_never_deleted() {
        for path in [
            metadata(BTreeMap::new()),
            marked("shop", "someone-else", false),
            metadata(BTreeMap::from([(
                "managed-by".into(),
                "external-secrets".into(),
            )])),
        ] {
            let v = judge(
                &loc("a"),
                &entry("shop", "api"),
                &OwnerState::Gone,
                &path,
                false,
            );
            assert!(matches!(v.action, Some(Action::Refused { .. })), "{path:?}");
        }
    }

    #[test]
    fn uncertainty_keeps_everything() {
        let e = entry("shop", "api");
        let v = judge(
            &loc("a"),
            &e,
            &OwnerState::OutOfScope,
            &marked("shop", "api", false),
            false,
        );
        assert_eq!(
            v,
            Verdict {
                action: None,
                forget: false
            }
        );
        let v = judge(
            &loc("a"),
            &e,
            &OwnerState::Unknown("timeout".into()),
            &marked("shop", "api", false),
            false,
        );
        assert!(matches!(v.action, Some(Action::Error { .. })) && !v.forget);
        let v = judge(
            &loc("a"),
            &e,
            &OwnerState::Gone,
            &PathState::Unknown("403".into()),
            false,
        );
        assert!(matches!(v.action, Some(Action::Error { .. })) && !v.forget);
    }

    #[test]
    fn vanished_path_is_just_forgotten() {
        let v = judge(
            &loc("a"),
            &entry("shop", "api"),
            &OwnerState::Gone,
            &PathState::Missing,
            false,
        );
        assert_eq!(
            v,
            Verdict {
                action: None,
                forget: true
            }
        );
    }

    #[test]
    fn kv1_orphans_are_hard_deleted_and_say_so() {
        let mut l = loc("a");
        l.version = KvVersion::V1;
        let v = judge(
            &l,
            &entry("shop", "api"),
            &OwnerState::NotAnnotated,
            &PathState::NoMetadata,
            false,
        );
        assert!(
            matches!(v.action, Some(Action::Delete { destroy: true, ref reason, .. }) if reason.contains("KV v1"))
        );
    }

    #[test]
    fn deletion_is_bounded_by_what_the_cluster_can_have_written() {
        let kv1 = |rel: &str| KvLocation {
            mount: "kv1/".into(),
            rel: rel.into(),
            version: KvVersion::V1,
        };
        assert!(within_reach(&kv1("clusters/prod/app"), Some("prod")));
        assert!(!within_reach(&kv1("app"), Some("prod")));
        assert!(!within_reach(&kv1("clusters/prod-eu/app"), Some("prod")));
        assert!(!within_reach(&loc("clusters/staging/app"), Some("prod")));
        assert!(within_reach(&kv1("app"), None));
        assert!(!within_reach(&kv1("clusters/prod/app"), None));
        assert!(within_reach(&loc("clusters/x/app"), None));
        assert!(!within_reach(&loc("vault-sync/index/prod"), None));

        let scope = OrphanScope {
            cluster: "prod",
            namespaces: &[],
            prefix: Some("prod"),
            kinds: &Kind::ALL,
            rules: &NO_RULES,
        };
        let v = super::judge(
            &kv1("victim"),
            &entry("shop", "api"),
            &OwnerState::Gone,
            &PathState::NoMetadata,
            &scope,
            false,
        );
        assert!(
            matches!(v.action, Some(Action::Refused { ref reason, .. }) if reason.contains("outside")),
            "{v:?}"
        );
        assert!(v.forget);
    }

    #[test]
    fn an_unmarked_write_of_ours_is_deleted_only_while_untouched() {
        let mut e = entry("shop", "api");
        e.written = NonZeroU64::new(1);
        let unmarked = |version| {
            PathState::Metadata(PathMetadata {
                custom_metadata: BTreeMap::new(),
                current_version: version,
                current_deleted: false,
            })
        };
        let v = judge(&loc("a"), &e, &OwnerState::Gone, &unmarked(1), false);
        assert!(
            matches!(
                v.action,
                Some(Action::Delete {
                    unmarked_version: Some(v),
                    ..
                }) if v.get() == 1
            ),
            "{v:?}"
        );
        let v = judge(&loc("a"), &e, &OwnerState::Gone, &unmarked(2), false);
        assert!(
            matches!(v.action, Some(Action::Refused { ref reason, .. }) if reason.contains("someone else")),
            "{v:?}"
        );
    }

    #[test]
    fn another_tools_path_is_refused_by_name() {
        let v = judge(
            &loc("a"),
            &entry("shop", "api"),
            &OwnerState::Gone,
            &metadata(BTreeMap::from([(
                "managed-by".into(),
                "external-secrets".into(),
            )])),
            false,
        );
        assert!(
            matches!(v.action, Some(Action::Refused { ref reason, .. }) if reason.contains("\"external-secrets\"")),
            "{v:?}"
        );
    }

    #[test]
    fn an_already_deleted_current_version_is_forgotten_not_deleted_again() {
        let v = judge(
            &loc("a"),
            &entry("shop", "api"),
            &OwnerState::Gone,
            &PathState::Metadata(PathMetadata {
                custom_metadata: ownership::stamp(
                    &BTreeMap::new(),
                    &Owner::new("prod", "shop", "api"),
                    false,
                ),
                current_version: 2,
                current_deleted: true,
            }),
            false,
        );
        assert_eq!(
            v,
            Verdict {
                action: None,
                forget: true
            }
        );
    }
}
