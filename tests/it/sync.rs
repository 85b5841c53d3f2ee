//! Syncing end to end, the built binary against the real stack: what each
//! annotation mode writes where, no-op runs, updates of exactly what
//! changed, conflicts and adoption, concurrent runs, exit codes, and one
//! Deployment's errors not stopping the others.
//!
//! Each test creates Secrets and annotated Deployments in its own namespace,
//! runs `vault-sync plan|run -n <ns>`, and checks Vault's content, the exit
//! codes, the JSON output, and, through the audit log, what was actually
//! sent to Vault. Every CLI output goes through the leak guard
//! (`TestNs::cli` calls `assert_no_leak`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::audit::{AuditEntries, audit_mark};
use crate::fixtures::{assert_marker, change, change_of, changes};
use crate::harness::annotation::{PATH, SECRETS};
use crate::harness::{CliOutput, PodRefs, TestNs};
use crate::vault::Kv2Secret;

// --- helpers ----------------------------------------------------------------

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn owner_of(ns: &TestNs, deployment: &str) -> String {
    format!("default/{}/{deployment}", ns.name)
}

/// Asserts `custom_metadata` carries vault-sync's marker for `deployment`.
fn assert_ours(md: &BTreeMap<String, String>, ns: &TestNs, deployment: &str) {
    assert_marker(md, &owner_of(ns, deployment), deployment);
}

// --- auto-discovery -----------------------------------------------------------

/// envFrom, env secretKeyRef, a secret volume and a projected volume: each
/// Secret is written whole to `<path>/<secret>`, once; then nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_discovery_creates_each_secret_then_is_a_no_op() {
    let ns = TestNs::new("auto").await;
    let base = ns.path("secret", "app");
    let fixtures: Vec<(&str, BTreeMap<String, String>)> = vec![
        (
            "env-sec",
            map(&[("ENV_A", &ns.value("env-a")), ("ENV_B", &ns.value("env-b"))]),
        ),
        (
            "key-sec",
            map(&[("user", &ns.value("user")), ("pass", &ns.value("pass"))]),
        ),
        ("vol-sec", map(&[("config.json", &ns.value("config"))])),
        ("proj-sec", map(&[("token", &ns.value("token"))])),
    ];
    for (name, data) in &fixtures {
        let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ns.secret(name, &pairs).await;
    }
    // An unreferenced Secret must not be written.
    ns.secret("unused", &[("x", &ns.value("unused"))]).await;
    ns.deployment(
        "web",
        &[(PATH, &base)],
        &PodRefs::new()
            .env_from("env-sec")
            .key_ref("key-sec", "pass")
            .volume("vol-sec")
            .projected("proj-sec"),
    )
    .await;

    // plan (table): changes pending.
    let plan = ns.cli(&["plan"]).await;
    plan.assert_code(2);
    assert!(
        plan.stdout.contains("Plan: 4 to create, 0 to update"),
        "{plan}"
    );
    for (name, _) in &fixtures {
        assert!(plan.stdout.contains(name), "{name} not listed:\n{plan}");
    }

    // plan (JSON): one create per Secret, key names only.
    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    let json = plan.json();
    assert_eq!(json["command"], "plan");
    assert_eq!(json["changes_pending"], true);
    assert_eq!(json["summary"]["create"], 4, "{plan}");
    assert_eq!(changes(&plan).len(), 4, "{plan}");
    for (name, data) in &fixtures {
        let c = change(&plan, &format!("{base}/{name}"));
        assert_eq!(c["action"], "create", "{c}");
        assert_eq!(c["namespace"], ns.name.as_str());
        assert_eq!(c["deployment"], "web");
        assert_eq!(c["cluster"], "default");
        assert_eq!(c["mount"], "secret/");
        assert_eq!(c["kv_version"], 2);
        let keys: Vec<String> = data.keys().cloned().collect();
        assert_eq!(strings(&c["keys"]["added"]), keys, "{c}");
    }

    // run: everything created.
    let mark = audit_mark();
    let run = ns.cli(&["run", "-o", "json"]).await;
    run.assert_code(0);
    assert_eq!(run.json()["command"], "run");
    for c in changes(&run) {
        assert_eq!(c["result"], "applied", "{c}");
    }
    let audit = mark.entries();
    let data_writes: Vec<_> = audit
        .writes(&ns.audit_needle())
        .into_iter()
        .filter(|(_, p)| p.starts_with("secret/data/"))
        .collect();
    assert_eq!(
        data_writes.len(),
        4,
        "one data write per path: {data_writes:?}"
    );

    for (name, data) in &fixtures {
        let got = ns
            .vault
            .kv2_read("secret", &ns.rel(&format!("app/{name}")))
            .await
            .unwrap_or_else(|| panic!("{base}/{name} not written"));
        assert_eq!(&got.data, data, "{name}: exactly the Secret's keys/values");
        assert_eq!(got.version, 1);
        assert_ours(&got.custom_metadata, &ns, "web");
        assert_eq!(
            got.custom_metadata
                .get("vault-sync.io/preserve-on-delete")
                .map(String::as_str),
            Some("false")
        );
    }
    // The index records every path it wrote, with its owner.
    let index = ns.index_text().await;
    for (name, _) in &fixtures {
        assert!(
            index.contains(&format!("{base}/{name}")),
            "{name} not in the index: {index}"
        );
    }
    assert!(index.contains(&owner_of(&ns, "web")), "{index}");
    let mut written = ns
        .vault
        .list_recursive("secret/metadata", &ns.rel("app"))
        .await;
    written.sort();
    let mut expected: Vec<String> = fixtures
        .iter()
        .map(|(n, _)| ns.rel(&format!("app/{n}")))
        .collect();
    expected.sort();
    assert_eq!(written, expected, "nothing else written");

    // Second plan: nothing to do.
    let plan = ns.cli(&["plan"]).await;
    plan.assert_code(0);
    assert!(plan.stdout.contains("No changes"), "{plan}");
    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(0);
    assert_eq!(plan.json()["summary"]["unchanged"], 4, "{plan}");
    assert_eq!(plan.json()["changes_pending"], false);

    // Second run: reads, but zero writes.
    let mark = audit_mark();
    let run = ns.cli(&["run", "-vv"]).await;
    run.assert_code(0);
    let audit = mark.entries();
    let needle = ns.audit_needle();
    assert_eq!(
        audit.writes(&needle),
        Vec::<(String, String)>::new(),
        "a no-op run writes nothing"
    );
    assert!(
        audit.ops(&needle).get("read").copied().unwrap_or(0) >= 4,
        "the no-op run did read each path: {:?}",
        audit.ops(&needle)
    );
    // Nor anywhere else (index included): every request of its token.
    assert!(
        audit.requests_by(&ns.audit_client()) > 0,
        "token seen in the audit log"
    );
    assert_eq!(
        audit.writes_by(&ns.audit_client()),
        Vec::<(String, String)>::new(),
        "a no-op run writes nothing anywhere"
    );
}

