//! Orphans end to end: paths vault-sync wrote that nothing wants any more.
//!
//! Isolation: every test has its own namespace (`TestNs`) *and* its own
//! `--cluster-name` (the namespace name, a DNS label), so its paths land
//! under `secret/clusters/<cluster>/…` and its index is its own KV v2
//! secret `secret/vault-sync/index/<cluster>` (`--index-mount secret` is
//! passed explicitly, overriding the harness's per-test index mount, so the
//! index lives where the design says). Each CLI call also gets `-n <ns>`.
//!
//! Counting Vault requests (audit log): every CLI run uses the test's own
//! token ([`TestNs::cli_token`], display name `token-<ns>`), which nothing
//! else uses, so the entries of one run are exactly the audit *request*
//! entries written after a mark whose `auth.display_name` is that token's.
//! Parallel tests write to the same audit log with other tokens and are
//! filtered out. As a cross-check the per-path subset is counted too: paths
//! containing `clusters/<cluster>/` (this test's secrets) or
//! `vault-sync/index/<cluster>` (its index); the rest of the run's requests
//! are `sys/internal/ui/mounts/…` lookups, which name the annotation's path
//! or the index mount, not the cluster prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::audit::{AuditEntries, AuditEntry, audit_mark, only_deletes};
use crate::fixtures::{actions, change, changes, restricted_kubeconfig};
use crate::harness::annotation::{PATH, PRESERVE, SECRETS};
use crate::harness::{CliOutput, PodRefs, TestNs, block_on_own_runtime};
use crate::vault::{INDEX_FORMAT, Kv2Secret, VaultHttp, index_chunk, index_lines};

/// The KV v2 mount every test here writes to (and keeps its index in).
const MOUNT: &str = "secret";

// --- one test's world ----------------------------------------------------------

/// A namespace plus a cluster name of its own.
struct Case {
    ns: TestNs,
    cluster: String,
    /// Clean `secret/clusters/<cluster>/` and the index on drop (false for a
    /// second namespace that shares another case's cluster).
    owns_cluster: bool,
    /// Vault policies this case created (deleted on drop).
    policies: std::sync::Mutex<Vec<String>>,
}

/// A DNS label from a namespace name: lowercase letters, digits and '-'.
fn cluster_name(ns: &str) -> String {
    let s: String = ns
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    s.trim_matches('-').to_owned()
}

impl Case {
    async fn new(label: &str) -> Self {
        let ns = TestNs::new(label).await;
        let cluster = cluster_name(&ns.name);
        Self {
            ns,
            cluster,
            owns_cluster: true,
            policies: Default::default(),
        }
    }

    /// Another namespace in the same cluster (same index, same prefix).
    async fn sibling(&self, label: &str) -> Self {
        Self {
            ns: TestNs::new(label).await,
            cluster: self.cluster.clone(),
            owns_cluster: false,
            policies: Default::default(),
        }
    }

    /// `vault-sync <args> --cluster-name <c> --index-mount secret -n <ns>`,
    /// leak-checked by the harness.
    async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_env(args, &[]).await
    }

    async fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--cluster-name", &self.cluster, "--index-mount", MOUNT]);
        self.ns.cli_env(&full, env).await
    }

    /// `run -o json` with a token of `policy` (HCL) only, plus `default`.
    /// The token is leak-checked as well.
    async fn run_with_policy(&self, label: &str, policy: &str) -> CliOutput {
        self.run_with_policy_args(label, policy, &[]).await
    }

    /// [`Case::run_with_policy`] with more arguments.
    async fn run_with_policy_args(&self, label: &str, policy: &str, args: &[&str]) -> CliOutput {
        let name = format!("{}-{label}", self.cluster);
        let vault = &self.ns.vault;
        vault.write_policy(&name, policy).await;
        self.policies.lock().expect("policies").push(name.clone());
        let (token, _) = vault
            .create_token(&json!({"policies": [name], "display_name": name, "ttl": "10m"}))
            .await;
        let mut full = vec!["run", "-o", "json"];
        full.extend_from_slice(args);
        let out = self.cli_env(&full, &[("VAULT_TOKEN", &token)]).await;
        crate::harness::assert_no_leak(&[&out.stdout, &out.stderr], &[&token]);
        let _ = vault
            .post("auth/token/revoke", &json!({ "token": token }))
            .await;
        out
    }

    /// `<cmd> -o json <args>`.
    async fn json(&self, cmd: &str, args: &[&str]) -> CliOutput {
        let mut full = vec![cmd, "-o", "json"];
        full.extend_from_slice(args);
        self.cli(&full).await
    }

    /// Path inside the mount: `clusters/<c>/<rest>`.
    fn rel(&self, rest: &str) -> String {
        format!("clusters/{}/{rest}", self.cluster)
    }

    /// Display path, as the plan and the index spell it.
    fn display(&self, rest: &str) -> String {
        format!("{MOUNT}/{}", self.rel(rest))
    }

    fn owner(&self, deployment: &str) -> String {
        format!("{}/{}/{deployment}", self.cluster, self.ns.name)
    }

    fn index_rel(&self) -> String {
        format!("vault-sync/index/{}", self.cluster)
    }

    /// The write request (operation, API path) of the soft delete of `rest`.
    fn soft_delete_write(&self, rest: &str) -> (String, String) {
        (
            "delete".to_owned(),
            format!("secret/data/{}", self.rel(rest)),
        )
    }

    /// The write request (operation, API path) of an index update.
    fn index_write(&self) -> (String, String) {
        (
            "update".to_owned(),
            format!("secret/data/{}", self.index_rel()),
        )
    }

    /// The index (display path → entry JSON); empty if there is none.
    /// Stored as `format` plus `entries-NNNN` chunks of JSON lines, each
    /// line carrying its display path.
    async fn index(&self) -> BTreeMap<String, String> {
        let data = self
            .ns
            .vault
            .kv2_read(MOUNT, &self.index_rel())
            .await
            .map(|s| s.data)
            .unwrap_or_default();
        assert!(
            data.is_empty() || data.get("format").map(String::as_str) == Some(INDEX_FORMAT),
            "unexpected index format: {data:?}"
        );
        index_lines(&data).into_iter().collect()
    }

    async fn read(&self, rest: &str) -> Option<Kv2Secret> {
        self.ns.vault.kv2_read(MOUNT, &self.rel(rest)).await
    }

    async fn metadata(&self, rest: &str) -> Option<Value> {
        self.ns.vault.kv2_metadata(MOUNT, &self.rel(rest)).await
    }

    /// Requests this case's CLI token made.
    fn requests<'a>(&self, audit: &'a AuditEntries) -> Vec<&'a AuditEntry> {
        let client = self.ns.audit_client();
        audit
            .0
            .iter()
            .filter(|e| e.kind == "request" && e.client == client)
            .collect()
    }

    /// Write requests (create/update/patch/delete) this case's CLI token made.
    fn writes(&self, audit: &AuditEntries) -> Vec<(String, String)> {
        audit.writes_by(&self.ns.audit_client())
    }

    async fn delete_deployment(&self, name: &str) {
        self.ns.delete_deployment(name).await;
    }

    async fn patch_deployment(&self, name: &str, patch: Value) {
        self.ns
            .deployments_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patch Deployment {}/{name}: {e}", self.ns.name));
    }

    async fn remove_annotation(&self, deployment: &str, key: &str) {
        self.patch_deployment(
            deployment,
            json!({"metadata": {"annotations": {key: Value::Null}}}),
        )
        .await;
    }

    /// Replaces the pod template's container with one whose envFrom names
    /// exactly `secrets`.
    async fn set_env_from(&self, deployment: &str, secrets: &[&str]) {
        let env_from: Vec<Value> = secrets
            .iter()
            .map(|s| json!({"secretRef": {"name": s}}))
            .collect();
        self.patch_deployment(
            deployment,
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "envFrom": env_from,
            }]}}}}),
        )
        .await;
    }

    /// A Secret with one distinctive value per key; returns key → value.
    async fn secret(&self, name: &str, keys: &[&str]) -> BTreeMap<String, String> {
        self.ns.secret_of_keys(name, keys).await
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if !self.owns_cluster || std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
            return;
        }
        let cluster = self.cluster.clone();
        let policies = std::mem::take(&mut *self.policies.lock().expect("policies"));
        // The test's runtime is going away: clean up on a runtime of our own.
        block_on_own_runtime(async move {
            let vault = VaultHttp::root();
            vault.delete_cluster_paths(MOUNT, &cluster).await;
            for p in policies {
                vault.delete(&format!("sys/policies/acl/{p}")).await;
            }
        });
    }
}

