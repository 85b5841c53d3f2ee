//! `plan --out` / `run --plan` on the fakes: exactly the saved changes,
//! each only while what it was pinned to has not moved.

use std::time::SystemTime;

use super::fakes::Quiet;
use super::{NS, World, actions};
use crate::core::error_kind::ErrorKind;
use crate::core::ownership::{self, OWNER_KEY};
use crate::core::saved_plan::{self, Expect, Header, OptionsRecord, SavedPlan, ScopeRecord};
use crate::engine::SavedOutcome;

/// `plan --out`, as a document (through its JSON form, as on disk).
async fn save(w: &World) -> SavedPlan {
    let (prepared, pins) = w.engine.prepare_pinned(&Quiet).await.expect("plan");
    let scope = &w.engine.scope;
    let header = Header {
        tool_version: crate::VERSION.into(),
        created_at: SystemTime::now(),
        cluster: scope.cluster.clone(),
        scope: ScopeRecord {
            namespaces: scope.namespaces.clone(),
            selector: None,
        },
        vault_address: "http://vault".into(),
        vault_namespace: None,
        index_mount: scope.index_mount.clone(),
        options: OptionsRecord {
            adopt: scope.adopt,
            prune: scope.prune,
            destroy: scope.destroy,
            max_deletes: scope.max_deletes,
        },
    };
    let doc = saved_plan::build(header, &prepared.plan, &pins).expect("every change pinned");
    let text = serde_json::to_string(&doc).expect("encodes");
    saved_plan::parse(&text).expect("reads back")
}

/// `run --plan`.
async fn apply(w: &World, plan: &SavedPlan) -> SavedOutcome {
    let scope = &w.engine.scope;
    let changes = saved_plan::check(
        plan,
        &Expect {
            cluster: &scope.cluster,
            cluster_prefix: None,
            vault_address: "http://vault",
            vault_namespace: None,
            index_mount: &scope.index_mount,
            namespaces: &scope.namespaces,
            selector: None,
            now: SystemTime::now(),
            max_age: None,
        },
    )
    .expect("accepted");
    w.engine
        .apply_saved(changes, &plan.vault.mounts, &Quiet)
        .await
        .expect("applied")
}

/// path → "applied" or the failure's error_type.
fn results(o: &SavedOutcome) -> std::collections::BTreeMap<String, &'static str> {
    o.plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let result = match o.failures.get(&i) {
                None => "applied",
                Some(e) => e.kind().label(),
            };
            (c.path().into_owned(), result)
        })
        .collect()
}

fn sorted(mut writes: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    writes.sort();
    writes
}