// --- custom mode --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_mode_merges_selected_keys_into_one_path() {
    let ns = TestNs::new("custom").await;
    let path = ns.path("secret", "custom");
    let password = ns.value("password");
    let token = ns.value("token");
    ns.secret(
        "db",
        &[("password", &password), ("user", &ns.value("db-user"))],
    )
    .await;
    ns.secret("api", &[("token", &token), ("other", &ns.value("other"))])
        .await;
    ns.deployment(
        "svc",
        &[
            (PATH, &path),
            (
                SECRETS,
                r#"[{"name":"db","keys":["password"],"prefix":"DB_"},{"name":"api","keys":["token"]}]"#,
            ),
        ],
        &PodRefs::new().env_from("db"),
    )
    .await;

    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    assert_eq!(changes(&plan).len(), 1, "{plan}");
    let c = change(&plan, &path);
    assert_eq!(c["action"], "create");
    assert_eq!(strings(&c["keys"]["added"]), ["DB_password", "token"]);

    ns.cli(&["run"]).await.assert_code(0);
    let got = ns
        .vault
        .kv2_read("secret", &ns.rel("custom"))
        .await
        .expect("custom path written");
    assert_eq!(
        got.data,
        map(&[("DB_password", &password), ("token", &token)])
    );
    assert_ours(&got.custom_metadata, &ns, "svc");
    // Custom mode writes only the one path, not <path>/<secret>.
    assert_eq!(
        ns.vault
            .list_recursive("secret/metadata", &ns.rel(""))
            .await,
        vec![ns.rel("custom")]
    );

    ns.cli(&["plan"]).await.assert_code(0);
}

// --- path spellings and mounts ---------------------------------------------------

/// `secret/data/x` and `secret/x` are the same KV v2 secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_spelling_lands_at_the_same_place() {
    let ns = TestNs::new("spelling").await;
    let value = ns.value("spelled");
    ns.secret("db", &[("password", &value)]).await;
    let data_spelling = format!("secret/data/{}", ns.rel("spelled"));
    let plain_spelling = ns.path("secret", "spelled");
    ns.deployment(
        "api",
        &[(PATH, &data_spelling)],
        &PodRefs::new().env_from("db"),
    )
    .await;

    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    // Shown in the canonical spelling.
    let c = change(&plan, &format!("{plain_spelling}/db"));
    assert_eq!(c["action"], "create");

    ns.cli(&["run"]).await.assert_code(0);
    let got = ns
        .vault
        .kv2_read("secret", &ns.rel("spelled/db"))
        .await
        .expect("written at secret/data/it/<ns>/spelled/db");
    assert_eq!(got.data, map(&[("password", &value)]));
    assert_ours(&got.custom_metadata, &ns, "api");
    // No "data/" inside the mount.
    assert!(
        ns.vault
            .kv2_read("secret", &format!("data/{}", ns.rel("spelled/db")))
            .await
            .is_none()
    );

    // Respelled without data/: the same location, nothing to do.
    ns.annotate("api", PATH, &plain_spelling).await;
    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(0);
    assert_eq!(
        change(&plan, &format!("{plain_spelling}/db"))["action"],
        "unchanged"
    );
    let mark = audit_mark();
    ns.cli(&["run"]).await.assert_code(0);
    assert_eq!(
        mark.entries().writes_by(&ns.audit_client()),
        Vec::<(String, String)>::new()
    );
}