// --- JSON output ------------------------------------------------------------------

fn with_action(out: &CliOutput, action: &str) -> BTreeSet<String> {
    actions(out)
        .into_iter()
        .filter(|(_, a)| a == action)
        .map(|(p, _)| p)
        .collect()
}

fn set<const N: usize>(items: [String; N]) -> BTreeSet<String> {
    items.into_iter().collect()
}

fn reason(c: &Value) -> &str {
    c["reason"].as_str().unwrap_or_default()
}

// --- Vault state --------------------------------------------------------------------

/// Soft-deleted: the metadata (and the ownership marker) stays, the current
/// version carries a deletion_time and is not destroyed, the data is not
/// readable, and every version is still listed.
async fn assert_soft_deleted(case: &Case, rest: &str, versions: u64) {
    let md = case.metadata(rest).await.unwrap_or_else(|| {
        panic!(
            "{}: metadata gone; expected a soft delete",
            case.display(rest)
        )
    });
    let current = md["current_version"].as_u64().expect("current_version");
    assert_eq!(current, versions, "{md}");
    let v = &md["versions"][current.to_string()];
    assert!(
        v["deletion_time"].as_str().is_some_and(|t| !t.is_empty()),
        "{}: current version not soft-deleted: {md}",
        case.display(rest)
    );
    assert_eq!(v["destroyed"], false, "{md}");
    assert_eq!(
        md["versions"].as_object().map(|o| o.len() as u64),
        Some(versions),
        "versions kept: {md}"
    );
    assert_eq!(
        md["custom_metadata"]["managed-by"], "vault-sync",
        "marker kept: {md}"
    );
    assert!(
        case.read(rest).await.is_none(),
        "{}: data still readable",
        case.display(rest)
    );
}

/// Readable, with exactly this data, at this version, never deleted.
async fn assert_intact(case: &Case, rest: &str, data: &BTreeMap<String, String>, version: u64) {
    let got = case
        .read(rest)
        .await
        .unwrap_or_else(|| panic!("{} is gone", case.display(rest)));
    assert_eq!(&got.data, data, "{}: data changed", case.display(rest));
    assert_eq!(got.version, version, "{}: new version", case.display(rest));
}

/// Creates `deployment` (auto-discovery at `secret/<path>`, envFrom each of
/// `secrets`) and runs once; every path must be created.
async fn deploy_and_run(case: &Case, deployment: &str, path: &str, secrets: &[&str]) {
    let refs = secrets.iter().fold(PodRefs::new(), |r, s| r.env_from(s));
    case.ns
        .deployment(deployment, &[(PATH, &format!("{MOUNT}/{path}"))], &refs)
        .await;
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    for s in secrets {
        let p = case.display(&format!("{path}/{s}"));
        let c = change(&run, &p);
        assert_eq!(c["action"], "create", "{c}");
        assert_eq!(c["result"], "applied", "{c}");
    }
}

/// Secret `db` (key `password`) and Deployment `api` writing it under
/// `app`, synced by a run; returns the Secret's data and the path (display
/// spelling).
async fn api_with_db(case: &Case) -> (BTreeMap<String, String>, String) {
    let db = case.secret("db", &["password"]).await;
    deploy_and_run(case, "api", "app", &["db"]).await;
    (db, case.display("app/db"))
}

