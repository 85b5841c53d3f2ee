//! Ownership and the index, end to end on the real stack: which paths
//! vault-sync may write, take over or delete, and when it trusts its index.
//!
//! The classes, each with its tests:
//!
//! 1. **Reserved index location**: no annotation, in any mode or KV v2
//!    spelling, may write under `<mount>/vault-sync/index` (a Deployment
//!    could otherwise forge another cluster's index).
//! 2. **Untrusted index**: an index whose own marker is not this cluster's
//!    index marker stops every deletion and creation of the run, and is
//!    never overwritten.
//! 3. **KV v1 deletion bounded by the cluster**: an index entry alone never
//!    deletes a KV v1 path outside `kv1/clusters/<cluster>/`.
//! 4. **Malformed or newer-format index**: fails `plan` and `run`, and is
//!    left as found.
//! 5. **Deleted or lost index**: a soft-deleted index, or a destroyed one
//!    while this cluster's marked paths exist, fails the run until
//!    `prune --rebuild-index`.
//! 6. **Takeover**: a path whose owner is verifiably gone (deleted, or kept
//!    by `preserve-on-delete`) is taken over by the new Deployment that
//!    wants it, CAS-guarded; a live owner still means a conflict.
//! 7. **Half-done writes**: content written without its marker stays
//!    tracked, and is deleted only if nobody changed it since.
//! 8. **Refusals and rebuilds**: another tool's marker named in a refusal,
//!    and `--rebuild-index` over already soft-deleted paths.
//!
//! Isolation: every test has its own namespace ([`ClusterNs`]), its own index
//! mount (the harness's `VAULT_SYNC_INDEX_MOUNT`) and, for runs with
//! `--cluster-name`, the namespace's name as its cluster, so its paths land
//! under `<mount>/clusters/<ns>/`, which the harness cleans up.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::audit::{AuditEntries, audit_mark, only_deletes};
use crate::fixtures::{ClusterNs, actions, change, change_of, changes};
use crate::harness::annotation::{PATH, PRESERVE, SECRETS};
use crate::harness::{CliOutput, PodRefs, assert_no_leak};
use crate::vault::{INDEX_FORMAT, Kv2Secret, current_is_deleted, index_chunk, index_lines};

/// The KV v2 mount the tests' paths go to.
const MOUNT: &str = "secret";

// --- one test's world ------------------------------------------------------------

/// A [`ClusterNs`] with the index helpers of these tests.
struct Case(ClusterNs);

impl std::ops::Deref for Case {
    type Target = ClusterNs;
    fn deref(&self) -> &ClusterNs {
        &self.0
    }
}

impl Case {
    async fn new(label: &str) -> Self {
        Self(ClusterNs::new(label).await)
    }

    fn index_mount(&self) -> &str {
        &self.ns.index_mount
    }

    fn index_rel(&self) -> String {
        format!("vault-sync/index/{}", self.cluster)
    }

    async fn index(&self) -> Option<Kv2Secret> {
        self.ns
            .vault
            .kv2_read(self.index_mount(), &self.index_rel())
            .await
    }

    async fn index_metadata(&self) -> Option<Value> {
        self.ns
            .vault
            .kv2_metadata(self.index_mount(), &self.index_rel())
            .await
    }