/// Another KV v2 mount than secret/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_mount_kv2_path() {
    let ns = TestNs::new("team").await;
    let value = ns.value("team");
    ns.secret("db", &[("password", &value)]).await;
    let base = ns.path("team", "app");
    ns.deployment("api", &[(PATH, &base)], &PodRefs::new().volume("db"))
        .await;

    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    let c = change(&plan, &format!("{base}/db"));
    assert_eq!(c["mount"], "team/");
    assert_eq!(c["kv_version"], 2);

    ns.cli(&["run"]).await.assert_code(0);
    let got = ns
        .vault
        .kv2_read("team", &ns.rel("app/db"))
        .await
        .expect("team path written");
    assert_eq!(got.data, map(&[("password", &value)]));
    assert_ours(&got.custom_metadata, &ns, "api");
    assert!(
        ns.vault
            .kv2_read("secret", &ns.rel("app/db"))
            .await
            .is_none(),
        "nothing on secret/"
    );
    ns.cli(&["plan"]).await.assert_code(0);
}

/// A KV v1 mount: plain write, no metadata, no CAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv1_mount_path_is_written() {
    let ns = TestNs::new("kv1").await;
    let user = ns.value("kv1-user");
    let pass = ns.value("kv1-pass");
    ns.secret("db", &[("user", &user), ("pass", &pass)]).await;
    let base = ns.path("kv1", "app");
    ns.deployment("api", &[(PATH, &base)], &PodRefs::new().env_from("db"))
        .await;

    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    let c = change(&plan, &format!("{base}/db"));
    assert_eq!(c["action"], "create");
    assert_eq!(c["mount"], "kv1/");
    assert_eq!(c["kv_version"], 1);

    let mark = audit_mark();
    ns.cli(&["run"]).await.assert_code(0);
    let writes = mark.entries().writes(&ns.audit_needle());
    assert_eq!(
        writes,
        vec![("create".to_owned(), format!("kv1/{}", ns.rel("app/db")))],
        "one plain write, no metadata call"
    );
    let got = ns
        .vault
        .kv1_read("kv1", &ns.rel("app/db"))
        .await
        .expect("kv1 path written");
    assert_eq!(got, map(&[("user", &user), ("pass", &pass)]));
}

/// `plan` twice on a KV v1 path vault-sync itself wrote should be a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv1_second_plan_is_a_no_op() {
    let ns = TestNs::new("kv1again").await;
    ns.secret("db", &[("pass", &ns.value("kv1-again"))]).await;
    let base = ns.path("kv1", "app");
    ns.deployment("api", &[(PATH, &base)], &PodRefs::new().env_from("db"))
        .await;
    ns.cli(&["run"]).await.assert_code(0);
    let plan = ns.cli(&["plan", "-o", "json"]).await;
    assert_eq!(
        change(&plan, &format!("{base}/db"))["action"],
        "unchanged",
        "{plan}"
    );
    plan.assert_code(0);
}

// --- updates ------------------------------------------------------------------------

