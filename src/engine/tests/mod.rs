//! The shell's rules, proved against in-memory fakes of its ports: no
//! server, milliseconds per test. What needs the wire (faults, auth, TLS,
//! real RBAC, request counts in an audit log) stays in the end-to-end
//! suite (`tests/it/`).

mod fakes;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use fakes::{FakeCluster, FakeVault, Quiet};

use super::{Applied, Engine, Prepared, Scope};
use crate::core::annotations::{PATH, PRESERVE_ON_DELETE};
use crate::core::error_kind::ErrorKind;
use crate::core::index;
use crate::core::ownership::{self, OWNER_KEY, Owner};
use crate::core::plan::Action;
use crate::core::vault_path::{KvLocation, KvVersion};
use crate::core::workload::Kind;
use crate::k8s::SecretReads;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

const NS: &str = "shop";
const INDEX: &str = "secret/vault-sync/index/default";

/// An engine over the fakes, with `run`'s defaults.
struct World {
    engine: Engine<FakeCluster, FakeVault>,
}

impl World {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut Scope)) -> Self {
        let mut scope = Scope {
            cluster: "default".into(),
            cluster_prefix: None,
            namespaces: Vec::new(),
            selector: None,
            kinds: Kind::ALL.to_vec(),
            rules: Default::default(),
            concurrency: 4,
            batch_size: 500,
            read_secrets: SecretReads::Get,
            adopt: false,
            prune: true,
            destroy: false,
            max_deletes: 10,
            index_mount: "secret".into(),
        };
        adjust(&mut scope);
        Self {
            engine: Engine {
                kube: FakeCluster::default(),
                vault: FakeVault::new(),
                scope,
                metrics: Arc::new(Metrics::new().expect("metrics")),
                shutdown: Shutdown::default(),
            },
        }
    }

    fn kube(&self) -> &FakeCluster {
        &self.engine.kube
    }

    fn vault(&self) -> &FakeVault {
        &self.engine.vault
    }

    /// `name` in custom-free auto-discovery: `secret/<name>/<secret>` for
    /// each Secret (each with one key).
    fn app(&self, name: &str, secrets: &[&str]) {
        let path = format!("secret/{name}");
        self.kube().deployment(NS, name, &[(PATH, &path)], secrets);
        for s in secrets {
            self.kube().secret(NS, s, &[("k", &format!("{s}-value"))]);
        }
    }

    async fn plan(&self) -> Prepared {
        self.engine.prepare(&Quiet, false).await.expect("plan")
    }

    async fn run(&self) -> (Prepared, Applied) {
        let mut prepared = self.engine.prepare(&Quiet, true).await.expect("run");
        let applied = self.engine.apply(&mut prepared, &Quiet).await;
        (prepared, applied)
    }

    /// The index's entries, by display path.
    fn index(&self) -> BTreeMap<String, index::IndexEntry> {
        let stored = self.vault().get(INDEX).expect("an index");
        index::decode(INDEX, stored.current().expect("content"))
            .expect("a readable index")
            .into_iter()
            .map(|(l, e)| (l.to_string(), e))
            .collect()
    }
}

fn owner(name: &str) -> Owner {
    Owner::new("default", NS, name)
}

/// path → action name.
fn actions(p: &Prepared) -> BTreeMap<String, &'static str> {
    p.plan
        .changes
        .iter()
        .map(|c| (c.path().into_owned(), c.action.name()))
        .collect()
}

fn marker_owner(world: &World, path: &str) -> Option<String> {
    world
        .vault()
        .get(path)
        .and_then(|p| p.custom_metadata.get(OWNER_KEY).cloned())
}