// --- 1. Deployment deleted ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_deployment_soft_deletes_its_path() {
    let case = Case::new("orph-gone").await;
    let (db, path) = api_with_db(&case).await;

    // The index records the path, in its documented format.
    let index = case.index().await;
    let entry: Value = serde_json::from_str(
        index
            .get(&path)
            .unwrap_or_else(|| panic!("{path} not in the index: {index:?}")),
    )
    .expect("index entry is JSON");
    // `written`: the version its create produced, which keeps the path
    // known as ours should its marker never land.
    assert_eq!(
        entry,
        json!({"path": path, "mount": "secret/", "kv": 2, "owner": case.owner("api"), "written": 1})
    );
    let index_md = case
        .ns
        .vault
        .kv2_metadata(MOUNT, &case.index_rel())
        .await
        .expect("index metadata");
    assert_eq!(
        index_md["custom_metadata"]["managed-by"], "vault-sync-index",
        "{index_md}"
    );

    case.delete_deployment("api").await;

    // plan: one delete, soft, with the reason.
    let plan = case.json("plan", &[]).await;
    plan.assert_code(2);
    assert_eq!(
        actions(&plan),
        BTreeMap::from([(path.clone(), "delete".into())])
    );
    let c = change(&plan, &path);
    assert_eq!(c["destroy"], false, "{c}");
    assert_eq!(c["deployment"], "api", "{c}");
    assert!(reason(&c).contains("no longer exists"), "{c}");
    assert!(reason(&c).contains("undelete"), "{c}");
    assert_eq!(plan.json()["summary"]["delete"], 1, "{plan}");

    let mark = audit_mark();
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(path.clone(), "delete".into())])
    );
    let audit = mark.entries();
    let writes = case.writes(&audit);
    assert_eq!(
        only_deletes(writes.clone()),
        [case.soft_delete_write("app/db")],
        "one soft delete of the data path: {writes:?}"
    );

    assert_soft_deleted(&case, "app/db", 1).await;
    let index = case.index().await;
    assert!(!index.contains_key(&path), "still indexed: {index:?}");

    // Undeletable: the data comes back intact.
    case.ns
        .vault
        .must_post(
            &format!("{MOUNT}/undelete/{}", case.rel("app/db")),
            &json!({"versions": [1]}),
            "undelete",
        )
        .await;
    assert_intact(&case, "app/db", &db, 1).await;

    // Forgotten: the next plan says nothing about it.
    let plan = case.json("plan", &[]).await;
    plan.assert_code(0);
    assert!(changes(&plan).is_empty(), "{plan}");
}

// --- 2. annotation removed -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_path_annotation_deletes_the_path() {
    let case = Case::new("orph-unannot").await;
    let (_, path) = api_with_db(&case).await;

    case.remove_annotation("api", PATH).await;

    let plan = case.json("plan", &[]).await;
    plan.assert_code(2);
    let c = change(&plan, &path);
    assert_eq!(c["action"], "delete", "{c}");
    assert!(
        reason(&c).contains("no longer has vault-sync.io/path"),
        "{c}"
    );

    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(path.clone(), "delete".into())])
    );
    assert_soft_deleted(&case, "app/db", 1).await;
    assert!(!case.index().await.contains_key(&path));
}

// --- 3. path changed ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_path_deletes_old_and_creates_new() {
    let case = Case::new("orph-moved").await;
    let db = case.secret("db", &["password"]).await;
    deploy_and_run(&case, "api", "old", &["db"]).await;
    let (old, new) = (case.display("old/db"), case.display("new/db"));

    case.ns.annotate("api", PATH, &format!("{MOUNT}/new")).await;

    let plan = case.json("plan", &[]).await;
    plan.assert_code(2);
    assert_eq!(
        actions(&plan),
        BTreeMap::from([
            (new.clone(), "create".into()),
            (old.clone(), "delete".into())
        ])
    );
    assert!(
        reason(&change(&plan, &old)).contains("no longer wants this path"),
        "{plan}"
    );

    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(change(&run, &new)["result"], "applied", "{run}");
    assert_soft_deleted(&case, "old/db", 1).await;
    assert_intact(&case, "new/db", &db, 1).await;
    let index: BTreeSet<String> = case.index().await.into_keys().collect();
    assert_eq!(index, set([new]));
}

// --- 4. auto-discovery: one Secret no longer referenced -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_secret_sub_path_is_deleted_others_untouched() {
    let case = Case::new("orph-subpath").await;
    let a = case.secret("sec-a", &["A"]).await;
    case.secret("sec-b", &["B"]).await;
    let c = case.secret("sec-c", &["C"]).await;
    deploy_and_run(&case, "web", "app", &["sec-a", "sec-b", "sec-c"]).await;
    let pb = case.display("app/sec-b");

    case.set_env_from("web", &["sec-a", "sec-c"]).await;

    let plan = case.json("plan", &[]).await;
    plan.assert_code(2);
    assert_eq!(
        actions(&plan),
        BTreeMap::from([
            (case.display("app/sec-a"), "unchanged".into()),
            (pb.clone(), "delete".into()),
            (case.display("app/sec-c"), "unchanged".into()),
        ])
    );
    assert!(reason(&change(&plan, &pb)).contains("no longer wants this path"));

    let mark = audit_mark();
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    let audit = mark.entries();

    assert_soft_deleted(&case, "app/sec-b", 1).await;
    assert_intact(&case, "app/sec-a", &a, 1).await;
    assert_intact(&case, "app/sec-c", &c, 1).await;
    // Exactly: the soft delete of sec-b and one index write; nothing
    // touches sec-a or sec-c.
    let mut writes = case.writes(&audit);
    writes.sort();
    assert_eq!(
        writes,
        [case.soft_delete_write("app/sec-b"), case.index_write()],
        "writes of the run"
    );
    let index: BTreeSet<String> = case.index().await.into_keys().collect();
    assert_eq!(
        index,
        set([case.display("app/sec-a"), case.display("app/sec-c")])
    );
}