/// One Secret key changes: exactly that path gets one new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_key_updates_exactly_one_path() {
    let ns = TestNs::new("update").await;
    let base = ns.path("secret", "app");
    for name in ["alpha", "beta", "gamma"] {
        ns.secret(
            name,
            &[
                ("k1", &ns.value(&format!("{name}-1"))),
                ("k2", &ns.value(&format!("{name}-2"))),
            ],
        )
        .await;
    }
    ns.deployment(
        "api",
        &[(PATH, &base)],
        &PodRefs::new()
            .env_from("alpha")
            .env_from("beta")
            .volume("gamma"),
    )
    .await;
    ns.cli(&["run"]).await.assert_code(0);
    let before_alpha = ns.vault.kv2_read("secret", &ns.rel("app/alpha")).await;
    let before_gamma = ns.vault.kv2_read("secret", &ns.rel("app/gamma")).await;

    let new_value = ns.value("beta-2-new");
    ns.patch_secret("beta", &[("k2", &new_value)]).await;

    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    let json = plan.json();
    assert_eq!(json["summary"]["update"], 1, "{plan}");
    assert_eq!(json["summary"]["unchanged"], 2, "{plan}");
    let c = change(&plan, &format!("{base}/beta"));
    assert_eq!(c["action"], "update");
    assert_eq!(strings(&c["keys"]["changed"]), ["k2"]);
    assert!(strings(&c["keys"]["added"]).is_empty(), "{c}");
    assert!(strings(&c["keys"]["removed"]).is_empty(), "{c}");
    assert_eq!(c["metadata_only"], false);
    for other in ["alpha", "gamma"] {
        assert_eq!(
            change(&plan, &format!("{base}/{other}"))["action"],
            "unchanged"
        );
    }

    let mark = audit_mark();
    let run = ns.cli(&["run", "-o", "json"]).await;
    run.assert_code(0);
    assert_eq!(change(&run, &format!("{base}/beta"))["result"], "applied");
    let writes = mark.entries().writes_by(&ns.audit_client());
    assert_eq!(
        writes,
        vec![(
            "update".to_owned(),
            format!("secret/data/{}", ns.rel("app/beta"))
        )],
        "exactly one data write; no metadata write (marker already right), no index write"
    );

    let beta = ns
        .vault
        .kv2_read("secret", &ns.rel("app/beta"))
        .await
        .expect("beta");
    assert_eq!(beta.version, 2);
    assert_eq!(beta.data.get("k2"), Some(&new_value));
    assert_ours(&beta.custom_metadata, &ns, "api");
    assert_eq!(
        ns.vault.kv2_read("secret", &ns.rel("app/alpha")).await,
        before_alpha
    );
    assert_eq!(
        ns.vault.kv2_read("secret", &ns.rel("app/gamma")).await,
        before_gamma
    );
    ns.cli(&["plan"]).await.assert_code(0);
}

// --- ownership ----------------------------------------------------------------------

/// Paths someone else wrote (one without any custom_metadata, one with the
/// user's own keys but no marker) are conflicts and left alone; `--adopt`
/// takes them, keeping the user's own metadata keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_path_is_a_conflict_until_adopted() {
    let ns = TestNs::new("foreign").await;
    let base = ns.path("secret", "app");
    let plain_rel = ns.rel("app/plain");
    let tagged_rel = ns.rel("app/tagged");
    ns.vault
        .kv2_write(
            "secret",
            &plain_rel,
            &[("password", &ns.value("foreign-1"))],
        )
        .await;
    ns.vault
        .kv2_write(
            "secret",
            &tagged_rel,
            &[("password", &ns.value("foreign-2"))],
        )
        .await;
    ns.vault
        .kv2_set_custom_metadata("secret", &tagged_rel, &[("team", "payments")])
        .await;
    let plain_before = ns
        .vault
        .kv2_read("secret", &plain_rel)
        .await
        .expect("pre-written");
    assert!(plain_before.custom_metadata.is_empty());
    let tagged_before = ns
        .vault
        .kv2_read("secret", &tagged_rel)
        .await
        .expect("pre-written");

    let plain_desired = ns.value("desired-1");
    let tagged_desired = ns.value("desired-2");
    ns.secret("plain", &[("password", &plain_desired)]).await;
    ns.secret("tagged", &[("password", &tagged_desired)]).await;
    ns.deployment(
        "api",
        &[(PATH, &base)],
        &PodRefs::new().env_from("plain").volume("tagged"),
    )
    .await;

    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(1);
    for name in ["plain", "tagged"] {
        let c = change(&plan, &format!("{base}/{name}"));
        assert_eq!(c["action"], "conflict", "{c}");
        assert!(
            c["reason"].as_str().unwrap_or_default().contains("--adopt"),
            "{c}"
        );
    }
    assert_eq!(plan.json()["summary"]["conflict"], 2);
    let table = ns.cli(&["plan"]).await;
    table.assert_code(1);
    assert!(table.stdout.contains("conflict"), "{table}");

    let mark = audit_mark();
    ns.cli(&["run"]).await.assert_code(1);
    assert_eq!(
        mark.entries().writes_by(&ns.audit_client()),
        Vec::<(String, String)>::new(),
        "a conflict writes nothing"
    );
    assert_eq!(
        ns.vault.kv2_read("secret", &plain_rel).await.as_ref(),
        Some(&plain_before),
        "conflicting path untouched"
    );
    assert_eq!(
        ns.vault.kv2_read("secret", &tagged_rel).await.as_ref(),
        Some(&tagged_before),
        "conflicting path untouched"
    );

    let run = ns.cli(&["run", "--adopt", "-o", "json"]).await;
    run.assert_code(0);
    for name in ["plain", "tagged"] {
        let c = change(&run, &format!("{base}/{name}"));
        assert_eq!(c["action"], "update", "{c}");
        assert_eq!(c["result"], "applied", "{c}");
        assert_eq!(strings(&c["keys"]["changed"]), ["password"]);
    }

    let plain = ns
        .vault
        .kv2_read("secret", &plain_rel)
        .await
        .expect("adopted");
    assert_eq!(plain.data, map(&[("password", &plain_desired)]));
    assert_eq!(plain.version, 2);
    assert_ours(&plain.custom_metadata, &ns, "api");
    let tagged = ns
        .vault
        .kv2_read("secret", &tagged_rel)
        .await
        .expect("adopted");
    assert_eq!(tagged.data, map(&[("password", &tagged_desired)]));
    assert_eq!(tagged.version, 2);
    assert_ours(&tagged.custom_metadata, &ns, "api");
    assert_eq!(
        tagged.custom_metadata.get("team").map(String::as_str),
        Some("payments"),
        "user's own custom_metadata kept"
    );
    // Adopted: from now on a plain run is a no-op.
    ns.cli(&["plan"]).await.assert_code(0);
}