#[tokio::test]
async fn a_first_run_creates_marks_and_indexes_and_a_second_writes_nothing() {
    let w = World::new();
    w.app("api", &["db", "cache"]);
    let (prepared, applied) = w.run().await;
    assert_eq!(
        actions(&prepared),
        BTreeMap::from([
            ("secret/api/cache".into(), "create"),
            ("secret/api/db".into(), "create"),
        ])
    );
    assert!(applied.failures.is_empty() && applied.errors.is_empty());
    assert_eq!(
        marker_owner(&w, "secret/api/db"),
        Some(owner("api").to_string())
    );
    let index = w.index();
    assert_eq!(index.len(), 2);
    assert_eq!(
        index["secret/api/db"].written,
        NonZeroU64::new(1),
        "{index:?}"
    );
    let index_md = w.vault().get(INDEX).expect("index").custom_metadata;
    assert_eq!(index_md, index::marker("default"));

    // Content before marker, the index before both, and its marker first.
    let writes = w.vault().take_writes();
    let position = |path: &str| {
        writes
            .iter()
            .position(|(_, p)| p == path)
            .unwrap_or_else(|| panic!("{path} not written: {writes:?}"))
    };
    assert!(
        position("secret/metadata/vault-sync/index/default")
            < position("secret/data/vault-sync/index/default")
    );
    assert!(position("secret/data/vault-sync/index/default") < position("secret/data/api/db"));
    assert!(position("secret/data/api/db") < position("secret/metadata/api/db"));

    let (again, _) = w.run().await;
    assert!(
        again
            .plan
            .changes
            .iter()
            .all(|c| c.action == Action::Unchanged)
    );
    assert_eq!(
        w.vault().take_writes(),
        Vec::new(),
        "a no-op writes nothing"
    );
}

#[tokio::test]
async fn a_path_someone_else_wrote_is_a_conflict_and_stays_untouched() {
    let w = World::new();
    w.app("api", &["db"]);
    w.vault().put("secret/api/db", &[("k", "theirs")]);
    let (prepared, applied) = w.run().await;
    assert_eq!(actions(&prepared)["secret/api/db"], "conflict");
    assert!(prepared.has_failures());
    assert!(applied.failures.is_empty());
    let path = w.vault().get("secret/api/db").expect("path");
    assert_eq!(path.versions.len(), 1);
    assert!(path.custom_metadata.is_empty());
}

/// An index update is made in place; when its write fails, the index the
/// run holds is put back as stored (the run may go on with it, e.g. after
/// a failed unclaim), entries added, changed and removed alike.
#[tokio::test]
async fn a_failed_index_write_leaves_the_held_index_as_stored() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("web", &["session"]);
    w.run().await;
    let mut state = w.engine.read_index().await.expect("the index");
    let before = state.index.clone();
    let at = |display: &str| {
        before
            .keys()
            .find(|l| l.to_string() == display)
            .cloned()
            .expect("indexed")
    };
    let (api, web) = (at("secret/api/db"), at("secret/web/session"));
    let new = KvLocation {
        mount: "secret/".into(),
        rel: "new/x".into(),
        version: KvVersion::V2,
    };
    let add = index::Index::from([
        (new, index::IndexEntry::new(owner("new"), false)),
        (
            api.clone(),
            index::IndexEntry {
                written: NonZeroU64::new(7),
                ..before[&api].clone()
            },
        ),
    ]);
    w.vault().fail_content_writes(INDEX);
    let result = w
        .engine
        .update_index(&mut state, &add, &BTreeSet::from([web]))
        .await;
    assert!(result.is_err(), "the write was to fail");
    assert_eq!(state.index, before);
    assert_eq!(w.index().len(), 2, "{:?}", w.index());
}

#[tokio::test]
async fn a_deleted_deployment_soft_deletes_its_path_and_leaves_the_index() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("web", &["session"]);
    w.run().await;
    w.kube().delete_deployment(NS, "web");
    let (prepared, applied) = w.run().await;
    assert_eq!(actions(&prepared)["secret/web/session"], "delete");
    assert!(applied.failures.is_empty());
    let gone = w.vault().get("secret/web/session").expect("metadata kept");
    assert!(gone.current().is_none(), "soft-deleted: {gone:?}");
    assert!(!w.index().contains_key("secret/web/session"));
    assert!(w.index().contains_key("secret/api/db"));
}