// --- 5. mode switch auto → custom --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_to_custom_mode_deletes_sub_paths_and_creates_one_path() {
    let case = Case::new("orph-mode").await;
    let db = case.secret("db", &["password", "user"]).await;
    case.secret("api", &["token"]).await;
    deploy_and_run(&case, "web", "app", &["db", "api"]).await;

    case.ns
        .annotate("web", SECRETS, r#"[{"name": "db", "keys": ["password"]}]"#)
        .await;

    let plan = case.json("plan", &[]).await;
    plan.assert_code(2);
    assert_eq!(
        actions(&plan),
        BTreeMap::from([
            (case.display("app"), "create".into()),
            (case.display("app/api"), "delete".into()),
            (case.display("app/db"), "delete".into()),
        ])
    );

    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_soft_deleted(&case, "app/db", 1).await;
    assert_soft_deleted(&case, "app/api", 1).await;
    let want: BTreeMap<String, String> =
        BTreeMap::from([("password".to_owned(), db["password"].clone())]);
    assert_intact(&case, "app", &want, 1).await;
    let index: BTreeSet<String> = case.index().await.into_keys().collect();
    assert_eq!(index, set([case.display("app")]));
}

// --- 6. preserve-on-delete ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_on_delete_keeps_the_path_and_forgets_it() {
    let case = Case::new("orph-keep").await;
    let db = case.secret("db", &["password"]).await;
    case.ns
        .deployment(
            "api",
            &[(PATH, "secret/app"), (PRESERVE, "true")],
            &PodRefs::new().env_from("db"),
        )
        .await;
    case.json("run", &[]).await.assert_code(0);
    let path = case.display("app/db");
    let entry: Value =
        serde_json::from_str(&case.index().await[&path]).expect("index entry is JSON");
    assert_eq!(entry["preserve"], true, "{entry}");
    let got = case.read("app/db").await.expect("written");
    assert_eq!(
        got.custom_metadata
            .get("vault-sync.io/preserve-on-delete")
            .map(String::as_str),
        Some("true")
    );

    case.delete_deployment("api").await;

    let plan = case.json("plan", &[]).await;
    // "kept" is not a failure, but it is pending: run drops the entry from
    // the index.
    plan.assert_code(2);
    assert_eq!(
        actions(&plan),
        BTreeMap::from([(path.clone(), "kept".into())])
    );
    assert!(
        reason(&change(&plan, &path)).contains("preserve-on-delete"),
        "{plan}"
    );

    let mark = audit_mark();
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(path.clone(), "kept".into())])
    );
    let writes = case.writes(&mark.entries());
    assert_eq!(writes, [case.index_write()], "only the index changes");
    assert_intact(&case, "app/db", &db, 1).await;
    let md = case.metadata("app/db").await.expect("metadata");
    assert!(
        md["versions"]["1"]["deletion_time"]
            .as_str()
            .is_none_or(str::is_empty),
        "{md}"
    );
    assert!(!case.index().await.contains_key(&path));

    let plan = case.json("plan", &[]).await;
    plan.assert_code(0);
    assert!(changes(&plan).is_empty(), "{plan}");
}

// --- 7. --destroy ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_every_version_and_the_metadata() {
    let case = Case::new("orph-destroy").await;
    let (_, path) = api_with_db(&case).await;
    case.delete_deployment("api").await;

    let plan = case.json("plan", &["--destroy"]).await;
    plan.assert_code(2);
    let c = change(&plan, &path);
    assert_eq!(
        (&c["action"], &c["destroy"]),
        (&json!("delete"), &json!(true)),
        "{c}"
    );
    assert!(reason(&c).contains("--destroy"), "{c}");

    let mark = audit_mark();
    case.json("run", &["--destroy"]).await.assert_code(0);
    assert_eq!(
        only_deletes(case.writes(&mark.entries())),
        [(
            "delete".to_owned(),
            format!("secret/metadata/{}", case.rel("app/db"))
        )]
    );
    assert!(
        case.metadata("app/db").await.is_none(),
        "metadata still there"
    );
    assert!(!case.index().await.contains_key(&path));
}

// --- 8. --no-prune --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prune_deletes_nothing() {
    let case = Case::new("orph-noprune").await;
    let (db, path) = api_with_db(&case).await;
    case.delete_deployment("api").await;

    let plan = case.json("plan", &["--no-prune"]).await;
    plan.assert_code(0);
    assert!(changes(&plan).is_empty(), "{plan}");

    let mark = audit_mark();
    let run = case.json("run", &["--no-prune"]).await;
    run.assert_code(0);
    assert!(changes(&run).is_empty(), "{run}");
    assert_eq!(case.writes(&mark.entries()), [], "no writes at all");
    assert_intact(&case, "app/db", &db, 1).await;
    assert!(case.index().await.contains_key(&path), "still indexed");

    // Still an orphan: a pruning run deletes it.
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(actions(&run), BTreeMap::from([(path, "delete".into())]));
    assert_soft_deleted(&case, "app/db", 1).await;
}