/// A path another tool manages is never taken, not even with `--adopt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_managers_path_is_never_adopted() {
    let ns = TestNs::new("eso").await;
    let rel = ns.rel("app/db");
    ns.vault
        .kv2_write("secret", &rel, &[("password", &ns.value("eso"))])
        .await;
    ns.vault
        .kv2_set_custom_metadata("secret", &rel, &[("managed-by", "external-secrets")])
        .await;
    let before = ns.vault.kv2_read("secret", &rel).await;
    ns.secret("db", &[("password", &ns.value("mine"))]).await;
    ns.deployment(
        "api",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("db"),
    )
    .await;

    let mark = audit_mark();
    let run = ns.cli(&["run", "--adopt", "-o", "json"]).await;
    run.assert_code(1);
    let c = change_of(&run, "api");
    assert_eq!(c["action"], "conflict");
    assert!(
        c["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("external-secrets"),
        "{c}"
    );
    assert_eq!(
        mark.entries().writes_by(&ns.audit_client()),
        Vec::<(String, String)>::new()
    );
    assert_eq!(ns.vault.kv2_read("secret", &rel).await, before);
}

// --- concurrency ------------------------------------------------------------------

/// A Deployment referencing `n` Secrets; returns each path's desired data.
async fn race_fixture(ns: &TestNs, n: usize) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut expected = BTreeMap::new();
    let mut refs = PodRefs::new();
    for i in 0..n {
        let name = format!("s{i:02}");
        let data = map(&[("v", &ns.value(&name))]);
        ns.secret(&name, &[("v", &data["v"])]).await;
        refs = refs.env_from(&name);
        expected.insert(name, data);
    }
    ns.deployment("api", &[(PATH, &ns.path("secret", "app"))], &refs)
        .await;
    expected
}

/// Runs `run -o json` twice at the same time; checks each outcome is one
/// that keeps data safe and returns both outputs.
async fn two_concurrent_runs(ns: &TestNs) -> (CliOutput, CliOutput) {
    let (a, b) = tokio::join!(
        ns.cli(&["run", "-o", "json"]),
        ns.cli(&["run", "-o", "json"])
    );
    for out in [&a, &b] {
        assert!(out.code == 0 || out.code == 1, "{out}");
        for c in changes(out) {
            let ok = c["action"] == "unchanged"
                || c["result"] == "applied"
                // lost the create race: check-and-set refused the write
                || (c["result"] == "failed" && c["error_type"] == "cas_mismatch")
                // saw the winner's path before its ownership marker
                || c["action"] == "conflict"
                // the run stopped before writing (lost the index race)
                || (c["result"].is_null() && out.code == 1);
            assert!(ok, "unexpected outcome {c}\n{out}");
        }
        for e in out.json()["errors"].as_array().into_iter().flatten() {
            assert_eq!(
                e["error_type"], "cas_mismatch",
                "unexpected run error {e}\n{out}"
            );
        }
    }
    (a, b)
}