    /// The index's entries: display path → owner.
    async fn index_owners(&self) -> BTreeMap<String, String> {
        let Some(index) = self.index().await else {
            return BTreeMap::new();
        };
        index_lines(&index.data)
            .into_iter()
            .map(|(path, line)| {
                let v: Value = serde_json::from_str(&line).expect("index line is JSON");
                (path, v["owner"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// Writes a KV v1 secret with the root token (vault-sync never wrote
    /// it); returns its data.
    async fn plant_kv1(&self, rel: &str) -> BTreeMap<String, String> {
        let data = BTreeMap::from([("k".to_owned(), self.ns.value(&format!("kv1-{rel}")))]);
        self.ns
            .vault
            .must_post(&format!("kv1/{rel}"), &json!(data), "plant a KV v1 secret")
            .await;
        data
    }

    /// Writes the index with the root token: `data`, then `custom_metadata`
    /// replaced by `md` (none: left empty). Returns the version written.
    async fn plant_index(&self, data: &BTreeMap<String, String>, md: &[(&str, &str)]) -> u64 {
        let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let version = self
            .ns
            .vault
            .kv2_write(self.index_mount(), &self.index_rel(), &pairs)
            .await;
        if !md.is_empty() {
            self.ns
                .vault
                .kv2_set_custom_metadata(self.index_mount(), &self.index_rel(), md)
                .await;
        }
        version
    }

    /// Rewrites the index's data with check-and-set on its current version
    /// (as a hand edit would); its custom_metadata is left alone.
    async fn rewrite_index(&self, data: &BTreeMap<String, String>) -> u64 {
        let current = self.index().await.expect("an index to rewrite");
        let reply = self
            .ns
            .vault
            .must_post(
                &format!("{}/data/{}", self.index_mount(), self.index_rel()),
                &json!({"data": data, "options": {"cas": current.version}}),
                "rewrite the index",
            )
            .await;
        reply["data"]["version"].as_u64().expect("version")
    }
}

/// One index line, as vault-sync stores it.
fn index_line(path: &str, mount: &str, kv: u8, owner: &str) -> String {
    json!({"path": path, "mount": mount, "kv": kv, "owner": owner}).to_string()
}

/// An index's data: the current format and one chunk of `lines`.
fn index_data(lines: &[String]) -> BTreeMap<String, String> {
    let mut chunk = lines.join("\n");
    chunk.push('\n');
    BTreeMap::from([
        ("format".to_owned(), INDEX_FORMAT.to_owned()),
        ("entries-0000".to_owned(), index_chunk(&chunk)),
    ])
}

// --- JSON output -------------------------------------------------------------------

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The run-wide errors: (error_type, message).
fn run_errors(out: &CliOutput) -> Vec<(String, String)> {
    out.json()["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (text(&e["error_type"]), text(&e["message"])))
        .collect()
}

/// A run-wide error of `error_type` whose message contains every needle.
fn assert_run_error(out: &CliOutput, error_type: &str, needles: &[&str]) {
    let errors = run_errors(out);
    assert!(
        errors
            .iter()
            .any(|(t, m)| t == error_type && needles.iter().all(|n| m.contains(n))),
        "expected a run-wide error {error_type:?} mentioning {needles:?}; got {errors:?}:\n{out}"
    );
}

/// Writes the CLI token made to paths containing `needle`.
fn writes_to(audit: &AuditEntries, client: &str, needle: &str) -> Vec<(String, String)> {
    audit
        .writes_by(client)
        .into_iter()
        .filter(|(_, p)| p.contains(needle))
        .collect()
}

// --- 1. the index location is reserved -------------------------------------------------

/// The issue's attack: a tenant's Deployment writes a well-formed index for
/// another cluster name. Every spelling and mode of a path at or under
/// `<mount>/vault-sync/index` is an `invalid_path` error, and nothing is
/// written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_targeting_the_index_location_is_refused_in_every_spelling_and_mode() {
    let case = Case::new("int-reserved").await;
    let ns = &case.ns;
    let im = case.index_mount().to_owned();
    let victim = format!("{}-victim", ns.name);
    // What a forged index for `victim` would list: a KV v1 path vault-sync
    // never wrote.
    let entry = index_line(
        &format!("kv1/it/{}/precious", ns.name),
        "kv1/",
        1,
        &format!("{victim}/{}/ghost", ns.name),
    );
    ns.secret(
        "forged",
        &[
            ("format", INDEX_FORMAT),
            ("entries-0000", &index_chunk(&format!("{entry}\n"))),
        ],
    )
    .await;
    let custom = r#"[{"name": "forged", "keys": ["format", "entries-0000"]}]"#;
    // (Deployment, annotation path, the KV v2 location it would write).
    let targets = [
        (
            "forger-short",
            format!("{im}/vault-sync/index/{victim}"),
            (im.clone(), format!("vault-sync/index/{victim}")),
        ),
        (
            "forger-data",
            format!("{im}/data/vault-sync/index/{victim}-data"),
            (im.clone(), format!("vault-sync/index/{victim}-data")),
        ),
        (
            "forger-team",
            format!("team/vault-sync/index/{victim}-team"),
            ("team".to_owned(), format!("vault-sync/index/{victim}-team")),
        ),
    ];
    for (name, path, (mount, rel)) in &targets {
        ns.deployment(
            name,
            &[(PATH, path), (SECRETS, custom)],
            &PodRefs::new().env_from("forged"),
        )
        .await;
        case.cleanup_later(format!("{mount}/metadata/{rel}"));
    }
    // Auto-discovery: `<im>/vault-sync/index` + Secret name.
    let auto_secret = "victim-auto";
    ns.secret(
        auto_secret,
        &[
            ("format", INDEX_FORMAT),
            ("entries-0000", &index_chunk(&format!("{entry}\n"))),
        ],
    )
    .await;
    ns.deployment(
        "forger-auto",
        &[(PATH, &format!("{im}/vault-sync/index"))],
        &PodRefs::new().env_from(auto_secret),
    )
    .await;
    let auto_rel = format!("vault-sync/index/{auto_secret}");

    // No --cluster-name: no `clusters/<c>/` prefix applies.
    let mark = audit_mark();
    let run = ns.cli(&["run", "-o", "json"]).await;
    let audit = mark.entries();
    for name in ["forger-short", "forger-data", "forger-team", "forger-auto"] {
        let c = change_of(&run, name);
        assert_eq!(c["action"], "error", "{name}: {c}\n{run}");
        assert_eq!(c["error_type"], "invalid_path", "{name}: {c}");
        assert!(
            text(&c["message"]).contains("reserved"),
            "{name}: the message should say the location is reserved: {c}"
        );
    }
    run.assert_code(1);
    let mut written = Vec::new();
    for (_, _, (mount, rel)) in &targets {
        written.push((mount.clone(), rel.clone()));
    }
    written.push((im.clone(), auto_rel));
    for (mount, rel) in &written {
        assert!(
            ns.vault.kv2_metadata(mount, rel).await.is_none(),
            "{mount}/{rel} was written"
        );
        let api_data = format!("{mount}/data/{rel}");
        let api_md = format!("{mount}/metadata/{rel}");
        let hits: Vec<_> = audit
            .writes_by(&ns.audit_client())
            .into_iter()
            .filter(|(_, p)| *p == api_data || *p == api_md)
            .collect();
        assert_eq!(hits, [], "write requests to {mount}/{rel}");
    }
}

// --- 2. an untrusted index -----------------------------------------------------------------

/// Plants an index for the case's cluster whose custom_metadata is `md`,
/// listing a KV v1 path vault-sync never wrote, then runs with a Deployment
/// wanting a new path. Everything the contract says about an untrusted
/// index is checked.
async fn untrusted_index(label: &str, md: &[(&str, &str)]) {
    let case = Case::new(label).await;
    let ns = &case.ns;
    let precious_rel = format!("it/{}/precious", ns.name);
    let precious = case.plant_kv1(&precious_rel).await;
    let data = index_data(&[index_line(
        &format!("kv1/{precious_rel}"),
        "kv1/",
        1,
        &case.owner("ghost"),
    )]);
    let version = case.plant_index(&data, md).await;
    let md_before = case.index_metadata().await.expect("index metadata")["custom_metadata"].clone();

    case.secret("db", &["password"]).await;
    case.auto("newcomer", "secret/app", &["db"], &[]).await;
    let new_path = case.display(MOUNT, "app/db");

    let run = case.json("run", &[]).await;
    run.assert_code(1);
    assert_run_error(
        &run,
        "index_untrusted",
        &[&case.index_rel(), "prune --rebuild-index"],
    );
    assert_eq!(
        ns.vault.kv1_read("kv1", &precious_rel).await.as_ref(),
        Some(&precious),
        "the KV v1 path listed by an untrusted index was deleted or changed:\n{run}"
    );
    let index = case.index().await.expect("the index is gone");
    assert_eq!(
        index.version, version,
        "the untrusted index was overwritten"
    );
    assert_eq!(index.data, data, "the untrusted index's data changed");
    assert_eq!(
        case.index_metadata().await.expect("index metadata")["custom_metadata"],
        md_before,
        "the untrusted index's marker changed"
    );
    assert!(
        ns.vault
            .kv2_metadata(MOUNT, &case.rel("app/db"))
            .await
            .is_none(),
        "{new_path} was created although the index is untrusted:\n{run}"
    );
    for c in changes(&run)
        .iter()
        .filter(|c| c["deployment"] == "newcomer")
    {
        assert_ne!(c["result"], "applied", "not written, yet applied: {c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_marked_as_a_path_not_as_the_index_is_untrusted_and_blocks_the_run() {
    let owner = "someone/else/forger";
    untrusted_index(
        "int-untr-path",
        &[("managed-by", "vault-sync"), ("vault-sync.io/owner", owner)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_without_any_marker_is_untrusted_and_blocks_the_run() {
    untrusted_index("int-untr-none", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_marked_for_another_cluster_is_untrusted_and_blocks_the_run() {
    untrusted_index(
        "int-untr-other",
        &[
            ("managed-by", "vault-sync-index"),
            ("vault-sync.io/cluster", "some-other-cluster"),
        ],
    )
    .await;
}

// --- 3. KV v1 deletions bounded by the cluster's prefix -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv1_orphan_outside_the_cluster_prefix_is_refused_inside_it_is_deleted() {
    let case = Case::new("int-kv1").await;
    let ns = &case.ns;
    case.secret("db", &["password"]).await;
    case.auto("app", "kv1/app", &["db"], &[]).await;
    let first = case.json("run", &[]).await;
    first.assert_code(0);
    let own = case.display("kv1", "app/db");
    assert_eq!(change(&first, &own)["action"], "create", "{first}");
    assert!(
        ns.vault
            .kv1_read("kv1", &case.rel("app/db"))
            .await
            .is_some()
    );

    // A trusted index (the proper marker) that also lists a KV v1 path
    // outside this cluster's prefix, for a Deployment that does not exist.
    let precious_rel = format!("it/{}/precious", ns.name);
    let precious = case.plant_kv1(&precious_rel).await;
    let mut data = case.index().await.expect("index").data;
    let line = index_line(
        &format!("kv1/{precious_rel}"),
        "kv1/",
        1,
        &case.owner("ghost"),
    );
    data.insert("entries-0001".to_owned(), index_chunk(&format!("{line}\n")));
    case.rewrite_index(&data).await;
    case.ns
        .vault
        .kv2_set_custom_metadata(
            case.index_mount(),
            &case.index_rel(),
            &[
                ("managed-by", "vault-sync-index"),
                ("vault-sync.io/cluster", &case.cluster),
            ],
        )
        .await;
    case.delete_deployment("app").await;

    let run = case.json("run", &[]).await;
    let outside = format!("kv1/{precious_rel}");
    let c = change(&run, &outside);
    assert_eq!(c["action"], "refused", "{c}\n{run}");
    assert!(
        text(&c["reason"]).contains("outside"),
        "the refusal should say the path is outside the cluster's prefix: {c}"
    );
    assert_eq!(
        ns.vault.kv1_read("kv1", &precious_rel).await.as_ref(),
        Some(&precious),
        "a KV v1 path outside the cluster's prefix was deleted"
    );
    assert_eq!(change(&run, &own)["action"], "delete", "{run}");
    assert!(
        ns.vault
            .kv1_read("kv1", &case.rel("app/db"))
            .await
            .is_none(),
        "vault-sync's own KV v1 orphan was not deleted"
    );
    run.assert_code(1);
}

// --- 4. a malformed or newer-format index ------------------------------------------------

/// A real run (Deployments `live` and `gone`), then the root token rewrites
/// the index as `corrupt` says; `gone` is deleted and `fresh` wants a new
/// path. `plan` and `run` must fail with `index_unreadable`, delete and
/// create nothing, and leave the index as found.
async fn corrupted_index(label: &str, corrupt: impl FnOnce(&mut BTreeMap<String, String>)) {
    let case = Case::new(label).await;
    let ns = &case.ns;
    let gone = case.secret("gone-sec", &["k"]).await;
    case.secret("live-sec", &["k"]).await;
    case.secret("fresh-sec", &["k"]).await;
    case.auto("live", "secret/live", &["live-sec"], &[]).await;
    case.auto("gone", "secret/gone", &["gone-sec"], &[]).await;
    case.json("run", &[]).await.assert_code(0);

    let mut data = case.index().await.expect("index after a run").data;
    corrupt(&mut data);
    let version = case.rewrite_index(&data).await;
    case.delete_deployment("gone").await;
    case.auto("fresh", "secret/fresh", &["fresh-sec"], &[])
        .await;

    let plan = case.json("plan", &[]).await;
    plan.assert_code(1);
    assert_run_error(&plan, "index_unreadable", &["prune --rebuild-index"]);

    let mark = audit_mark();
    let run = case.json("run", &[]).await;
    let audit = mark.entries();
    run.assert_code(1);
    assert_run_error(&run, "index_unreadable", &["prune --rebuild-index"]);
    assert_eq!(
        only_deletes(audit.writes_by(&ns.audit_client())),
        [],
        "deletes"
    );
    assert_eq!(
        writes_to(&audit, &ns.audit_client(), &case.index_rel()),
        [],
        "the index was written"
    );
    let index = case.index().await.expect("index");
    assert_eq!(index.version, version, "the index was overwritten");
    assert_eq!(index.data, data, "the index's data changed");
    let kept = ns
        .vault
        .kv2_read(MOUNT, &case.rel("gone/gone-sec"))
        .await
        .expect("the orphan was deleted");
    assert_eq!(kept.data, gone);
    assert!(
        ns.vault
            .kv2_metadata(MOUNT, &case.rel("fresh/fresh-sec"))
            .await
            .is_none(),
        "a new path was created with an unreadable index:\n{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_an_index_chunk_fails_plan_and_run_and_leaves_the_index_as_found() {
    corrupted_index("int-garbage", |data| {
        data.insert("entries-0001".to_owned(), index_chunk("not json\n"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_chunk_that_does_not_unpack_fails_plan_and_run_and_leaves_the_index_as_found() {
    corrupted_index("int-unpacked", |data| {
        data.insert("entries-0001".to_owned(), "not json\n".to_owned());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_index_format_fails_plan_and_run_and_leaves_the_index_as_found() {
    corrupted_index("int-v99", |data| {
        data.insert("format".to_owned(), "vault-sync-index/v99".to_owned());
    })
    .await;
}

// --- 5. a deleted or lost index -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deleted_index_fails_the_run_and_is_not_recreated() {
    let case = Case::new("int-idx-del").await;
    case.secret("db", &["password"]).await;
    case.auto("app", "secret/app", &["db"], &[]).await;
    case.json("run", &[]).await.assert_code(0);
    let status = case
        .ns
        .vault
        .delete(&format!("{}/data/{}", case.index_mount(), case.index_rel()))
        .await;
    assert_eq!(status, 204, "soft delete of the index");
    let before = case.index_metadata().await.expect("index metadata");
    assert!(current_is_deleted(&before), "{before}");

    let run = case.json("run", &[]).await;
    run.assert_code(1);
    assert_run_error(&run, "index_unreadable", &["rebuild-index"]);
    let after = case.index_metadata().await.expect("index metadata gone");
    assert_eq!(
        after["current_version"], before["current_version"],
        "the deleted index was recreated: {after}"
    );
    assert!(current_is_deleted(&after), "no longer deleted: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_index_with_marked_paths_is_missing_until_rebuilt() {
    let case = Case::new("int-idx-lost").await;
    case.secret("db", &["password"]).await;
    case.secret("cache", &["url"]).await;
    case.auto("app", "secret/app", &["db", "cache"], &[]).await;
    case.json("run", &[]).await.assert_code(0);
    let status = case
        .ns
        .vault
        .delete(&format!(
            "{}/metadata/{}",
            case.index_mount(),
            case.index_rel()
        ))
        .await;
    assert_eq!(status, 204, "destroy the index");

    let run = case.json("run", &[]).await;
    run.assert_code(1);
    assert_run_error(&run, "index_missing", &["rebuild-index"]);
    assert!(
        case.index_metadata().await.is_none(),
        "an index was written although this cluster's marked paths exist:\n{run}"
    );

    let scan = format!("{MOUNT}/clusters/{}", case.cluster);
    let rebuild = case
        .cli(&["prune", "--rebuild-index", "--scan", &scan, "--yes"])
        .await;
    rebuild.assert_code(0);
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    let all = actions(&run);
    assert_eq!(all.len(), 2, "{run}");
    assert!(all.values().all(|a| a == "unchanged"), "{run}");
}

// --- 6. takeover of a path whose owner is gone ------------------------------------------------

/// The data write of the takeover: a create/update of the path's data by
/// the CLI token, carrying `options.cas` (the previous version).
fn assert_cas_guarded_write(raw: &[Value], client: &str, api_path: &str, previous: u64) {
    let writes: Vec<&Value> = raw
        .iter()
        .filter(|e| {
            e["type"] == "request"
                && e["auth"]["display_name"] == client
                && e["request"]["path"] == api_path
                && ["create", "update"].contains(&e["request"]["operation"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(writes.len(), 1, "one data write of {api_path}: {writes:?}");
    let cas = &writes[0]["request"]["data"]["options"]["cas"];
    // The audit device HMACs strings only; a number stays readable.
    match cas.as_u64() {
        Some(v) => assert_eq!(v, previous, "cas of the takeover write"),
        None => assert!(
            !cas.is_null(),
            "the takeover write carried no check-and-set: {}",
            writes[0]["request"]
        ),
    }
}

/// Deployment `a` wrote `secret/shared` (custom mode), then is deleted
/// (and, with `preserve`, its path kept); `b` wants the same path and
/// Secret. It takes the path over.
async fn takeover(label: &str, preserve: bool) {
    let case = Case::new(label).await;
    let ns = &case.ns;
    case.secret("db", &["password"]).await;
    let custom = r#"[{"name": "db", "keys": ["password"]}]"#;
    let mut annotations = vec![(PATH, "secret/shared"), (SECRETS, custom)];
    if preserve {
        annotations.push((PRESERVE, "true"));
    }
    ns.deployment("a", &annotations, &PodRefs::new().env_from("db"))
        .await;
    case.json("run", &[]).await.assert_code(0);
    let path = case.display(MOUNT, "shared");
    case.delete_deployment("a").await;
    if preserve {
        let run = case.json("run", &[]).await;
        run.assert_code(0);
        assert_eq!(change(&run, &path)["action"], "kept", "{run}");
    }
    let before = ns
        .vault
        .kv2_read(MOUNT, &case.rel("shared"))
        .await
        .expect("the path");
    ns.deployment(
        "b",
        &[(PATH, "secret/shared"), (SECRETS, custom)],
        &PodRefs::new().env_from("db"),
    )
    .await;

    let plan = case.json("plan", &[]).await;
    let c = change(&plan, &path);
    assert_eq!(c["action"], "update", "{c}\n{plan}");
    assert_eq!(
        c["previous_owner"],
        format!("{}/a", ns.name),
        "the plan should show the change of owner: {c}"
    );
    plan.assert_code(2);

    let mark = audit_mark();
    let run = case.json("run", &[]).await;
    run.assert_code(0);
    let after = ns
        .vault
        .kv2_read(MOUNT, &case.rel("shared"))
        .await
        .expect("the path");
    assert_eq!(
        after.custom_metadata.get("vault-sync.io/owner"),
        Some(&case.owner("b")),
        "{after:?}"
    );
    assert_eq!(after.data, before.data);
    assert_eq!(
        after.version,
        before.version + 1,
        "the takeover writes one new version"
    );
    assert_eq!(
        case.index_owners().await.get(&path),
        Some(&case.owner("b")),
        "the index records the new owner"
    );
    assert_cas_guarded_write(
        &mark.raw_entries(),
        &ns.audit_client(),
        &format!("{MOUNT}/data/{}", case.rel("shared")),
        before.version,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_of_a_deleted_deployment_is_taken_over_by_its_replacement() {
    takeover("int-take", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_preserve_on_delete_path_is_taken_over_by_a_new_deployment() {
    takeover("int-take-kept", true).await;
}

/// `a` still exists and is annotated (outside the `-l` selector of the
/// run): `b` wanting its path is a conflict, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_of_a_live_owner_is_not_taken_over() {
    let case = Case::new("int-take-live").await;
    let ns = &case.ns;
    case.secret("db", &["password"]).await;
    let custom = r#"[{"name": "db", "keys": ["password"]}]"#;
    let annotations = [(PATH, "secret/shared"), (SECRETS, custom)];
    ns.deployment("a", &annotations, &PodRefs::new().env_from("db"))
        .await;
    case.label_deployment("a", "team", "a").await;
    case.json("run", &[]).await.assert_code(0);
    let path = case.display(MOUNT, "shared");
    let before = ns.vault.kv2_read(MOUNT, &case.rel("shared")).await;
    ns.deployment("b", &annotations, &PodRefs::new().env_from("db"))
        .await;
    case.label_deployment("b", "team", "b").await;

    let mark = audit_mark();
    for args in [&["-l", "team=b"][..], &[][..]] {
        let run = case.json("run", args).await;
        run.assert_code(1);
        let b = changes(&run)
            .into_iter()
            .find(|c| c["deployment"] == "b")
            .unwrap_or_else(|| panic!("no change of b:\n{run}"));
        assert_eq!(b["action"], "conflict", "{b}\n{run}");
        assert_eq!(b["path"], path.as_str(), "{b}");
    }
    assert_eq!(
        writes_to(&mark.entries(), &ns.audit_client(), &case.rel("shared")),
        [],
        "a path with a live owner was written"
    );
    assert_eq!(ns.vault.kv2_read(MOUNT, &case.rel("shared")).await, before);
}

// --- 7. half-done writes stay tracked ------------------------------------------------------------------

/// Content of `secret/clusters/<c>/…`, but none of its metadata; the whole
/// index (content and metadata).
fn no_metadata_policy(case: &Case) -> String {
    format!(
        r#"
path "secret/data/clusters/{c}/*" {{ capabilities = ["read", "create", "update", "delete"] }}
path "{im}/data/vault-sync/index/*" {{ capabilities = ["read", "create", "update", "delete"] }}
path "{im}/metadata/vault-sync/index/*" {{ capabilities = ["read", "create", "update", "delete", "list"] }}
path "sys/internal/ui/mounts/*" {{ capabilities = ["read"] }}
"#,
        c = case.cluster,
        im = case.index_mount()
    )
}

/// A run whose token cannot write metadata: content without its marker.
/// Returns the case and the path's data.
async fn unmarked_write(label: &str) -> (Case, BTreeMap<String, String>) {
    let case = Case::new(label).await;
    let db = case.secret("db", &["password"]).await;
    case.auto("api", "secret/app", &["db"], &[]).await;
    let token = case
        .token_with_policy("nometa", &no_metadata_policy(&case))
        .await;
    let run = case
        .cli_env(&["run", "-o", "json"], &[("VAULT_TOKEN", &token)])
        .await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[&token]);
    run.assert_code(1);
    let path = case.display(MOUNT, "app/db");
    let c = change(&run, &path);
    assert_eq!(c["result"], "failed", "the marker write failed: {c}");
    let got = case
        .ns
        .vault
        .kv2_read(MOUNT, &case.rel("app/db"))
        .await
        .expect("the content was written");
    assert_eq!(got.data, db);
    assert!(
        !got.custom_metadata.contains_key("managed-by"),
        "{:?}",
        got.custom_metadata
    );
    (case, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_written_without_its_marker_is_still_deleted_with_its_deployment() {
    let (case, _) = unmarked_write("int-half").await;
    case.delete_deployment("api").await;
    let run = case.json("run", &[]).await;
    let path = case.display(MOUNT, "app/db");
    assert_eq!(change(&run, &path)["action"], "delete", "{run}");
    run.assert_code(0);
    let md = case
        .ns
        .vault
        .kv2_metadata(MOUNT, &case.rel("app/db"))
        .await
        .expect("metadata");
    assert!(current_is_deleted(&md), "not soft-deleted: {md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_content_changed_by_someone_else_is_never_deleted() {
    let (case, _) = unmarked_write("int-half-changed").await;
    let theirs = case.ns.value("theirs");
    let version = case
        .ns
        .vault
        .kv2_write(MOUNT, &case.rel("app/db"), &[("password", &theirs)])
        .await;
    case.delete_deployment("api").await;
    let run = case.json("run", &[]).await;
    let path = case.display(MOUNT, "app/db");
    assert_eq!(change(&run, &path)["action"], "refused", "{run}");
    let got = case
        .ns
        .vault
        .kv2_read(MOUNT, &case.rel("app/db"))
        .await
        .expect("someone else's version was deleted");
    assert_eq!(got.version, version);
}

// --- 8. refusals and rebuilds ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_managed_by_another_tool_is_refused_naming_that_tool() {
    let case = Case::new("int-other-tool").await;
    case.secret("db", &["password"]).await;
    case.auto("api", "secret/app", &["db"], &[]).await;
    case.json("run", &[]).await.assert_code(0);
    case.delete_deployment("api").await;
    case.ns
        .vault
        .kv2_set_custom_metadata(
            MOUNT,
            &case.rel("app/db"),
            &[("managed-by", "external-secrets")],
        )
        .await;
    let run = case.json("run", &[]).await;
    let c = change(&run, &case.display(MOUNT, "app/db"));
    assert_eq!(c["action"], "refused", "{c}\n{run}");
    let reason = text(&c["reason"]);
    assert!(reason.contains("external-secrets"), "{c}");
    assert!(!reason.contains("no vault-sync owner marker"), "{c}");
    assert!(
        case.ns
            .vault
            .kv2_read(MOUNT, &case.rel("app/db"))
            .await
            .is_some()
    );
}

/// Three marked orphans (Deployment `app` deleted), the first one's
/// current version already soft-deleted, and the index destroyed; then
/// `prune --rebuild-index --scan secret/clusters/<c> --yes <args>`.
/// Returns the prune's output and the delete requests it made.
async fn rebuild_over_a_soft_deleted_path(
    label: &str,
    args: &[&str],
) -> (Case, CliOutput, Vec<(String, String)>, String) {
    let case = Case::new(label).await;
    for s in ["s1", "s2", "s3"] {
        case.secret(s, &["k"]).await;
    }
    case.auto("app", "secret/app", &["s1", "s2", "s3"], &[])
        .await;
    case.json("run", &[]).await.assert_code(0);
    case.delete_deployment("app").await;
    let s1 = format!("{MOUNT}/data/{}", case.rel("app/s1"));
    assert_eq!(case.ns.vault.delete(&s1).await, 204, "soft delete s1");
    let status = case
        .ns
        .vault
        .delete(&format!(
            "{}/metadata/{}",
            case.index_mount(),
            case.index_rel()
        ))
        .await;
    assert_eq!(status, 204, "destroy the index");

    let scan = format!("{MOUNT}/clusters/{}", case.cluster);
    let mut full = vec!["--rebuild-index", "--scan", &scan, "--yes"];
    full.extend_from_slice(args);
    let mark = audit_mark();
    let prune = case.json("prune", &full).await;
    let deletes = only_deletes(mark.entries().writes_by(&case.ns.audit_client()));
    (case, prune, deletes, s1)
}

/// s2 and s3 are soft-deleted (and nothing else is required of the run).
async fn assert_rest_soft_deleted(case: &Case, prune: &CliOutput) {
    for s in ["s2", "s3"] {
        let md = case
            .ns
            .vault
            .kv2_metadata(MOUNT, &case.rel(&format!("app/{s}")))
            .await
            .expect("metadata");
        assert!(current_is_deleted(&md), "{s} not deleted: {md}\n{prune}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_index_does_not_delete_an_already_soft_deleted_path_again() {
    let (case, prune, deletes, s1) =
        rebuild_over_a_soft_deleted_path("int-rebuild-again", &[]).await;
    assert!(
        !deletes.iter().any(|(_, p)| *p == s1),
        "an already soft-deleted path was deleted again: {deletes:?}\n{prune}"
    );
    prune.assert_code(0);
    assert_rest_soft_deleted(&case, &prune).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_index_does_not_count_already_deleted_paths_toward_max_deletes() {
    let (case, prune, deletes, s1) =
        rebuild_over_a_soft_deleted_path("int-rebuild-count", &["--max-deletes", "2"]).await;
    prune.assert_code(0);
    assert!(!deletes.iter().any(|(_, p)| *p == s1), "{deletes:?}");
    assert_rest_soft_deleted(&case, &prune).await;
}