#[tokio::test]
async fn preserve_on_delete_keeps_the_path_and_a_newcomer_takes_it_over() {
    let w = World::new();
    w.kube().deployment(
        NS,
        "old",
        &[(PATH, "secret/shared"), (PRESERVE_ON_DELETE, "true")],
        &["db"],
    );
    w.kube().secret(NS, "db", &[("k", "v")]);
    w.run().await;
    w.kube().delete_deployment(NS, "old");
    let (prepared, _) = w.run().await;
    assert_eq!(actions(&prepared)["secret/shared/db"], "kept");
    assert!(
        w.vault()
            .get("secret/shared/db")
            .and_then(|p| p.current().cloned())
            .is_some()
    );

    // The owner is gone: a new Deployment wanting the path takes it over.
    w.kube()
        .deployment(NS, "new", &[(PATH, "secret/shared")], &["db"]);
    let (prepared, applied) = w.run().await;
    let change = &prepared.plan.changes[0];
    assert!(
        matches!(&change.action, Action::Update { previous_owner: Some(o), .. } if *o == owner("old")),
        "{:?}",
        change.action
    );
    assert!(applied.failures.is_empty());
    assert_eq!(
        marker_owner(&w, "secret/shared/db"),
        Some(owner("new").to_string())
    );
    assert_eq!(w.index()["secret/shared/db"].owner, owner("new"));
    assert_eq!(
        w.vault()
            .get("secret/shared/db")
            .expect("path")
            .versions
            .len(),
        2
    );
}

#[tokio::test]
async fn a_live_owner_keeps_its_path() {
    let w = World::new();
    w.kube()
        .deployment(NS, "a", &[(PATH, "secret/shared")], &["db"]);
    w.kube().secret(NS, "db", &[("k", "v")]);
    w.run().await;
    // `a` stops wanting it in this run's listing but still exists.
    w.kube().deployment(NS, "a", &[], &["db"]);
    w.kube()
        .deployment(NS, "b", &[(PATH, "secret/shared")], &["db"]);
    let prepared = w.plan().await;
    assert_eq!(actions(&prepared)["secret/shared/db"], "conflict");
}

#[tokio::test]
async fn the_delete_guard_refuses_every_deletion_over_the_limit() {
    let w = World::with(|s| s.max_deletes = 1);
    w.app("a", &["x"]);
    w.app("b", &["y"]);
    w.run().await;
    w.kube().delete_deployment(NS, "a");
    w.kube().delete_deployment(NS, "b");
    w.vault().take_writes();
    let (prepared, applied) = w.run().await;
    assert!(
        prepared.plan.changes.iter().all(
            |c| matches!(&c.action, Action::Refused { reason, .. } if reason.contains("--max-deletes"))
        ),
        "{:?}",
        prepared.plan.changes
    );
    assert!(applied.failures.is_empty());
    assert_eq!(
        w.vault().take_writes(),
        Vec::new(),
        "nothing deleted, the index kept"
    );
    assert_eq!(w.index().len(), 2);
}

#[tokio::test]
async fn batches_of_one_path_plan_and_write_what_one_batch_does() {
    let one = World::new();
    let many = World::with(|s| s.batch_size = 1);
    for w in [&one, &many] {
        for i in 0..5 {
            w.app(&format!("app{i}"), &["db", "cache"]);
        }
    }
    let (a, _) = one.run().await;
    let (b, _) = many.run().await;
    assert_eq!(actions(&a), actions(&b));
    assert_eq!(one.index(), many.index());
    assert_eq!(many.index().len(), 10);
}