/// Every path holds the desired content in exactly one version (one data
/// write accepted), and every data write beyond that was refused by
/// check-and-set.
async fn assert_written_once(
    ns: &TestNs,
    expected: &BTreeMap<String, BTreeMap<String, String>>,
    audit: &AuditEntries,
    outputs: [&CliOutput; 2],
) {
    // Each path is reported applied by at least one run. (A run that loses
    // a create race to a twin which wrote the same content reports it
    // applied too: the desired state is reached.)
    let base = ns.path("secret", "app");
    for name in expected.keys() {
        let path = format!("{base}/{name}");
        let applied = outputs
            .iter()
            .flat_map(|o| changes(o))
            .filter(|c| c["path"] == path.as_str() && c["result"] == "applied")
            .count();
        assert!(
            (1..=2).contains(&applied),
            "{path} applied {applied} times\n{}\n{}",
            outputs[0],
            outputs[1]
        );
    }
    for (name, data) in expected {
        let rel = ns.rel(&format!("app/{name}"));
        let got = ns
            .vault
            .kv2_read("secret", &rel)
            .await
            .unwrap_or_else(|| panic!("{name} not written"));
        assert_eq!(&got.data, data, "{name}");
        assert_eq!(got.version, 1, "{name}: never overwritten");
        let md = ns
            .vault
            .kv2_metadata("secret", &rel)
            .await
            .expect("metadata");
        assert_eq!(md["current_version"], 1, "{name}: {md}");
        assert_eq!(
            md["versions"].as_object().map(|v| v.len()),
            Some(1),
            "{name}: one version only: {md}"
        );
    }
    let needle = ns.audit_needle();
    let data_writes = audit
        .writes(&needle)
        .into_iter()
        .filter(|(_, p)| p.starts_with("secret/data/"))
        .count();
    let refusals = audit
        .failed_writes(&needle)
        .into_iter()
        .filter(|(_, p)| p.starts_with("secret/data/"))
        .count();
    assert!(data_writes >= expected.len(), "{data_writes} data writes");
    assert_eq!(
        data_writes - expected.len(),
        refusals,
        "every extra data write was refused (check-and-set)"
    );
    eprintln!(
        "{}: exit codes {} and {}, {data_writes} data writes for {} paths, {refusals} refused by check-and-set",
        ns.name,
        outputs[0].code,
        outputs[1].code,
        expected.len()
    );
}

/// Deletes every version and the metadata of each path (the index still
/// lists them), so that the next runs all create, without touching the index.
async fn forget_paths(ns: &TestNs, expected: &BTreeMap<String, BTreeMap<String, String>>) {
    for name in expected.keys() {
        let status = ns
            .vault
            .delete(&format!(
                "secret/metadata/{}",
                ns.rel(&format!("app/{name}"))
            ))
            .await;
        assert_eq!(status, 204);
    }
}

/// Two `run`s at once: check-and-set (on each path and on the index) keeps
/// either from overwriting the other. Each path is created exactly once with
/// the desired content, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_never_overwrite_content() {
    let ns = TestNs::new("race").await;
    let expected = race_fixture(&ns, 12).await;

    // Fresh: the runs race on the index too.
    let mark = audit_mark();
    let (a, b) = two_concurrent_runs(&ns).await;
    assert_written_once(&ns, &expected, &mark.entries(), [&a, &b]).await;

    // The index already lists every path and the paths are gone: both runs
    // skip the index write and race on each path's create.
    forget_paths(&ns, &expected).await;
    let mark = audit_mark();
    let (a, b) = two_concurrent_runs(&ns).await;
    assert_written_once(&ns, &expected, &mark.entries(), [&a, &b]).await;
}

/// After a lost create race, the path still carries the winner's ownership
/// marker, so the next run is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_create_race_keeps_the_ownership_marker() {
    let ns = TestNs::new("racemark").await;
    let expected = race_fixture(&ns, 12).await;
    ns.cli(&["run"]).await.assert_code(0);
    forget_paths(&ns, &expected).await;

    let mark = audit_mark();
    let (a, b) = two_concurrent_runs(&ns).await;
    let audit = mark.entries();
    assert_written_once(&ns, &expected, &audit, [&a, &b]).await;
    for name in expected.keys() {
        let got = ns
            .vault
            .kv2_read("secret", &ns.rel(&format!("app/{name}")))
            .await
            .expect("written");
        assert_ours(&got.custom_metadata, &ns, "api");
    }
    let mark = audit_mark();
    let run = ns.cli(&["run", "-o", "json"]).await;
    run.assert_code(0);
    assert_eq!(run.json()["summary"]["unchanged"], expected.len(), "{run}");
    assert!(mark.entries().writes_by(&ns.audit_client()).is_empty());
}

/// Two namespaces whose Deployments want the same paths, synced by two runs
/// (one per namespace, as two CronJobs would) at the same time.
struct OwnersRace {
    ns1: TestNs,
    ns2: TestNs,
    /// Annotation spelling of each contested path (under ns1's prefix).
    paths: Vec<String>,
    /// Namespace → the value its Deployments want written.
    wanted: BTreeMap<String, String>,
    runs: [CliOutput; 2],
    audit: AuditEntries,
}