// --- 9. prune ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_orphans_only_and_needs_yes_off_a_terminal() {
    let case = Case::new("orph-prune").await;
    let db = case.secret("db", &["password"]).await;
    deploy_and_run(&case, "old", "old", &["db"]).await;
    let old = case.display("old/db");
    case.delete_deployment("old").await;
    // A pending create: prune must not write it.
    case.ns
        .deployment(
            "pending",
            &[(PATH, "secret/pending")],
            &PodRefs::new().env_from("db"),
        )
        .await;

    // Without --yes and without a terminal: refused, nothing deleted.
    let mark = audit_mark();
    let refused = case.cli(&["prune"]).await;
    refused.assert_code(1);
    assert!(refused.stderr.contains("--yes"), "{refused}");
    assert_eq!(
        case.writes(&mark.entries()),
        [],
        "nothing written or deleted"
    );
    assert_intact(&case, "old/db", &db, 1).await;

    let mark = audit_mark();
    let prune = case.json("prune", &["--yes"]).await;
    prune.assert_code(0);
    assert_eq!(prune.json()["command"], "prune");
    assert_eq!(
        actions(&prune),
        BTreeMap::from([(old.clone(), "delete".into())])
    );
    let mut writes = case.writes(&mark.entries());
    writes.sort();
    assert_eq!(
        writes,
        [case.soft_delete_write("old/db"), case.index_write()],
        "prune: the orphan's delete and the index, nothing else"
    );
    assert_soft_deleted(&case, "old/db", 1).await;
    assert!(
        case.metadata("pending/db").await.is_none(),
        "prune created a path"
    );
    assert!(case.index().await.is_empty(), "{:?}", case.index().await);

    // The pending create is still pending for `run`.
    let plan = case.json("plan", &[]).await;
    plan.assert_code(2);
    assert_eq!(
        actions(&plan),
        BTreeMap::from([(case.display("pending/db"), "create".into())])
    );
}

// --- 10. --max-deletes guard ----------------------------------------------------------------------------

/// Three orphans (one Deployment with three Secrets, then deleted).
async fn three_orphans(case: &Case) -> Vec<(String, BTreeMap<String, String>)> {
    let mut fixtures = Vec::new();
    for name in ["s1", "s2", "s3"] {
        fixtures.push((name.to_owned(), case.secret(name, &["k"]).await));
    }
    deploy_and_run(case, "api", "app", &["s1", "s2", "s3"]).await;
    case.delete_deployment("api").await;
    fixtures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_deletes_guard_refuses_every_deletion() {
    let case = Case::new("orph-guard").await;
    let fixtures = three_orphans(&case).await;

    let mark = audit_mark();
    let run = case.json("run", &["--max-deletes", "2"]).await;
    run.assert_code(1);
    let refused = with_action(&run, "refused");
    assert_eq!(refused.len(), 3, "{run}");
    assert!(with_action(&run, "delete").is_empty(), "{run}");
    for c in changes(&run) {
        assert!(reason(&c).contains("--max-deletes 2"), "{c}");
        assert!(
            reason(&c).contains("--max-deletes 3"),
            "says how to proceed: {c}"
        );
    }
    assert_eq!(
        only_deletes(case.writes(&mark.entries())),
        [],
        "nothing deleted"
    );
    for (name, data) in &fixtures {
        assert_intact(&case, &format!("app/{name}"), data, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_deletes_guard_then_higher_limit_deletes_them() {
    let case = Case::new("orph-guard2").await;
    let fixtures = three_orphans(&case).await;
    let paths: BTreeSet<String> = fixtures
        .iter()
        .map(|(n, _)| case.display(&format!("app/{n}")))
        .collect();

    case.json("run", &["--max-deletes", "2"])
        .await
        .assert_code(1);
    // Refused by the guard, so nothing happened: still orphans, still indexed.
    let index: BTreeSet<String> = case.index().await.into_keys().collect();
    assert_eq!(index, paths, "guard-refused orphans must stay in the index");

    let run = case.json("run", &["--max-deletes", "3"]).await;
    run.assert_code(0);
    assert_eq!(with_action(&run, "delete"), paths, "{run}");
    for (name, _) in &fixtures {
        assert_soft_deleted(&case, &format!("app/{name}"), 1).await;
    }
    assert!(case.index().await.is_empty());
}

// --- 11. tampered index -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_index_entries_are_refused_and_dropped() {
    let case = Case::new("orph-tamper").await;
    case.secret("db", &["password"]).await;
    deploy_and_run(&case, "real", "real", &["db"]).await;
    let vault = &case.ns.vault;

    // Three paths vault-sync does not own, written with the root token.
    let unmarked = case.ns.value("unmarked");
    let foreign = case.ns.value("foreign");
    let other_tool = case.ns.value("other-tool");
    let fixtures = [
        ("unmarked", &unmarked, vec![]),
        (
            "foreign",
            &foreign,
            vec![
                ("managed-by", "vault-sync".to_owned()),
                ("vault-sync.io/owner", case.owner("someone-else")),
                ("vault-sync.io/preserve-on-delete", "false".to_owned()),
            ],
        ),
        (
            "other-tool",
            &other_tool,
            vec![("managed-by", "external-secrets".to_owned())],
        ),
    ];
    for (rest, value, md) in &fixtures {
        vault
            .kv2_write(MOUNT, &case.rel(rest), &[("k", value)])
            .await;
        if !md.is_empty() {
            let md: Vec<(&str, &str)> = md.iter().map(|(k, v)| (*k, v.as_str())).collect();
            vault
                .kv2_set_custom_metadata(MOUNT, &case.rel(rest), &md)
                .await;
        }
    }

    // Tamper: add an entry for each, in the index's own format, with CAS on
    // the current version (data only: the index's metadata marker stays).
    let index = vault
        .kv2_read(MOUNT, &case.index_rel())
        .await
        .expect("the first run wrote the index");
    let mut data = index.data.clone();
    let tampered_lines: String = fixtures
        .iter()
        .map(|(rest, _, _)| {
            format!(
                "{}\n",
                json!({"path": case.display(rest), "mount": "secret/", "kv": 2, "owner": case.owner(&format!("ghost-{rest}"))})
            )
        })
        .collect();
    data.insert("entries-9999".to_owned(), index_chunk(&tampered_lines));
    let (status, body) = vault
        .post(
            &format!("{MOUNT}/data/{}", case.index_rel()),
            &json!({"data": data, "options": {"cas": index.version}}),
        )
        .await;
    assert_eq!(status, 200, "tamper the index: {body}");

    let plan = case.json("plan", &[]).await;
    plan.assert_code(1);
    let tampered: BTreeSet<String> = fixtures.iter().map(|(r, _, _)| case.display(r)).collect();
    assert_eq!(with_action(&plan, "refused"), tampered, "{plan}");
    assert!(
        reason(&change(&plan, &case.display("unmarked"))).contains("no vault-sync owner marker"),
        "{plan}"
    );
    assert!(
        reason(&change(&plan, &case.display("foreign")))
            .contains(&format!("names {}", case.owner("someone-else"))),
        "{plan}"
    );

    let mark = audit_mark();
    let run = case.json("run", &[]).await;
    run.assert_code(1);
    assert_eq!(with_action(&run, "refused"), tampered, "{run}");
    assert!(with_action(&run, "delete").is_empty(), "{run}");
    let writes = case.writes(&mark.entries());
    assert_eq!(
        writes,
        [case.index_write()],
        "no delete; the index drops the entries"
    );
    for (rest, value, _) in &fixtures {
        let want = BTreeMap::from([("k".to_owned(), (*value).clone())]);
        assert_intact(&case, rest, &want, 1).await;
    }
    let index: BTreeSet<String> = case.index().await.into_keys().collect();
    assert_eq!(index, set([case.display("real/db")]));

    // Dropped: the next run is clean.
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(case.display("real/db"), "unchanged".into())])
    );
}