#[tokio::test]
async fn an_index_in_the_earlier_plain_format_is_read_and_rewritten_packed() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("old", &["cache"]);
    w.run().await;
    // The same index as an earlier vault-sync stored it: plain JSON lines.
    let stored = w.vault().get(INDEX).expect("index");
    let packed = stored.current().expect("content").clone();
    let plain: Vec<(String, String)> = packed
        .iter()
        .map(|(k, v)| match k.as_str() {
            "format" => (k.clone(), "vault-sync-index/v1".to_owned()),
            _ => (k.clone(), index::unpack_chunk(v).expect("a packed chunk")),
        })
        .collect();
    let plain: Vec<(&str, &str)> = plain.iter().map(|(k, v)| (&**k, &**v)).collect();
    w.vault().put(INDEX, &plain);
    assert_eq!(w.index().len(), 2, "the plain form reads the same");

    w.kube().delete_deployment(NS, "old");
    let (prepared, applied) = w.run().await;
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    assert_eq!(actions(&prepared)["secret/old/cache"], "delete");
    let now = w.vault().get(INDEX).expect("index");
    let now = now.current().expect("content");
    assert_eq!(now["format"], "vault-sync-index/v2");
    assert_eq!(w.index().keys().collect::<Vec<_>>(), ["secret/api/db"]);
}

/// Apps `a0..a{n}` in `ns`, each one path from one Secret of its own.
fn apps_in(w: &World, ns: &str, n: usize) {
    for i in 0..n {
        let (app, secret) = (format!("{ns}-a{i}"), format!("{ns}-s{i}"));
        let path = format!("secret/{ns}/{app}");
        w.kube().deployment(ns, &app, &[(PATH, &path)], &[&secret]);
        w.kube()
            .secret(ns, &secret, &[("k", &format!("{secret}-value"))]);
    }
}

#[tokio::test]
async fn listing_secrets_reads_each_namespace_about_once_however_many_batches() {
    let listed = World::with(|s| {
        s.read_secrets = SecretReads::List;
        s.batch_size = 2;
    });
    let got = World::with(|s| s.batch_size = 2);
    for w in [&listed, &got] {
        apps_in(w, "blue", 7);
        apps_in(w, "green", 5);
    }
    let (a, _) = listed.run().await;
    let (b, _) = got.run().await;
    assert_eq!(actions(&a), actions(&b));
    assert_eq!(listed.index(), got.index());
    assert_eq!(listed.index().len(), 12);
    for (path, _) in actions(&a) {
        assert_eq!(
            listed.vault().get(&path).and_then(|p| p.current().cloned()),
            got.vault().get(&path).and_then(|p| p.current().cloned()),
            "{path}"
        );
    }
    // Six batches of two paths. The first knows no value sizes, so carries
    // nothing; the second lists blue again and carries the rest of it; the
    // one that reaches green lists it once, carrying its rest.
    assert_eq!(listed.kube().take_secret_lists(), ["blue", "blue", "green"]);
    assert!(listed.kube().take_secret_gets().is_empty());

    // A Secret rotated since is read afresh and written by the next run.
    listed
        .kube()
        .secret("green", "green-s4", &[("k", "rotated")]);
    let (again, _) = listed.run().await;
    let changed: Vec<_> = actions(&again)
        .into_iter()
        .filter(|(_, a)| *a != "unchanged")
        .collect();
    assert_eq!(
        changed,
        [("secret/green/green-a4/green-s4".to_owned(), "update")]
    );
}

#[tokio::test]
async fn a_concurrent_index_write_is_merged_not_overwritten() {
    let w = World::new();
    w.app("api", &["db"]);
    w.run().await;
    w.app("web", &["session"]);
    // The racing run's entry names an owner this run does not judge (of
    // another cluster), so it must come through the merge as it is.
    let theirs = r#"{"path":"secret/other","mount":"secret/","kv":2,"owner":"staging/shop/other"}"#;
    w.vault().race_next_record_write(theirs);
    let (_, applied) = w.run().await;
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    let index = w.index();
    assert!(
        index.contains_key("secret/other"),
        "the other run's entry kept: {index:?}"
    );
    assert!(index.contains_key("secret/web/session"));
    assert!(index.contains_key("secret/api/db"));
}