impl OwnersRace {
    async fn start(label: &str) -> Self {
        let (label1, label2) = (format!("{label}1"), format!("{label}2"));
        let (ns1, ns2) = tokio::join!(TestNs::new(&label1), TestNs::new(&label2));
        let paths: Vec<String> = (0..8)
            .map(|i| ns1.path("secret", &format!("shared-{i}")))
            .collect();
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for ns in [&ns1, &ns2] {
            let value = ns.value("shared");
            ns.secret("db", &[("password", &value)]).await;
            for (i, path) in paths.iter().enumerate() {
                ns.deployment(
                    &format!("api-{i}"),
                    &[
                        (PATH, path),
                        (SECRETS, r#"[{"name":"db","keys":["password"]}]"#),
                    ],
                    &PodRefs::new(),
                )
                .await;
            }
            wanted.insert(ns.name.clone(), value);
        }
        let mark = audit_mark();
        let (a, b) = tokio::join!(
            ns1.cli(&["run", "-o", "json"]),
            ns2.cli(&["run", "-o", "json"])
        );
        // Neither run may show the other namespace's value either.
        let all: Vec<String> = ns1.values().into_iter().chain(ns2.values()).collect();
        crate::harness::assert_no_leak(&[&a.stdout, &a.stderr, &b.stdout, &b.stderr], &all);
        assert!(a.code == 0 || a.code == 1, "{a}");
        assert!(b.code == 0 || b.code == 1, "{b}");
        Self {
            audit: mark.entries(),
            ns1,
            ns2,
            paths,
            wanted,
            runs: [a, b],
        }
    }

    /// Path i as read now, and the namespace whose content it holds.
    async fn read(&self, i: usize) -> (Kv2Secret, String) {
        let rel = self.ns1.rel(&format!("shared-{i}"));
        let got = self
            .ns1
            .vault
            .kv2_read("secret", &rel)
            .await
            .expect("written");
        let winner = self
            .wanted
            .iter()
            .find(|(_, v)| got.data.get("password") == Some(*v))
            .map(|(ns, _)| ns.clone())
            .unwrap_or_else(|| panic!("{}: content of neither owner", self.paths[i]));
        (got, winner)
    }
}

/// Racing owners: each path ends with one owner's content written once, and
/// a marker, if any, never names the owner whose content is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_owners_never_mark_each_others_content() {
    let race = OwnersRace::start("owner").await;
    let (mut unmarked, mut refused_total) = (0, 0);
    for (i, path) in race.paths.iter().enumerate() {
        let (got, winner) = race.read(i).await;
        assert_eq!(got.version, 1, "{path}: written once");
        match got.custom_metadata.get("vault-sync.io/owner") {
            Some(owner) => assert_eq!(
                owner,
                &format!("default/{winner}/api-{i}"),
                "{path}: the marker names the owner whose content is there"
            ),
            None => unmarked += 1,
        }
        let needle = format!("secret/data/{}", race.ns1.rel(&format!("shared-{i}")));
        let writes = race.audit.writes(&needle).len();
        let refused = race.audit.failed_writes(&needle).len();
        refused_total += refused;
        assert_eq!(writes - refused, 1, "{path}: one accepted data write");
    }
    eprintln!(
        "owners race: exit codes {} and {}, {refused_total} writes refused, {unmarked} of {} paths left unmarked",
        race.runs[0].code,
        race.runs[1].code,
        race.paths.len()
    );
}

/// Racing owners: the winner of each path keeps its ownership marker, so its
/// next run is a no-op rather than a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_owners_winner_keeps_its_marker() {
    let race = OwnersRace::start("winner").await;
    for (i, path) in race.paths.iter().enumerate() {
        let (got, winner) = race.read(i).await;
        assert_eq!(
            got.custom_metadata.get("vault-sync.io/owner"),
            Some(&format!("default/{winner}/api-{i}")),
            "{path}: the winner's marker is kept"
        );
        assert_eq!(
            got.custom_metadata.get("managed-by").map(String::as_str),
            Some("vault-sync")
        );
    }
    // Each namespace's winning Deployments are unchanged on its next plan.
    for ns in [&race.ns1, &race.ns2] {
        let plan = ns.cli(&["plan", "-o", "json"]).await;
        for c in changes(&plan) {
            let i: usize = c["deployment"]
                .as_str()
                .and_then(|d| d.strip_prefix("api-"))
                .and_then(|i| i.parse().ok())
                .expect("api-<i>");
            let (_, winner) = race.read(i).await;
            if winner == ns.name {
                assert_eq!(c["action"], "unchanged", "winner's path: {c}\n{plan}");
            }
        }
    }
}

// --- exit codes ------------------------------------------------------------------