// --- 12. incomplete listing (403 on one namespace) -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_namespace_makes_listing_incomplete_and_deletes_nothing() {
    let case = Case::new("orph-403").await;
    let (db, path) = api_with_db(&case).await;
    case.delete_deployment("api").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (kubeconfig, token) = restricted_kubeconfig(&case.ns, dir.path()).await;

    // -n default (forbidden) -n <ns>: the orphan in <ns> is not judged.
    let mark = audit_mark();
    let run = case
        .json("run", &["--kubeconfig", &kubeconfig, "-n", "default"])
        .await;
    crate::harness::assert_no_leak(&[&run.stdout, &run.stderr], &[&token]);
    run.assert_code(1);
    assert!(with_action(&run, "delete").is_empty(), "{run}");
    assert!(changes(&run).is_empty(), "{run}");
    let errors = run.json()["errors"].clone();
    let listing: Vec<&Value> = errors
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("listing incomplete") && m.contains("default"))
        })
        .collect();
    assert_eq!(listing.len(), 1, "{run}");
    assert_eq!(listing[0]["error_type"], "forbidden", "{run}");
    assert_eq!(
        only_deletes(case.writes(&mark.entries())),
        [],
        "nothing deleted"
    );
    assert_intact(&case, "app/db", &db, 1).await;
    assert!(case.index().await.contains_key(&path), "still indexed");

    // Control: the same token over <ns> alone is enough to delete it.
    let run = case.json("run", &["--kubeconfig", &kubeconfig]).await;
    crate::harness::assert_no_leak(&[&run.stdout, &run.stderr], &[&token]);
    run.assert_code(0);
    assert_eq!(actions(&run), BTreeMap::from([(path, "delete".into())]));
    assert_soft_deleted(&case, "app/db", 1).await;
}

// --- 13. scoped runs ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scoped_run_judges_only_its_namespace() {
    let a = Case::new("orph-scope-a").await;
    let b = a.sibling("orph-scope-b").await;
    a.secret("db", &["password"]).await;
    let b_db = b.secret("db", &["password"]).await;
    // One cluster prefix for both namespaces: each Deployment its own path.
    a.ns.deployment(
        "api",
        &[(PATH, "secret/app")],
        &PodRefs::new().env_from("db"),
    )
    .await;
    b.ns.deployment(
        "api",
        &[(PATH, "secret/app-b")],
        &PodRefs::new().env_from("db"),
    )
    .await;
    let pa = a.display("app/db");
    let pb = a.display("app-b/db");
    // One run over both namespaces (-n B, and -n A from the harness).
    let run = a.json("run", &["-n", &b.ns.name]).await;
    run.assert_code(0);
    assert_eq!(
        with_action(&run, "create"),
        set([pa.clone(), pb.clone()]),
        "{run}"
    );
    let index = a.index().await;
    assert!(index[&pb].contains(&b.owner("api")), "{index:?}");

    a.delete_deployment("api").await;
    b.delete_deployment("api").await;

    // -n A: only A's orphan.
    let run = a.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(pa.clone(), "delete".into())])
    );
    assert_soft_deleted(&a, "app/db", 1).await;
    assert_intact(&a, "app-b/db", &b_db, 1).await;
    assert_eq!(
        a.index().await.into_keys().collect::<BTreeSet<_>>(),
        set([pb.clone()])
    );

    // -n B: now B's.
    let run = b.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(actions(&run), BTreeMap::from([(pb, "delete".into())]));
    assert_soft_deleted(&a, "app-b/db", 1).await;
    assert!(a.index().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_scoped_run_spares_deployments_that_left_the_selector() {
    let case = Case::new("orph-selector").await;
    let db = case.secret("db", &["password"]).await;
    for name in ["moved", "gone"] {
        case.ns
            .deployment(
                name,
                &[(PATH, &format!("secret/{name}"))],
                &PodRefs::new().env_from("db"),
            )
            .await;
        case.patch_deployment(name, json!({"metadata": {"labels": {"team": "x"}}}))
            .await;
    }
    let (moved, gone) = (case.display("moved/db"), case.display("gone/db"));
    let run = case.json("run", &["-l", "team=x"]).await;
    run.assert_code(0);
    assert_eq!(
        with_action(&run, "create"),
        set([moved.clone(), gone.clone()])
    );

    // "moved" merely stops matching; "gone" is deleted.
    case.patch_deployment("moved", json!({"metadata": {"labels": {"team": "y"}}}))
        .await;
    case.delete_deployment("gone").await;

    let mark = audit_mark();
    let run = case.json("run", &["-l", "team=x"]).await;
    run.assert_code(0);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(gone.clone(), "delete".into())])
    );
    assert_eq!(
        only_deletes(case.writes(&mark.entries())),
        [case.soft_delete_write("gone/db")]
    );
    assert_soft_deleted(&case, "gone/db", 1).await;
    assert_intact(&case, "moved/db", &db, 1).await;
    assert_eq!(
        case.index().await.into_keys().collect::<BTreeSet<_>>(),
        set([moved.clone()]),
        "the out-of-scope path stays indexed"
    );

    // Back in scope (its new selector): still wanted, unchanged.
    let run = case.json("run", &["-l", "team=y"]).await;
    run.assert_code(0);
    assert_eq!(actions(&run), BTreeMap::from([(moved, "unchanged".into())]));
}