#[tokio::test]
async fn an_unmarked_write_of_ours_stays_ours_until_someone_else_writes() {
    let w = World::new();
    w.app("api", &["db"]);
    w.vault().deny_metadata_writes("secret/api/db");
    let (_, applied) = w.run().await;
    assert_eq!(applied.failures.len(), 1, "the marker write failed");
    let path = w.vault().get("secret/api/db").expect("content written");
    assert!(path.custom_metadata.is_empty());
    assert_eq!(w.index()["secret/api/db"].written, NonZeroU64::new(1));

    // While wanted: ours, the marker is retried.
    let prepared = w.plan().await;
    assert_eq!(actions(&prepared)["secret/api/db"], "update");

    // Its Deployment goes: deleted, as ours, at the version we wrote.
    w.kube().delete_deployment(NS, "api");
    let (prepared, applied) = w.run().await;
    assert!(
        matches!(
            prepared.plan.changes[0].action,
            Action::Delete {
                unmarked_version: Some(v),
                ..
            } if v.get() == 1
        ),
        "{:?}",
        prepared.plan.changes
    );
    assert!(applied.failures.is_empty());
    assert!(
        w.vault()
            .get("secret/api/db")
            .expect("metadata")
            .current()
            .is_none()
    );
}

#[tokio::test]
async fn an_unmarked_path_changed_by_someone_else_is_never_deleted() {
    let w = World::new();
    w.app("api", &["db"]);
    w.vault().deny_metadata_writes("secret/api/db");
    w.run().await;
    w.vault().put("secret/api/db", &[("k", "someone else's")]);
    w.kube().delete_deployment(NS, "api");
    let (prepared, _) = w.run().await;
    assert_eq!(actions(&prepared)["secret/api/db"], "refused");
    assert!(
        w.vault()
            .get("secret/api/db")
            .and_then(|p| p.current().cloned())
            .is_some()
    );
}

#[tokio::test]
async fn a_failed_write_fails_only_its_own_path() {
    let w = World::new();
    w.app("api", &["db", "cache"]);
    w.vault().fail_content_writes("secret/api/db");
    let (prepared, applied) = w.run().await;
    let failed: Vec<String> = applied
        .failures
        .keys()
        .map(|&i| prepared.plan.changes[i].path().into_owned())
        .collect();
    assert_eq!(failed, ["secret/api/db"]);
    assert!(
        w.vault()
            .get("secret/api/cache")
            .and_then(|p| p.current().cloned())
            .is_some()
    );
    assert!(w.vault().get("secret/api/db").is_none());
    // Still indexed: its create was recorded before the write.
    assert!(w.index().contains_key("secret/api/db"));
}

#[tokio::test]
async fn an_untrusted_index_blocks_creates_and_deletes_and_is_left_as_found() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("web", &["session"]);
    w.run().await;
    // The index's marker is replaced by a path's marker.
    let stolen = ownership::stamp(&BTreeMap::new(), &owner("evil"), false);
    w.vault().set_metadata(INDEX, stolen);
    let before = w.vault().get(INDEX).expect("index");
    w.kube().delete_deployment(NS, "web");
    w.app("new", &["fresh"]);
    w.vault().take_writes();
    let (prepared, applied) = w.run().await;
    assert!(
        prepared
            .errors
            .iter()
            .any(|(kind, _)| *kind == ErrorKind::IndexUntrusted),
        "{:?}",
        prepared.errors
    );
    assert!(!actions(&prepared).values().any(|a| *a == "delete"));
    assert_eq!(applied.failures.len(), 1, "the create is not attempted");
    assert_eq!(w.vault().take_writes(), Vec::new());
    assert_eq!(
        w.vault().get(INDEX).expect("index").versions,
        before.versions
    );
}

#[tokio::test]
async fn a_lost_index_is_said_and_not_recreated() {
    let w = World::new();
    w.app("api", &["db"]);
    w.run().await;
    w.vault().remove(INDEX);
    let prepared = w.plan().await;
    assert!(
        prepared
            .errors
            .iter()
            .any(|(kind, _)| *kind == ErrorKind::IndexMissing),
        "{:?}",
        prepared.errors
    );
    assert!(prepared.index.is_none());
}