/// plan: 0 no changes, 2 changes pending, 1 errors; run: 0 applied, 1 failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_the_documented_contract() {
    let ns = TestNs::new("exit").await;

    // Nothing annotated.
    let plan = ns.cli(&["plan"]).await;
    plan.assert_code(0);
    assert!(plan.stdout.contains("No changes"), "{plan}");
    ns.cli(&["run"]).await.assert_code(0);
    // An unannotated Deployment is ignored.
    ns.secret("plain", &[("k", &ns.value("plain"))]).await;
    ns.deployment("plain", &[], &PodRefs::new().env_from("plain"))
        .await;
    ns.cli(&["plan"]).await.assert_code(0);

    // Pending changes.
    ns.secret("db", &[("k", &ns.value("db"))]).await;
    ns.deployment(
        "good",
        &[(PATH, &ns.path("secret", "good"))],
        &PodRefs::new().env_from("db"),
    )
    .await;
    ns.cli(&["plan"]).await.assert_code(2);
    ns.cli(&["plan", "-o", "json"]).await.assert_code(2);
    ns.cli(&["run"]).await.assert_code(0);
    ns.cli(&["plan"]).await.assert_code(0);
    ns.cli(&["run"]).await.assert_code(0);

    // An error anywhere: 1, for plan and run.
    ns.deployment(
        "broken",
        &[(PATH, &ns.path("secret", "broken"))],
        &PodRefs::new().env_from("missing"),
    )
    .await;
    ns.cli(&["plan"]).await.assert_code(1);
    ns.cli(&["run"]).await.assert_code(1);

    // A fatal error (Vault unreachable) is 1 too, with a clear message.
    // (--vault-timeout bounds the retries of each request.)
    let out = ns
        .cli_env(
            &["plan", "--vault-timeout", "2s"],
            &[("VAULT_ADDR", "http://127.0.0.1:9")],
        )
        .await;
    out.assert_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("cannot reach Vault at http://127.0.0.1:9"),
        "{out}"
    );
}

/// A command-line mistake is an error, not "changes pending".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_error_is_not_changes_pending() {
    let ns = TestNs::new("usage").await;
    let out = ns.cli(&["plan", "--no-such-flag"]).await;
    assert_ne!(out.code, 2, "{out}");
    out.assert_code(1);
}

// --- errors are per Deployment ---------------------------------------------------

/// A missing Secret, a missing key and bad annotation JSON each fail their
/// own Deployment; the good one is still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_do_not_stop_other_deployments() {
    let ns = TestNs::new("errors").await;
    let good_value = ns.value("good");
    ns.secret("good-sec", &[("k", &good_value)]).await;
    ns.deployment(
        "good",
        &[(PATH, &ns.path("secret", "good"))],
        &PodRefs::new().env_from("good-sec"),
    )
    .await;
    ns.deployment(
        "missing-secret",
        &[(PATH, &ns.path("secret", "missing"))],
        &PodRefs::new().env_from("does-not-exist"),
    )
    .await;
    ns.secret(
        "partial",
        &[
            ("alpha-key", &ns.value("alpha")),
            ("beta-key", &ns.value("beta")),
        ],
    )
    .await;
    ns.deployment(
        "missing-key",
        &[
            (PATH, &ns.path("secret", "missing-key")),
            (SECRETS, r#"[{"name":"partial","keys":["gamma-key"]}]"#),
        ],
        &PodRefs::new(),
    )
    .await;
    ns.deployment(
        "bad-json",
        &[
            (PATH, &ns.path("secret", "bad-json")),
            (SECRETS, r#"[{"name": "partial", "keys": ["alpha-key"]"#),
        ],
        &PodRefs::new(),
    )
    .await;

    // Human output names the missing key and the keys that exist.
    let plan = ns.cli(&["plan"]).await;
    plan.assert_code(1);
    let human = format!("{}{}", plan.stdout, plan.stderr);
    for word in ["gamma-key", "alpha-key", "beta-key", "does-not-exist"] {
        assert!(human.contains(word), "{word} not mentioned:\n{plan}");
    }

    let run = ns.cli(&["run", "-o", "json"]).await;
    run.assert_code(1);
    let json = run.json();
    assert_eq!(json["summary"]["create"], 1, "{run}");
    assert_eq!(json["summary"]["error"], 3, "{run}");

    let good = change_of(&run, "good");
    assert_eq!(good["action"], "create");
    assert_eq!(good["result"], "applied");
    let got = ns
        .vault
        .kv2_read("secret", &ns.rel("good/good-sec"))
        .await
        .expect("good Deployment written despite the others");
    assert_eq!(got.data, map(&[("k", &good_value)]));

    let missing = change_of(&run, "missing-secret");
    assert_eq!(missing["action"], "error");
    assert_eq!(missing["error_type"], "secret_not_found", "{missing}");
    assert_eq!(missing["secret"], "does-not-exist");

    let key = change_of(&run, "missing-key");
    assert_eq!(key["action"], "error");
    assert_eq!(key["error_type"], "secret_key_missing", "{key}");
    assert_eq!(key["secret"], "partial");
    let message = key["message"].as_str().unwrap_or_default();
    for word in ["gamma-key", "alpha-key", "beta-key"] {
        assert!(message.contains(word), "{word} not in {message:?}");
    }

    let bad = change_of(&run, "bad-json");
    assert_eq!(bad["action"], "error");
    assert_eq!(bad["error_type"], "invalid_secrets_json", "{bad}");

    // Nothing written for the failed Deployments.
    assert_eq!(
        ns.vault
            .list_recursive("secret/metadata", &ns.rel(""))
            .await,
        vec![ns.rel("good/good-sec")]
    );
}