#[tokio::test]
async fn an_unchanged_world_gets_exactly_the_writes_of_a_plain_run() {
    let setup = |w: &World| {
        w.app("api", &["db", "cache"]);
        w.app("web", &["session"]);
    };
    let plain = World::new();
    setup(&plain);
    plain.run().await;

    let saved = World::new();
    setup(&saved);
    let plan = save(&saved).await;
    assert_eq!(plan.changes.len(), 3);
    assert!(
        saved.vault().take_writes().is_empty(),
        "planning writes nothing"
    );
    let outcome = apply(&saved, &plan).await;
    assert!(
        outcome.failures.is_empty() && outcome.errors.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(
        sorted(saved.vault().take_writes()),
        sorted(plain.vault().take_writes())
    );
    assert_eq!(saved.index(), plain.index());
}

#[tokio::test]
async fn a_secret_changed_after_the_plan_makes_only_its_path_stale() {
    let w = World::new();
    w.app("api", &["db", "cache"]);
    let plan = save(&w).await;
    w.kube().secret(NS, "db", &[("k", "rotated")]);
    w.kube().take_secret_gets();
    let outcome = apply(&w, &plan).await;
    let r = results(&outcome);
    assert_eq!(r["secret/api/db"], "stale");
    assert_eq!(r["secret/api/cache"], "applied");
    assert!(w.vault().get("secret/api/db").is_none(), "stale: untouched");
    let message = outcome.failures.values().next().expect("one").to_string();
    assert!(
        message.contains("Secret shop/db changed since the plan"),
        "{message}"
    );
    // Only the pinned Secrets are read.
    let mut gets = w.kube().take_secret_gets();
    gets.sort();
    assert_eq!(
        gets,
        [
            (NS.to_owned(), "cache".to_owned()),
            (NS.to_owned(), "db".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_recreated_or_deleted_secret_is_stale() {
    let w = World::new();
    w.app("api", &["db", "cache"]);
    let plan = save(&w).await;
    w.kube().delete_secret(NS, "db");
    w.kube().delete_secret(NS, "cache");
    w.kube().secret(NS, "cache", &[("k", "cache-value")]);
    let r = results(&apply(&w, &plan).await);
    assert_eq!(r["secret/api/db"], "stale");
    assert_eq!(r["secret/api/cache"], "stale", "same data, new uid");
}

#[tokio::test]
async fn a_vault_path_written_by_someone_else_after_the_plan_is_stale_and_untouched() {
    let w = World::new();
    w.app("api", &["db"]);
    w.run().await;
    w.kube().secret(NS, "db", &[("k", "v2")]);
    let plan = save(&w).await;
    assert_eq!(plan.changes[0].action, saved_plan::SavedAction::Update);
    w.vault().put("secret/api/db", &[("k", "theirs")]);
    w.vault().take_writes();
    let r = results(&apply(&w, &plan).await);
    assert_eq!(r["secret/api/db"], "stale");
    let path = w.vault().get("secret/api/db").expect("path");
    assert_eq!(path.versions.len(), 2, "nothing written over theirs");
    assert!(w.vault().take_writes().is_empty());
}

#[tokio::test]
async fn nothing_outside_the_plan_is_written_or_deleted() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("web", &["session"]);
    w.run().await;
    w.kube().secret(NS, "db", &[("k", "v2")]);
    let plan = save(&w).await;
    assert_eq!(actions_of(&plan), ["secret/api/db"]);
    // After the plan: a Deployment deleted, another path drifted.
    w.kube().delete_deployment(NS, "web");
    w.app("new", &["other"]);
    w.vault().take_writes();
    let outcome = apply(&w, &plan).await;
    assert!(outcome.failures.is_empty(), "{outcome:?}");
    let touched: Vec<String> = w
        .vault()
        .take_writes()
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| !p.contains("vault-sync/index"))
        .collect();
    assert_eq!(touched, ["secret/data/api/db"]);
    assert!(
        w.vault()
            .get("secret/web/session")
            .and_then(|p| p.current().cloned())
            .is_some(),
        "web's path was not in the plan: kept"
    );
    // A plain run would have deleted it.
    let (prepared, _) = w.run().await;
    assert_eq!(actions(&prepared)["secret/web/session"], "delete");
}

fn actions_of(plan: &SavedPlan) -> Vec<&str> {
    plan.changes.iter().map(|c| c.path.as_str()).collect()
}

#[tokio::test]
async fn a_saved_deletion_rechecks_owner_and_marker() {
    let w = World::new();
    w.app("api", &["db"]);
    w.app("web", &["session", "cart"]);
    w.run().await;
    w.kube().delete_deployment(NS, "web");
    let plan = save(&w).await;
    assert_eq!(plan.changes.len(), 2);
    assert!(
        plan.changes
            .iter()
            .all(|c| c.action == saved_plan::SavedAction::Delete)
    );
    // Someone re-marks one path for another owner after the plan.
    let mut md = w
        .vault()
        .get("secret/web/cart")
        .expect("path")
        .custom_metadata;
    md.insert(
        OWNER_KEY.into(),
        ownership::Owner::new("default", NS, "x").to_string(),
    );
    w.vault().set_metadata("secret/web/cart", md);
    let outcome = apply(&w, &plan).await;
    let r = results(&outcome);
    assert_eq!(r["secret/web/session"], "applied");
    assert_eq!(r["secret/web/cart"], "stale");
    assert!(
        w.vault()
            .get("secret/web/cart")
            .and_then(|p| p.current().cloned())
            .is_some()
    );
    assert!(!w.index().contains_key("secret/web/session"));
    assert!(w.index().contains_key("secret/web/cart"));
}

#[tokio::test]
async fn a_deployment_back_before_its_saved_deletion_is_stale() {
    let w = World::new();
    w.app("web", &["session"]);
    w.run().await;
    w.kube().delete_deployment(NS, "web");
    let plan = save(&w).await;
    w.app("web", &["session"]);
    let r = results(&apply(&w, &plan).await);
    assert_eq!(r["secret/web/session"], "stale");
}

#[tokio::test]
async fn max_deletes_counts_the_files_deletions() {
    let w = World::new();
    w.app("web", &["a", "b", "c"]);
    w.run().await;
    w.kube().delete_deployment(NS, "web");
    let plan = save(&w).await;
    assert_eq!(plan.changes.len(), 3);
    let w2 = World {
        engine: crate::engine::Engine {
            scope: crate::engine::Scope {
                max_deletes: 2,
                ..w.engine.scope.clone()
            },
            ..w.engine
        },
    };
    let outcome = apply(&w2, &plan).await;
    assert_eq!(outcome.plan.summary().refused, 3);
    assert!(outcome.plan.has_failures());
    assert!(
        w2.vault()
            .get("secret/web/a")
            .and_then(|p| p.current().cloned())
            .is_some()
    );
    assert_eq!(ErrorKind::Stale.label(), "stale");
}
