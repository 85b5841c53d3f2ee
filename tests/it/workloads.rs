//! Workload kinds and tenant bounds, end to end: StatefulSets, DaemonSets,
//! Jobs and CronJobs get their Secrets into Vault and their deletion
//! prunes their paths; `--allow-path` keeps a namespace's workloads in
//! their prefix, written or deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::audit::audit_mark;
use crate::fixtures::{actions, change};
use crate::harness::annotation::PATH;
use crate::harness::{PodRefs, TestNs};

/// Creates a workload of kind `K` from its JSON `spec` (the pod template
/// inserted where the kind keeps it).
async fn create<K>(ns: &TestNs, name: &str, annotations: &[(&str, &str)], spec: Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + DeserializeOwned,
{
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let object: K = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns.name, "annotations": annotations},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    Api::<K>::namespaced(ns.kube.clone(), &ns.name)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

async fn delete<K>(ns: &TestNs, name: &str)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let api = Api::<K>::namespaced(ns.kube.clone(), &ns.name);
    api.delete(name, &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    for _ in 0..100 {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} still exists");
}

fn template(secret: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": secret}},
        "spec": PodRefs::new().env_from(secret).pod_spec(),
    })
}

fn job_template(secret: &str) -> Value {
    let mut t = template(secret);
    t["spec"]["restartPolicy"] = json!("Never");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_kind_syncs_and_its_deletion_prunes_its_paths() {
    let ns = TestNs::new("kinds").await;
    let kinds = [
        ("StatefulSet", "db"),
        ("DaemonSet", "agent"),
        ("Job", "migrate"),
        ("CronJob", "report"),
    ];
    for (_, name) in kinds {
        let value = ns.value(name);
        ns.secret(name, &[("k", &value)]).await;
    }
    let path = |name: &str| ns.path("secret", name);
    let selector = |name: &str| json!({"matchLabels": {"app": name}});
    create::<StatefulSet>(
        &ns,
        "db",
        &[(PATH, &path("db"))],
        json!({"serviceName": "db", "selector": selector("db"), "template": template("db")}),
    )
    .await;
    create::<DaemonSet>(
        &ns,
        "agent",
        &[(PATH, &path("agent"))],
        json!({"selector": selector("agent"), "template": template("agent")}),
    )
    .await;
    create::<Job>(
        &ns,
        "migrate",
        &[(PATH, &path("migrate"))],
        json!({"template": job_template("migrate")}),
    )
    .await;
    let cronjob = create::<CronJob>(
        &ns,
        "report",
        &[(PATH, &path("report"))],
        json!({"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": job_template("report")}}}),
    )
    .await;
    // A Job the CronJob created carries its jobTemplate's annotations; it
    // belongs to the CronJob and must not become a second owner.
    let child: Job = serde_json::from_value(json!({
        "metadata": {
            "name": "report-1",
            "namespace": ns.name,
            "annotations": {PATH: path("report")},
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "report",
                "uid": cronjob.metadata.uid.clone().expect("uid"), "controller": true,
            }],
        },
        "spec": {"template": job_template("report")},
    }))
    .expect("job");
    Api::<Job>::namespaced(ns.kube.clone(), &ns.name)
        .create(&PostParams::default(), &child)
        .await
        .expect("create the CronJob's Job");

    let run = ns.cli(&["run", "-o", "json"]).await;
    run.assert_code(0);
    let expected: BTreeMap<String, String> = kinds
        .iter()
        .map(|(_, n)| (format!("{}/{n}", path(n)), "create".to_owned()))
        .collect();
    assert_eq!(actions(&run), expected, "{run}");
    for (kind, name) in kinds {
        let c = change(&run, &format!("{}/{name}", path(name)));
        assert_eq!(c["kind"], kind, "{run}");
        assert_eq!(c["workload"], name, "{run}");
        let md = ns
            .vault
            .kv2_metadata("secret", &ns.rel(&format!("{name}/{name}")))
            .await
            .expect("metadata");
        assert_eq!(
            md["custom_metadata"]["vault-sync.io/owner"],
            format!("default/{}/{kind}/{name}", ns.name),
            "{md}"
        );
    }
    ns.cli(&["plan"]).await.assert_code(0);

    // Each deletion prunes its own kind's path.
    delete::<StatefulSet>(&ns, "db").await;
    delete::<DaemonSet>(&ns, "agent").await;
    delete::<Job>(&ns, "migrate").await;
    delete::<Job>(&ns, "report-1").await;
    delete::<CronJob>(&ns, "report").await;
    let mark = audit_mark();
    let run = ns.cli(&["run", "-o", "json"]).await;
    run.assert_code(0);
    let deleted: BTreeMap<String, String> = kinds
        .iter()
        .map(|(_, n)| (format!("{}/{n}", path(n)), "delete".to_owned()))
        .collect();
    assert_eq!(actions(&run), deleted, "{run}");
    let deletes = mark
        .entries()
        .writes_by(&ns.audit_client())
        .into_iter()
        .filter(|(op, _)| op == "delete")
        .count();
    assert_eq!(deletes, kinds.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rules_keep_a_namespace_in_its_prefix() {
    let home = TestNs::new("rules-a").await;
    let other = TestNs::new("rules-b").await;
    let value = home.value("db");
    home.secret("db", &[("k", &value)]).await;
    let refs = PodRefs::new().env_from("db");
    let rule = "*=secret/it/{namespace}/";
    let own = home.path("secret", "ok");
    let squat = other.path("secret", "squat");
    let squat_api = format!("secret/data/it/{}/squat-api", other.name);
    let lookalike = format!("secret/it/{}-evil/x", home.name);
    for (name, path) in [
        ("ok", own.as_str()),
        ("squat", squat.as_str()),
        ("squat-api", squat_api.as_str()),
        ("lookalike", lookalike.as_str()),
    ] {
        home.deployment(name, &[(PATH, path)], &refs).await;
    }

    let mark = audit_mark();
    let run = home.cli(&["run", "-o", "json", "--allow-path", rule]).await;
    run.assert_code(1);
    let got = actions(&run);
    assert_eq!(got[&format!("{own}/db")], "create", "{run}");
    for refused in [
        format!("{squat}/db"),
        format!("secret/it/{}/squat-api/db", other.name),
        format!("{lookalike}/db"),
    ] {
        let c = change(&run, &refused);
        assert_eq!(c["action"], "refused", "{run}");
        assert_eq!(c["error_type"], "outside_allowed_paths", "{run}");
        assert!(
            c["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("secret/it/{}/", home.name))),
            "{run}"
        );
    }
    // Nothing outside the prefix was read or written.
    let entries = mark.entries();
    let needle = other.audit_needle();
    let reached: Vec<_> = entries.requests(&needle).collect();
    assert!(
        reached.is_empty(),
        "requests reached the other namespace's prefix: {reached:?}"
    );
    assert!(
        other
            .vault
            .kv2_read("secret", &other.rel("squat/db"))
            .await
            .is_none()
    );

    // Tightening the rules never deletes what is now outside them.
    home.deployments_api()
        .delete("ok", &DeleteParams::default())
        .await
        .expect("delete ok");
    let tighter = "*=secret/it/{namespace}/allowed/";
    let run = home
        .cli(&["run", "-o", "json", "--allow-path", tighter])
        .await;
    run.assert_code(1);
    let c = change(&run, &format!("{own}/db"));
    assert_eq!(c["action"], "refused", "{run}");
    assert_eq!(c["error_type"], "outside_allowed_paths", "{run}");
    assert!(
        home.vault
            .kv2_read("secret", &home.rel("ok/db"))
            .await
            .is_some()
    );
    // Without the rule it is an orphan like any other.
    let run = home.cli(&["run", "-o", "json"]).await;
    assert_eq!(
        change(&run, &format!("{own}/db"))["action"],
        "delete",
        "{run}"
    );
}
