//! Saved plans end to end: `plan --out FILE` in review, then
//! `run --plan FILE` applies exactly that plan, or nothing.
//!
//! Each test runs with `--cluster-name <its namespace>`, so its paths are
//! under `secret/clusters/<ns>/` (cleaned up by the harness) and "outside
//! the plan's scope" has a meaning a tampered file can violate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde_json::Value;

use crate::audit::{AuditEntries, audit_mark};
use crate::harness::annotation::{PATH, SECRETS};
use crate::harness::{CliOutput, PodRefs, TestNs};

const MOUNT: &str = "secret";

struct Case {
    ns: TestNs,
    dir: tempfile::TempDir,
}

impl Case {
    async fn new(label: &str) -> Self {
        Self {
            ns: TestNs::new(label).await,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn cluster(&self) -> &str {
        &self.ns.name
    }

    /// `vault-sync <args> --cluster-name <ns> -n <ns>` (leak-checked).
    async fn cli(&self, args: &[&str]) -> CliOutput {
        let mut full = args.to_vec();
        full.extend(["--cluster-name", self.cluster()]);
        self.ns.cli(&full).await
    }

    fn plan_file(&self) -> String {
        self.dir.path().join("plan.json").display().to_string()
    }

    /// `plan --out FILE`: exit 2 (changes pending) and the document.
    async fn save(&self) -> Value {
        let file = self.plan_file();
        self.cli(&["plan", "--out", &file]).await.assert_code(2);
        self.read_plan()
    }

    fn read_plan(&self) -> Value {
        let text = std::fs::read_to_string(self.plan_file()).expect("plan file");
        serde_json::from_str(&text).expect("plan file is JSON")
    }

    fn write_plan(&self, plan: &Value) {
        std::fs::write(self.plan_file(), plan.to_string()).expect("write plan file");
    }

    /// `run --plan FILE -o json`.
    async fn apply(&self, extra: &[&str]) -> CliOutput {
        let file = self.plan_file();
        let mut args = vec!["run", "--plan", file.as_str(), "-o", "json"];
        args.extend_from_slice(extra);
        self.cli(&args).await
    }

    /// `secret/clusters/<ns>/<rest>`.
    fn display(&self, rest: &str) -> String {
        format!("{MOUNT}/clusters/{}/{rest}", self.cluster())
    }

    fn rel(&self, rest: &str) -> String {
        format!("clusters/{}/{rest}", self.cluster())
    }

    /// An auto-discovery Deployment `name` with one Secret per entry.
    async fn app(&self, name: &str, secrets: &[&str]) {
        let mut refs = PodRefs::new();
        for s in secrets {
            let value = self.ns.value(&format!("{name}-{s}"));
            self.ns.secret(s, &[("password", &value)]).await;
            refs = refs.env_from(s);
        }
        let path = format!("{MOUNT}/{name}");
        self.ns.deployment(name, &[(PATH, &path)], &refs).await;
    }

    /// Rotates a Secret's value (a new resourceVersion).
    async fn rotate(&self, secret: &str) {
        let value = self.ns.value(&format!("{secret}-rotated"));
        self.ns.patch_secret(secret, &[("password", &value)]).await;
    }

    /// The CLI token's write requests since `mark`, with this test's names
    /// replaced, for comparing two namespaces' runs.
    fn writes(&self, entries: &AuditEntries) -> Vec<(String, String)> {
        let mut w: Vec<(String, String)> = entries
            .writes_by(&self.ns.audit_client())
            .into_iter()
            .map(|(op, p)| (op, p.replace(&self.ns.name, "NS")))
            .collect();
        w.sort();
        w
    }
}

/// path → result, from `run --plan -o json`.
fn results(out: &CliOutput) -> BTreeMap<String, String> {
    out.json()["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or_default().to_owned(),
                c["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The scenario of the first test, in any namespace.
async fn three_apps(case: &Case) {
    case.app("api", &["db", "cache"]).await;
    case.app("web", &["session"]).await;
    // Custom mode: two Secrets merged into one path, with a prefix.
    let a = case.ns.value("pay-a");
    let b = case.ns.value("pay-b");
    case.ns.secret("pay-a", &[("token", &a)]).await;
    case.ns
        .secret("pay-b", &[("key", &b), ("unused", "ignored-value")])
        .await;
    case.ns
        .deployment(
            "pay",
            &[
                (PATH, &format!("{MOUNT}/pay")),
                (
                    SECRETS,
                    r#"[{"name":"pay-a","keys":["token"]},{"name":"pay-b","keys":["key"],"prefix":"B_"}]"#,
                ),
            ],
            &PodRefs::new(),
        )
        .await;
}

#[tokio::test]
async fn an_unchanged_plan_applies_exactly_what_a_plain_run_writes() {
    let saved = Case::new("sp-same").await;
    let plain = Case::new("sp-plain").await;
    three_apps(&saved).await;
    three_apps(&plain).await;

    let plan = saved.save().await;
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["kind"], "vault-sync-plan");
    assert_eq!(plan["cluster"], saved.cluster());
    assert_eq!(plan["changes"].as_array().map(Vec::len), Some(4));
    let pay = plan["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["path"] == saved.display("pay")))
        .expect("pay's change");
    assert_eq!(pay["sources"].as_array().map(Vec::len), Some(2));
    assert!(pay["sources"][0]["resource_version"].is_string());
    assert_eq!(pay["vault"]["state"], "absent");

    // No value of the scenario, nor its base64 or SHA-256 form.
    let text = std::fs::read_to_string(saved.plan_file()).expect("plan file");
    let b64 = base64::engine::general_purpose::STANDARD;
    for value in saved
        .ns
        .values()
        .iter()
        .map(String::as_str)
        .chain(["ignored-value"])
    {
        for form in [value.to_owned(), b64.encode(value), sha256_hex(value)] {
            assert!(
                !text.contains(&form),
                "the plan file holds a form of a value"
            );
        }
    }

    let mark = audit_mark();
    let out = saved.apply(&[]).await;
    out.assert_code(0);
    assert!(results(&out).values().all(|r| r == "applied"), "{out}");
    let saved_writes = saved.writes(&mark.entries());

    let mark = audit_mark();
    plain.cli(&["run"]).await.assert_code(0);
    let plain_writes = plain.writes(&mark.entries());
    assert_eq!(saved_writes, plain_writes);

    // What was applied is what a fresh plan now finds in place.
    saved.cli(&["plan"]).await.assert_code(0);
    let stored = saved
        .ns
        .vault
        .kv2_read(MOUNT, &saved.rel("pay"))
        .await
        .expect("pay written");
    assert_eq!(stored.data.keys().collect::<Vec<_>>(), ["B_key", "token"]);
}

#[tokio::test]
async fn a_secret_changed_in_between_makes_only_its_paths_stale() {
    let case = Case::new("sp-rotated").await;
    case.app("api", &["db", "cache"]).await;
    case.save().await;
    case.rotate("db").await;

    let out = case.apply(&[]).await;
    out.assert_code(1);
    let r = results(&out);
    assert_eq!(r[&case.display("api/db")], "stale", "{out}");
    assert_eq!(r[&case.display("api/cache")], "applied", "{out}");
    let stale = out.json()["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["result"] == "stale").cloned())
        .expect("a stale change");
    assert_eq!(stale["error_type"], "stale");
    assert!(
        stale["message"]
            .as_str()
            .is_some_and(|m| m.contains("changed since the plan")),
        "{stale}"
    );
    assert!(
        case.ns
            .vault
            .kv2_read(MOUNT, &case.rel("api/db"))
            .await
            .is_none()
    );
    assert!(
        case.ns
            .vault
            .kv2_read(MOUNT, &case.rel("api/cache"))
            .await
            .is_some()
    );

    // The table says so too.
    case.save().await;
    case.rotate("db").await;
    let file = case.plan_file();
    let table = case.cli(&["run", "--plan", &file]).await;
    table.assert_code(1);
    assert!(table.stdout.contains("create STALE"), "{table}");
}

#[tokio::test]
async fn a_vault_path_written_by_someone_else_in_between_is_stale_and_untouched() {
    let case = Case::new("sp-raced").await;
    case.app("api", &["db"]).await;
    case.cli(&["run"]).await.assert_code(0);
    case.rotate("db").await;
    let plan = case.save().await;
    assert_eq!(plan["changes"][0]["action"], "update");
    assert_eq!(plan["changes"][0]["vault"]["version"], 1);

    let theirs = case.ns.value("theirs");
    let version = case
        .ns
        .vault
        .kv2_write(MOUNT, &case.rel("api/db"), &[("password", &theirs)])
        .await;
    assert_eq!(version, 2);
    let mark = audit_mark();
    let out = case.apply(&[]).await;
    out.assert_code(1);
    assert_eq!(results(&out)[&case.display("api/db")], "stale", "{out}");
    let writes = case.writes(&mark.entries());
    assert!(
        !writes.iter().any(|(_, p)| p.contains("api/db")),
        "{writes:?}"
    );
    let now = case
        .ns
        .vault
        .kv2_read(MOUNT, &case.rel("api/db"))
        .await
        .expect("path");
    assert_eq!(now.version, 2);
}

#[tokio::test]
async fn a_deployment_deleted_in_between_causes_no_delete_beyond_the_plan() {
    let case = Case::new("sp-gone").await;
    case.app("api", &["db"]).await;
    case.app("web", &["session"]).await;
    case.cli(&["run"]).await.assert_code(0);
    case.rotate("db").await;
    let plan = case.save().await;
    assert_eq!(plan["changes"].as_array().map(Vec::len), Some(1));
    case.ns.delete_deployment("web").await;

    let mark = audit_mark();
    let out = case.apply(&[]).await;
    out.assert_code(0);
    let deletes: Vec<_> = case
        .writes(&mark.entries())
        .into_iter()
        .filter(|(op, _)| op == "delete")
        .collect();
    assert_eq!(deletes, Vec::new());
    assert!(
        case.ns
            .vault
            .kv2_read(MOUNT, &case.rel("web/session"))
            .await
            .is_some()
    );
    // A plain plan would delete it: the saved one did not.
    let plain = case.cli(&["plan", "-o", "json"]).await;
    assert!(plain.stdout.contains("\"delete\""), "{plain}");
}

#[tokio::test]
async fn a_tampered_or_foreign_file_is_refused_before_any_vault_request() {
    let case = Case::new("sp-tamper").await;
    case.app("api", &["db"]).await;
    let plan = case.save().await;
    let client = case.ns.audit_client();

    let refused = |out: &CliOutput, needle: &str| {
        assert_eq!(out.code, 1, "{out}");
        assert!(out.stderr.contains("refused the saved plan"), "{out}");
        assert!(out.stderr.contains(needle), "{needle}: {out}");
    };
    // A path edited to lie outside the cluster's prefix.
    let mut edited = plan.clone();
    edited["changes"][0]["path"] = format!("{MOUNT}/other-team/db").into();
    case.write_plan(&edited);
    let mark = audit_mark();
    refused(&case.apply(&[]).await, "outside clusters/");
    assert_eq!(mark.entries().requests_by(&client), 0);

    // The file says another cluster.
    let mut edited = plan.clone();
    edited["cluster"] = "prod".into();
    case.write_plan(&edited);
    let mark = audit_mark();
    refused(&case.apply(&[]).await, "cluster");
    assert_eq!(mark.entries().requests_by(&client), 0);

    // The file is for this cluster, the flags are not.
    case.write_plan(&plan);
    let file = case.plan_file();
    let mark = audit_mark();
    let out = case
        .ns
        .cli(&["run", "--plan", &file, "--cluster-name", "elsewhere"])
        .await;
    refused(&out, "cluster");
    assert_eq!(mark.entries().requests_by(&client), 0);

    // A format this build does not know.
    let mut edited = plan.clone();
    edited["format_version"] = 99.into();
    case.write_plan(&edited);
    refused(&case.apply(&[]).await, "format_version 99");

    // Flags the file decides cannot be given again.
    case.write_plan(&plan);
    let out = case.apply(&["--adopt"]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(
        case.ns
            .vault
            .kv2_read(MOUNT, &case.rel("api/db"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn an_old_plan_is_refused_unless_the_age_check_is_off() {
    let case = Case::new("sp-old").await;
    case.app("api", &["db"]).await;
    let mut plan = case.save().await;
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    plan["created_at"] = humantime::format_rfc3339_seconds(two_hours_ago)
        .to_string()
        .into();
    case.write_plan(&plan);
    let mark = audit_mark();
    let out = case.apply(&[]).await;
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("--max-plan-age 1h"), "{out}");
    assert_eq!(mark.entries().requests_by(&case.ns.audit_client()), 0);
    case.apply(&["--max-plan-age", "3h"]).await.assert_code(0);
}

/// The cost of `run --plan` against a plain `run`, on a few hundred paths:
/// Vault requests from the audit log, and wall time (debug build).
#[tokio::test]
async fn run_plan_costs_no_more_vault_requests_than_run() {
    const APPS: usize = 100;
    const SECRETS_PER_APP: usize = 3;
    let plain = Case::new("sp-cost-run").await;
    let saved = Case::new("sp-cost-plan").await;
    for case in [&plain, &saved] {
        for a in 0..APPS {
            let names: Vec<String> = (0..SECRETS_PER_APP).map(|s| format!("a{a}-s{s}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            case.app(&format!("app{a}"), &names).await;
        }
    }
    let paths = APPS * SECRETS_PER_APP;
    let measure =
        |case: &Case, entries: &AuditEntries| entries.requests_by(&case.ns.audit_client());
    let mut rows = Vec::new();

    // Cold: every path created.
    let (m, t) = (audit_mark(), Instant::now());
    plain.cli(&["run", "-q"]).await.assert_code(0);
    rows.push(("cold", "run", measure(&plain, &m.entries()), t.elapsed()));
    let (m, t) = (audit_mark(), Instant::now());
    let file = saved.plan_file();
    saved
        .cli(&["plan", "-q", "--out", &file])
        .await
        .assert_code(2);
    rows.push((
        "cold",
        "plan --out",
        measure(&saved, &m.entries()),
        t.elapsed(),
    ));
    let (m, t) = (audit_mark(), Instant::now());
    saved
        .cli(&["run", "-q", "--plan", &file])
        .await
        .assert_code(0);
    rows.push((
        "cold",
        "run --plan",
        measure(&saved, &m.entries()),
        t.elapsed(),
    ));

    // Drift: a tenth of the Secrets rotated.
    for case in [&plain, &saved] {
        for a in 0..paths / 10 {
            case.rotate(&format!("a{a}-s0")).await;
        }
    }
    let (m, t) = (audit_mark(), Instant::now());
    plain.cli(&["run", "-q"]).await.assert_code(0);
    rows.push((
        "drift 10%",
        "run",
        measure(&plain, &m.entries()),
        t.elapsed(),
    ));
    let (m, t) = (audit_mark(), Instant::now());
    saved
        .cli(&["plan", "-q", "--out", &file])
        .await
        .assert_code(2);
    rows.push((
        "drift 10%",
        "plan --out",
        measure(&saved, &m.entries()),
        t.elapsed(),
    ));
    let (m, t) = (audit_mark(), Instant::now());
    saved
        .cli(&["run", "-q", "--plan", &file])
        .await
        .assert_code(0);
    rows.push((
        "drift 10%",
        "run --plan",
        measure(&saved, &m.entries()),
        t.elapsed(),
    ));

    println!("saved-plan cost over {paths} paths (Vault requests from the audit log):");
    for (scenario, command, requests, time) in &rows {
        println!("  {scenario:<10} {command:<11} {requests:>5} requests  {time:>8.2?}");
    }
    let requests = |scenario: &str, command: &str| {
        rows.iter()
            .find(|r| r.0 == scenario && r.1 == command)
            .map_or(0, |r| r.2)
    };
    // Each saved change costs one re-read of its path: what `run` reads
    // anyway, for the changed paths only.
    for scenario in ["cold", "drift 10%"] {
        assert!(
            requests(scenario, "run --plan") <= requests(scenario, "run"),
            "{rows:?}"
        );
    }
}