// --- failures while applying: a delete Vault refuses, an unreadable index -------------------------

/// Reads and writes anywhere in `secret/`, but may not delete.
const NO_DELETE_POLICY: &str = r#"
path "secret/data/*" { capabilities = ["read", "create", "update"] }
path "secret/metadata/*" { capabilities = ["read", "create", "update", "list"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
"#;

/// An orphan whose delete Vault refuses (403): the run's output.
async fn refused_delete(case: &Case) -> (CliOutput, BTreeMap<String, String>) {
    let db = case.secret("db", &["password"]).await;
    deploy_and_run(case, "api", "app", &["db"]).await;
    case.delete_deployment("api").await;
    (case.run_with_policy("nodelete", NO_DELETE_POLICY).await, db)
}

/// A delete that fails leaves the path and its index entry for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_delete_fails_the_run_and_stays_indexed() {
    let case = Case::new("orph-delfail").await;
    let (run, db) = refused_delete(&case).await;
    let path = case.display("app/db");
    run.assert_code(1);
    assert_eq!(
        actions(&run),
        BTreeMap::from([(path.clone(), "delete".into())])
    );
    assert_intact(&case, "app/db", &db, 1).await;
    assert!(
        case.index().await.contains_key(&path),
        "dropped from the index"
    );
    // The next run (allowed to delete) finishes the job.
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    assert_eq!(actions(&run), BTreeMap::from([(path, "delete".into())]));
    assert_soft_deleted(&case, "app/db", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_delete_is_reported_as_failed_in_json() {
    let case = Case::new("orph-delfail-json").await;
    let (run, _) = refused_delete(&case).await;
    run.assert_code(1);
    let c = change(&run, &case.display("app/db"));
    assert_eq!(c["action"], "delete", "{c}");
    assert_eq!(c["result"], "failed", "{c}");
    assert_eq!(c["error_type"], "permission_denied", "{c}");
}

/// A write Vault refuses in one batch is reported against its own path,
/// not a neighbour's: three Deployments in batches of one, the middle one's
/// content readable but not writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_in_one_batch_is_reported_on_its_own_path() {
    let case = Case::new("orph-batchfail").await;
    let mut data = BTreeMap::new();
    for d in ["a", "b", "c"] {
        let secret = format!("{d}-sec");
        data.insert(d, case.secret(&secret, &["k"]).await);
        case.ns
            .deployment(
                d,
                &[(PATH, &format!("{MOUNT}/{d}"))],
                &PodRefs::new().env_from(&secret),
            )
            .await;
    }
    // The more specific path wins over `secret/data/*`: read only.
    let policy = format!(
        "{NO_DELETE_POLICY}\npath \"secret/data/{}\" {{ capabilities = [\"read\"] }}\n",
        case.rel("b/b-sec")
    );
    let run = case
        .run_with_policy_args("batchfail", &policy, &["--batch-size", "1"])
        .await;
    run.assert_code(1);
    for (d, result) in [("a", "applied"), ("b", "failed"), ("c", "applied")] {
        let c = change(&run, &case.display(&format!("{d}/{d}-sec")));
        assert_eq!(c["action"], "create", "{d}: {c}");
        assert_eq!(c["result"], result, "{d}: {c}");
    }
    let b = change(&run, &case.display("b/b-sec"));
    assert_eq!(b["error_type"], "permission_denied", "{b}");
    for d in ["a", "c"] {
        let got = case
            .ns
            .vault
            .kv2_read(MOUNT, &case.rel(&format!("{d}/{d}-sec")))
            .await
            .unwrap_or_else(|| panic!("{d} not written:\n{run}"));
        assert_eq!(got.data, data[d], "{d}");
    }
    assert!(
        case.ns
            .vault
            .kv2_read(MOUNT, &case.rel("b/b-sec"))
            .await
            .is_none(),
        "b was written despite the policy"
    );
}

/// Everything under the cluster prefix, but not the index.
fn no_index_policy(case: &Case) -> String {
    format!(
        r#"
path "secret/data/clusters/{c}/*" {{ capabilities = ["read", "create", "update", "delete"] }}
path "secret/metadata/clusters/{c}/*" {{ capabilities = ["read", "create", "update", "delete", "list"] }}
path "sys/internal/ui/mounts/*" {{ capabilities = ["read"] }}
"#,
        c = case.cluster
    )
}

/// What [`unreadable_index_run`] set up and got.
struct UnreadableIndex {
    run: CliOutput,
    /// The new content of `live/live-sec` (an update of an owned path).
    live: BTreeMap<String, String>,
    /// The content of the orphan `gone/gone-sec`.
    gone: BTreeMap<String, String>,
}

/// An orphan, a pending update and a pending create, then a run whose token
/// cannot read the index.
async fn unreadable_index_run(case: &Case) -> UnreadableIndex {
    case.secret("live-sec", &["k"]).await;
    let gone = case.secret("gone-sec", &["k"]).await;
    case.secret("new-sec", &["k"]).await;
    deploy_and_run(case, "live", "live", &["live-sec"]).await;
    deploy_and_run(case, "gone", "gone", &["gone-sec"]).await;
    case.delete_deployment("gone").await;
    let changed = case.ns.value("live-changed");
    case.ns.patch_secret("live-sec", &[("k", &changed)]).await;
    case.ns
        .deployment(
            "new",
            &[(PATH, "secret/new")],
            &PodRefs::new().env_from("new-sec"),
        )
        .await;
    let run = case
        .run_with_policy("noindex", &no_index_policy(case))
        .await;
    UnreadableIndex {
        run,
        live: BTreeMap::from([("k".to_owned(), changed)]),
        gone,
    }
}

/// Unreadable index: nothing is deleted and nothing is created (it would go
/// untracked); updates of owned paths still go through; the run fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_index_deletes_nothing_and_creates_nothing() {
    let case = Case::new("orph-noindex").await;
    let u = unreadable_index_run(&case).await;
    let run = &u.run;
    run.assert_code(1);
    assert_eq!(
        actions(run),
        BTreeMap::from([
            (case.display("live/live-sec"), "update".into()),
            (case.display("new/new-sec"), "create".into()),
        ]),
        "no orphan is judged"
    );
    let errors = run.json()["errors"].clone();
    assert!(
        errors
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot read the vault-sync index")))),
        "{run}"
    );
    assert_eq!(
        change(run, &case.display("live/live-sec"))["result"],
        "applied"
    );
    assert_intact(&case, "live/live-sec", &u.live, 2).await;
    assert_intact(&case, "gone/gone-sec", &u.gone, 1).await;
    assert!(
        case.metadata("new/new-sec").await.is_none(),
        "created without being indexed"
    );
    assert!(
        case.index()
            .await
            .contains_key(&case.display("gone/gone-sec"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_index_does_not_report_skipped_creates_as_applied() {
    let case = Case::new("orph-noindex-json").await;
    let u = unreadable_index_run(&case).await;
    u.run.assert_code(1);
    assert!(case.metadata("new/new-sec").await.is_none());
    let c = change(&u.run, &case.display("new/new-sec"));
    assert_ne!(
        c["result"], "applied",
        "not written, yet reported applied: {c}"
    );
}

// --- 14. no-op cost ---------------------------------------------------------------------------------

/// Seeds `deployments` × `secrets` owned paths (auto-discovery: every
/// Deployment references every Secret, each at its own path), runs once to
/// create them, then measures a second, no-op run from the audit log.
async fn noop_cost(label: &str, deployments: usize, secrets: usize) {
    let case = Case::new(label).await;
    let n = deployments * secrets;
    let names: Vec<String> = (0..secrets).map(|i| format!("s{i:03}")).collect();
    let created: Vec<()> = stream::iter(names.iter())
        .map(|name| {
            let case = &case;
            async move {
                case.secret(name, &["k"]).await;
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(created.len(), secrets);
    let refs = names.iter().fold(PodRefs::new(), |r, s| r.env_from(s));
    for d in 0..deployments {
        let name = format!("d{d:02}");
        case.ns
            .deployment(&name, &[(PATH, &format!("secret/{name}"))], &refs)
            .await;
    }

    let started = Instant::now();
    let seed = case.json("run", &["--concurrency", "64"]).await;
    let seed_time = started.elapsed();
    seed.assert_code(0);
    assert_eq!(seed.json()["summary"]["create"], n, "seed");
    assert_eq!(case.index().await.len(), n);

    let mark = audit_mark();
    let started = Instant::now();
    let run = case.json("run", &[]).await;
    let run_time = started.elapsed();
    run.assert_code(0);
    let summary = run.json()["summary"].clone();
    assert_eq!(summary["unchanged"], n, "{summary}");
    assert_eq!(summary["create"], 0, "{summary}");
    assert_eq!(summary["delete"], 0, "{summary}");
    let audit = mark.entries();

    let requests = case.requests(&audit);
    let writes = case.writes(&audit);
    let prefix = format!("clusters/{}/", case.cluster);
    let index_path = case.index_rel();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for e in &requests {
        let kind = if e.path.contains(&prefix) {
            format!("{} {MOUNT}/data/clusters/<c>/…", e.operation)
        } else if e.path.contains(&index_path) {
            format!("{} index", e.operation)
        } else if e.path.starts_with("sys/internal/ui/mounts/") {
            format!("{} sys/internal/ui/mounts/…", e.operation)
        } else {
            format!("{} {}", e.operation, e.path)
        };
        *by_kind.entry(kind).or_insert(0) += 1;
    }
    let on_prefix = requests
        .iter()
        .filter(|e| e.path.contains(&prefix) || e.path.contains(&index_path))
        .count();
    eprintln!(
        "no-op cost, {n} owned paths ({deployments} Deployments × {secrets} Secrets): \
         {} Vault requests ({on_prefix} on the cluster prefix + index), {} writes; \
         by kind {by_kind:?}; seed run {seed_time:?}, no-op run {run_time:?}",
        requests.len(),
        writes.len()
    );
    assert_eq!(writes, [], "a no-op run writes nothing");
    // One read per path and one index read.
    assert_eq!(on_prefix, n + 1, "{by_kind:?}");
    assert!(
        requests.len() <= n + 5,
        "{} requests for {n} paths: {by_kind:?}",
        requests.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_run_costs_one_read_per_path_and_writes_nothing() {
    noop_cost("orph-cost50", 5, 10).await;
}

/// The index is one KV v2 secret with one key per owned path, written in
/// one request: OpenBao (>= 2.4.1) refuses request bodies with more than
/// `max_request_json_strings` (default 1000) strings, i.e. an index of more
/// than 498 entries. 500 paths is enough to show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_holds_more_than_498_paths() {
    noop_cost("orph-index500", 5, 100).await;
}

/// Measurement (run by hand): the largest index this stack's OpenBao
/// accepts (498 entries, see above).
/// `cargo test --test it orphans::noop_cost_498_paths -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement: seeds 498 paths; run by hand with --ignored --nocapture"]
async fn noop_cost_498_paths() {
    noop_cost("orph-cost498", 6, 83).await;
}

/// Measurement for the notes (run by hand):
/// `cargo test --test it orphans::noop_cost_2000_paths -- --ignored --nocapture`
/// Blocked by the index size bug above: the seeding run fails with
/// "refused JSON input due to high complexity" and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement: seeds 2,000 paths; run by hand with --ignored --nocapture"]
async fn noop_cost_2000_paths() {
    noop_cost("orph-cost2k", 20, 100).await;
}