#[tokio::test]
async fn a_stop_request_reads_no_further_batch_and_deletes_nothing() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("web", &["session"]);
    w.run().await;
    w.kube().delete_deployment(NS, "web");
    w.engine.shutdown.request(15);
    w.vault().take_writes();
    let (prepared, _) = w.run().await;
    assert!(
        prepared
            .errors
            .iter()
            .any(|(kind, _)| *kind == ErrorKind::Interrupted),
        "{:?}",
        prepared.errors
    );
    assert!(!actions(&prepared).values().any(|a| *a == "delete"));
    assert_eq!(w.vault().take_writes(), Vec::new());
}

#[tokio::test]
async fn every_workload_kind_syncs_and_is_pruned_by_its_own_kind() {
    let w = World::new();
    for (kind, name) in [
        (Kind::StatefulSet, "db"),
        (Kind::DaemonSet, "agent"),
        (Kind::Job, "migrate"),
        (Kind::CronJob, "report"),
    ] {
        let path = format!("secret/{name}");
        w.kube().workload(kind, NS, name, &[(PATH, &path)], &[name]);
        w.kube().secret(NS, name, &[("k", "v")]);
    }
    let (prepared, applied) = w.run().await;
    assert!(applied.failures.is_empty());
    assert_eq!(
        prepared.plan.summary().create,
        4,
        "{:?}",
        actions(&prepared)
    );
    assert_eq!(
        marker_owner(&w, "secret/db/db"),
        Some("default/shop/StatefulSet/db".to_owned())
    );
    assert_eq!(w.index()["secret/report/report"].owner.kind, Kind::CronJob);

    // A Deployment of the same name is another owner: it does not keep
    // the StatefulSet's path alive, and the StatefulSet's deletion prunes it.
    w.app("db", &["other"]);
    w.kube().delete_workload(Kind::StatefulSet, NS, "db");
    let (prepared, _) = w.run().await;
    assert_eq!(actions(&prepared)["secret/db/db"], "delete");
    assert_eq!(actions(&prepared)["secret/report/report"], "unchanged");
}

#[tokio::test]
async fn a_kind_left_out_is_neither_synced_nor_judged() {
    let mut w = World::new();
    w.kube()
        .workload(Kind::StatefulSet, NS, "db", &[(PATH, "secret/db")], &["db"]);
    w.kube().secret(NS, "db", &[("k", "v")]);
    w.run().await;
    // `--kinds Deployment`: the StatefulSet is not read, and its path is
    // not an orphan, even once the StatefulSet is gone (this run cannot
    // know).
    w.engine.scope.kinds = vec![Kind::Deployment];
    w.kube().delete_workload(Kind::StatefulSet, NS, "db");
    w.vault().take_writes();
    let (prepared, _) = w.run().await;
    assert!(
        prepared.plan.changes.is_empty(),
        "{:?}",
        prepared.plan.changes
    );
    assert_eq!(w.vault().take_writes(), Vec::new());
    assert!(w.index().contains_key("secret/db/db"));
}

#[tokio::test]
async fn path_rules_keep_a_namespace_in_its_lane() {
    let rules: Vec<crate::core::path_rules::PathRule> =
        vec!["*=secret/apps/{namespace}/".parse().expect("rule")];
    let w = World::with(|s| s.rules = crate::core::path_rules::PathRules::new(rules));
    w.kube()
        .deployment(NS, "ok", &[(PATH, "secret/apps/shop")], &["db"]);
    w.kube()
        .deployment(NS, "squatter", &[(PATH, "secret/apps/team-b")], &["db"]);
    w.kube().secret(NS, "db", &[("k", "v")]);
    let (prepared, _) = w.run().await;
    let change = prepared
        .plan
        .changes
        .iter()
        .find(|c| c.path() == "secret/apps/team-b/db")
        .expect("the squatter's path");
    assert!(
        matches!(&change.action, Action::Refused { kind: Some(ErrorKind::OutsideAllowedPaths), reason } if reason.contains("secret/apps/shop/")),
        "{:?}",
        change.action
    );
    assert!(prepared.has_failures());
    assert!(
        w.vault().get("secret/apps/team-b/db").is_none(),
        "written nowhere"
    );
    assert!(w.vault().get("secret/apps/shop/db").is_some());
    assert!(!w.index().contains_key("secret/apps/team-b/db"));
}
mod saved;
