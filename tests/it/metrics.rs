//! Metrics end to end: what a run pushes to the real Pushgateway (every
//! family, seeded label sets, no path in a label), the `--metrics-file` in
//! exposition format, failed pushes and failed runs, early failures and an
//! unreachable Vault counted. JSON logs and progress bars are in `output`.
//!
//! Every test pushes to Pushgateway groups of its own
//! (`--push-label test=<unique>`, i.e. the group
//! `/metrics/job/vault-sync/cluster/default/command/<command>/test/<unique>`),
//! reads them back through `GET /api/v1/metrics`, and deletes them at the
//! end. Every output (stdout, stderr, metrics file, Pushgateway API) goes
//! through the leak guard.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::harness::annotation::{PATH, SECRETS};
use crate::harness::{
    CliOutput, PodRefs, STACK, TestNs, block_on_own_runtime, init_crypto, now_secs, random_hex,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every family a successful `run` pushes.
const RUN_FAMILIES: &[&str] = &[
    "vault_sync_last_run_sync_attempts",
    "vault_sync_sync_duration_seconds",
    "vault_sync_secrets_discovered",
    "vault_sync_last_run_vault_write_errors",
    "vault_sync_last_run_errors",
    "vault_sync_last_run_auth_attempts",
    "vault_sync_last_success_timestamp_seconds",
    "vault_sync_last_run_timestamp_seconds",
    "vault_sync_run_duration_seconds",
    "vault_sync_last_run_paths",
    "vault_sync_last_run_vault_requests",
    "vault_sync_build_info",
];

/// The error types `last_run_vault_write_errors` starts at zero: the
/// kinds of a failed Vault write or delete, as the library lists them.
fn write_error_types() -> Vec<&'static str> {
    vault_sync::metrics::VAULT_WRITE_ERROR_TYPES
        .iter()
        .map(|k| k.label())
        .collect()
}

/// Every error type `last_run_errors` starts at zero: the library's closed
/// set (the push must carry exactly it).
fn error_types() -> Vec<&'static str> {
    vault_sync::core::error_kind::ErrorKind::ALL
        .iter()
        .map(|k| k.label())
        .collect()
}

/// The actions `paths` always reports.
const PATH_ACTIONS: &[&str] = &[
    "create",
    "update",
    "delete",
    "unchanged",
    "kept",
    "conflict",
    "refused",
    "error",
];

// --- Pushgateway ----------------------------------------------------------------

/// One test's own Pushgateway group of `run` (see [`PushGroup::of`] for
/// the other commands'); deleted on drop.
pub(crate) struct PushGroup {
    pub(crate) test: String,
    /// `--cluster-name` of the runs (`default` unless [`Self::in_cluster`]).
    cluster: String,
    command: &'static str,
    http: reqwest::Client,
}

impl PushGroup {
    pub(crate) fn new(label: &str) -> Self {
        init_crypto();
        Self {
            test: format!("obs-{label}-{}", random_hex(8)),
            cluster: "default".to_owned(),
            command: "run",
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
        }
    }

    /// Like [`Self::new`], for runs with `--cluster-name <cluster>`.
    pub(crate) fn in_cluster(label: &str, cluster: &str) -> Self {
        let mut group = Self::new(label);
        group.cluster = cluster.to_owned();
        group
    }

    /// The group the same `--push-label` gives `command`.
    pub(crate) fn of(&self, command: &'static str) -> Self {
        Self {
            test: self.test.clone(),
            cluster: self.cluster.clone(),
            command,
            http: self.http.clone(),
        }
    }

    /// The `--push-label` argument.
    pub(crate) fn push_label(&self) -> String {
        format!("test={}", self.test)
    }

    /// The group's URL.
    fn url(&self) -> String {
        format!(
            "{}/metrics/job/vault-sync/cluster/{}/command/{}/test/{}",
            STACK.pushgateway_url(),
            self.cluster,
            self.command,
            self.test
        )
    }

    /// The raw `GET /api/v1/metrics` body.
    async fn api_text(&self) -> String {
        let url = format!("{}/api/v1/metrics", STACK.pushgateway_url());
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text().await.expect("Pushgateway API body")
    }

    /// This test's group of this command (the one whose `test` and
    /// `command` labels are ours), and the raw API text it came from.
    pub(crate) async fn fetch(&self) -> (Option<Value>, String) {
        let text = self.api_text().await;
        let api: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("Pushgateway API is not JSON ({e}): {text}"));
        assert_eq!(api["status"], "success", "{text}");
        let groups: Vec<Value> = api["data"]
            .as_array()
            .unwrap_or_else(|| panic!("Pushgateway API has no data array: {text}"))
            .iter()
            .filter(|g| {
                g["labels"]["test"] == self.test.as_str() && g["labels"]["command"] == self.command
            })
            .cloned()
            .collect();
        assert!(
            groups.len() <= 1,
            "more than one group with test={} command={}: {groups:?}",
            self.test,
            self.command
        );
        (groups.into_iter().next(), text)
    }

    /// The group, which must exist.
    pub(crate) async fn group(&self) -> (Value, String) {
        let (group, text) = self.fetch().await;
        let group = group.unwrap_or_else(|| {
            panic!(
                "no Pushgateway group test={} command={}:\n{text}",
                self.test, self.command
            )
        });
        assert_eq!(group["labels"]["job"], "vault-sync", "{group}");
        assert_eq!(group["labels"]["cluster"], self.cluster.as_str(), "{group}");
        assert_eq!(group["labels"]["command"], self.command, "{group}");
        assert_eq!(group["labels"]["test"], self.test.as_str(), "{group}");
        assert_eq!(group["last_push_successful"], true, "{group}");
        (group, text)
    }

    pub(crate) async fn delete(&self) {
        let url = self.url();
        let resp = self
            .http
            .delete(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
        assert!(
            resp.status().is_success(),
            "DELETE {url}: {}",
            resp.status()
        );
    }
}

impl Drop for PushGroup {
    fn drop(&mut self) {
        // Best effort, also when the test panicked; the runtime is going away.
        let url = self.url();
        block_on_own_runtime(async move {
            if let Ok(client) = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
            {
                let _ = client.delete(&url).send().await;
            }
        });
    }
}

/// The samples of `family` in a group: (labels, sample object).
pub(crate) fn samples(group: &Value, family: &str) -> Vec<(BTreeMap<String, String>, Value)> {
    group[family]["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("family {family} missing from the group:\n{group:#}"))
        .iter()
        .map(|m| {
            let labels = m["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            (labels, m.clone())
        })
        .collect()
}

pub(crate) fn num(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The one sample of `family` whose labels include `want`, as a float.
pub(crate) fn sample_value(group: &Value, family: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<Value> = samples(group, family)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, m)| m)
        .collect();
    assert!(
        found.len() <= 1,
        "several samples of {family} match {want:?}: {found:?}"
    );
    found.first().map(|m| num(&m["value"]))
}

/// The non-zero samples of `family`, by the value of its label `label`.
pub(crate) fn nonzero_by(group: &Value, family: &str, label: &str) -> BTreeMap<String, f64> {
    samples(group, family)
        .into_iter()
        .map(|(labels, m)| {
            (
                labels.get(label).cloned().unwrap_or_default(),
                num(&m["value"]),
            )
        })
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

/// Every value of the closed set `set` is a series of `family` (labelled
/// `label`), and no other value is.
fn assert_seeded(group: &Value, family: &str, label: &str, set: &[&str]) {
    let mut got: Vec<String> = samples(group, family)
        .into_iter()
        .map(|(labels, _)| labels.get(label).cloned().unwrap_or_default())
        .collect();
    got.sort();
    let mut want: Vec<String> = set.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(got, want, "{family}{{{label}}}");
}

/// The value of the exposition line `name{labels}` (labels as written).
pub(crate) fn exposition_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
}

/// Like [`sample_value`], but the sample must exist.
pub(crate) fn value(group: &Value, family: &str, want: &[(&str, &str)]) -> f64 {
    sample_value(group, family, want)
        .unwrap_or_else(|| panic!("no sample {family}{want:?} in the group:\n{group:#}"))
}

/// The group's label values: none carries a Vault path (or anything with '/').
fn assert_no_path_labels(group: &Value) {
    let Some(obj) = group.as_object() else {
        panic!("group is not an object: {group}");
    };
    for (family, f) in obj {
        let Some(metrics) = f["metrics"].as_array() else {
            continue;
        };
        for m in metrics {
            for (k, v) in m["labels"].as_object().into_iter().flatten() {
                let v = v.as_str().unwrap_or_default();
                assert!(
                    !v.contains('/'),
                    "label {k}={v:?} of {family} looks like a path"
                );
            }
        }
    }
}

// --- fixtures ---------------------------------------------------------------------

/// `PUSHGATEWAY_URL` of the stack.
fn pushgateway_env() -> [(&'static str, &'static str); 1] {
    [("PUSHGATEWAY_URL", STACK.pushgateway_url())]
}

/// Runs `args` with `PUSHGATEWAY_URL` set and `--push-label test=<unique>`.
pub(crate) async fn cli_push(ns: &TestNs, group: &PushGroup, args: &[&str]) -> CliOutput {
    let label = group.push_label();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--push-label", label.as_str()]);
    ns.cli_env(&full, &pushgateway_env()).await
}

/// Replaces the pod template's containers with one whose `envFrom` lists
/// `secrets`.
async fn set_env_from(ns: &TestNs, deployment: &str, secrets: &[&str]) {
    let env_from: Vec<Value> = secrets
        .iter()
        .map(|s| json!({"secretRef": {"name": s}}))
        .collect();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "app",
        "image": "busybox",
        "command": ["sleep", "3600"],
        "envFrom": env_from,
    }]}}}});
    ns.deployments_api()
        .patch(deployment, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap_or_else(|e| panic!("patch {}/{deployment}: {e}", ns.name));
}

/// Three broken Deployments: a missing Secret (`nosecret` → Secret
/// `missing`), a missing key (`nokey` → Secret `present` lacks `absent`), and
/// an annotation that is not JSON (`badjson`).
pub(crate) async fn broken_deployments(ns: &TestNs) {
    ns.deployment(
        "nosecret",
        &[(PATH, &ns.path("secret", "nosecret"))],
        &PodRefs::new().env_from("missing"),
    )
    .await;
    ns.secret("present", &[("here", &ns.value("present-here"))])
        .await;
    ns.deployment(
        "nokey",
        &[
            (PATH, &ns.path("secret", "nokey")),
            (SECRETS, r#"[{"name": "present", "keys": ["absent"]}]"#),
        ],
        &PodRefs::new(),
    )
    .await;
    ns.deployment(
        "badjson",
        &[
            (PATH, &ns.path("secret", "badjson")),
            (SECRETS, "this is {not json"),
        ],
        &PodRefs::new(),
    )
    .await;
}

// --- Prometheus text format ---------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="x",b="y"}` (the braces included) → labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &rest[eq + 1 + 1 + end + 1..];
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// Checks `text` is Prometheus text exposition format: every line a comment
/// or `name{labels} value [timestamp]` / `name value [timestamp]` with a
/// float value, and every sample's family declared with `# HELP` and
/// `# TYPE` before it. Returns the samples by family.
fn parse_exposition(text: &str) -> BTreeMap<String, Vec<Sample>> {
    assert!(
        text.ends_with('\n'),
        "exposition text must end with a newline:\n{text}"
    );
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), doc) => {
                    assert!(is_metric_name(name), "bad name in HELP, {}", at());
                    assert!(
                        help.insert(name.to_owned(), doc.unwrap_or("").to_owned())
                            .is_none(),
                        "second HELP, {}",
                        at()
                    );
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_metric_name(name), "bad name in TYPE, {}", at());
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&kind.trim()),
                        "bad type, {}",
                        at()
                    );
                    assert!(
                        types
                            .insert(name.to_owned(), kind.trim().to_owned())
                            .is_none(),
                        "second TYPE, {}",
                        at()
                    );
                }
                (Some("TYPE"), _, None) => panic!("TYPE without a type, {}", at()),
                _ => {} // any other comment
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{}", at()));
        let name = &line[..name_end];
        assert!(is_metric_name(name), "bad metric name, {}", at());
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).unwrap_or_else(|e| panic!("{e}, {}", at()))
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        assert!(rest.starts_with(' '), "no space before the value, {}", at());
        let fields: Vec<&str> = rest.split_whitespace().collect();
        assert!(
            (1..=2).contains(&fields.len()),
            "expected `value [timestamp]`, {}",
            at()
        );
        let value: f64 = fields[0]
            .parse()
            .unwrap_or_else(|_| panic!("value is not a float, {}", at()));
        if let Some(ts) = fields.get(1) {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("timestamp is not an integer, {}", at()));
        }
        let family = [
            name,
            name.strip_suffix("_bucket").unwrap_or(""),
            name.strip_suffix("_sum").unwrap_or(""),
            name.strip_suffix("_count").unwrap_or(""),
        ]
        .into_iter()
        .find(|f| {
            !f.is_empty()
                && types
                    .get(*f)
                    .is_some_and(|t| *f == name || t == "histogram" || t == "summary")
        })
        .unwrap_or_else(|| panic!("sample before its family's # TYPE, {}", at()));
        assert!(
            help.contains_key(family),
            "family {family} has no # HELP before its sample, {}",
            at()
        );
        out.entry(family.to_owned()).or_default().push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for family in types.keys().chain(help.keys()) {
        assert!(
            types.contains_key(family) && help.contains_key(family),
            "family {family} lacks # HELP or # TYPE"
        );
    }
    out
}

fn file_value(families: &BTreeMap<String, Vec<Sample>>, name: &str, want: &[(&str, &str)]) -> f64 {
    let family = families
        .iter()
        .find(|(_, samples)| samples.iter().any(|s| s.name == name))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no sample {name} in the metrics file"));
    let found: Vec<&Sample> = family
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "samples {name}{want:?}: {found:?}");
    found[0].value
}

#[test]
fn exposition_parser_accepts_and_rejects() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"a\\\"b\"} 3\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n\
                # HELP g G.\n# TYPE g gauge\ng 1.7e9\n";
    let parsed = parse_exposition(good);
    assert_eq!(parsed["a_total"][0].labels["y"], "a\"b");
    assert_eq!(parsed["h"].len(), 3);
    assert!((file_value(&parsed, "g", &[]) - 1.7e9).abs() < 1.0);
    for bad in [
        "a 1\n",                                   // no HELP/TYPE
        "# HELP a A.\n# TYPE a gauge\na one\n",    // not a float
        "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n", // unquoted label
        "# TYPE a gauge\na 1\n",                   // no HELP
        "# HELP a A.\n# TYPE a gauge\na_sum 1\n",  // suffix of a gauge
        "# HELP a A.\n# TYPE a gauge\na 1",        // no final newline
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_exposition(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

// --- 1. a successful run pushes every family --------------------------------------

/// A Deployment with two Secrets, one of whose paths already exists
/// unchanged: the group holds every family with the expected labels and
/// values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_run_pushes_every_family() {
    let ns = TestNs::new("obs-push").await;
    let group = PushGroup::new("push");
    let base = ns.path("secret", "web");
    ns.secret("db", &[("DB_PASSWORD", &ns.value("db-pass"))])
        .await;
    ns.secret(
        "api",
        &[
            ("API_TOKEN", &ns.value("api-token")),
            ("API_USER", &ns.value("api-user")),
        ],
    )
    .await;
    ns.deployment("web", &[(PATH, &base)], &PodRefs::new().env_from("db"))
        .await;
    // First run, without a Pushgateway: creates <base>/db.
    ns.cli(&["run"]).await.assert_code(0);
    assert!(
        group.fetch().await.0.is_none(),
        "a run without PUSHGATEWAY_URL pushed to the group"
    );

    // Now the Deployment references both: db is unchanged, api is created.
    set_env_from(&ns, "web", &["db", "api"]).await;
    let before = now_secs();
    let started = Instant::now();
    let out = cli_push(&ns, &group, &["run", "-o", "json"]).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = now_secs();
    out.assert_code(0);
    let summary = &out.json()["summary"];
    assert_eq!(summary["create"], 1, "{out}");
    assert_eq!(summary["unchanged"], 1, "{out}");

    let (g, api_text) = group.group().await;
    let keys: Vec<&String> = g["labels"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        ["cluster", "command", "job", "test"],
        "the grouping key is job, cluster, command and the push labels: {g}"
    );
    for family in RUN_FAMILIES {
        assert!(g.get(*family).is_some(), "family {family} missing:\n{g:#}");
    }
    let nsn = ns.name.as_str();

    // Per Deployment.
    assert_eq!(
        value(
            &g,
            "vault_sync_last_run_sync_attempts",
            &[
                ("namespace", nsn),
                ("deployment", "web"),
                ("result", "success")
            ]
        ),
        1.0
    );
    assert_eq!(
        samples(&g, "vault_sync_last_run_sync_attempts").len(),
        1,
        "{g:#}"
    );
    assert_eq!(
        value(
            &g,
            "vault_sync_secrets_discovered",
            &[("namespace", nsn), ("deployment", "web")]
        ),
        2.0
    );
    // Per-run values are gauges: a counter restarted by every run cannot
    // be read with rate() from a Pushgateway.
    assert_eq!(g["vault_sync_last_run_sync_attempts"]["type"], "GAUGE");
    assert_eq!(g["vault_sync_secrets_discovered"]["type"], "GAUGE");

    // One write (the create), timed.
    let hist = &g["vault_sync_sync_duration_seconds"];
    assert_eq!(hist["type"], "HISTOGRAM", "{hist:#}");
    let h = &hist["metrics"][0];
    assert_eq!(num(&h["count"]), 1.0, "{hist:#}");
    assert!(num(&h["sum"]) > 0.0, "{hist:#}");
    assert_eq!(num(&h["buckets"]["+Inf"]), 1.0, "{hist:#}");

    // No errors, every known error type at zero.
    for error_type in write_error_types() {
        assert_eq!(
            value(
                &g,
                "vault_sync_last_run_vault_write_errors",
                &[("error_type", error_type)]
            ),
            0.0,
            "error_type {error_type}"
        );
    }
    for (labels, m) in samples(&g, "vault_sync_last_run_vault_write_errors") {
        assert_eq!(num(&m["value"]), 0.0, "{labels:?}");
    }
    assert_seeded(
        &g,
        "vault_sync_last_run_vault_write_errors",
        "error_type",
        &write_error_types(),
    );
    assert_seeded(
        &g,
        "vault_sync_last_run_errors",
        "error_type",
        &error_types(),
    );
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_errors", "error_type"),
        BTreeMap::new(),
        "errors after a clean run"
    );
    for family in [
        "vault_sync_last_run_secret_not_found_errors",
        "vault_sync_last_run_secret_key_missing_errors",
        "vault_sync_last_run_config_parse_errors",
    ] {
        assert!(
            g.get(family).is_none(),
            "{family} present after a clean run:\n{g:#}"
        );
    }

    // Token auth, one login.
    assert_eq!(
        value(
            &g,
            "vault_sync_last_run_auth_attempts",
            &[("method", "token"), ("result", "success")]
        ),
        1.0
    );
    assert_eq!(
        samples(&g, "vault_sync_last_run_auth_attempts").len(),
        1,
        "{g:#}"
    );

    // Batch-job gauges.
    let last_run = value(&g, "vault_sync_last_run_timestamp_seconds", &[]);
    let last_success = value(&g, "vault_sync_last_success_timestamp_seconds", &[]);
    assert!(
        (before - 1.0..=after + 1.0).contains(&last_run),
        "last_run {last_run} not within [{before}, {after}]"
    );
    assert_eq!(
        last_success, last_run,
        "a successful run is the last success"
    );
    let run_duration = value(&g, "vault_sync_run_duration_seconds", &[]);
    assert!(
        run_duration > 0.0 && run_duration <= elapsed,
        "run_duration {run_duration} vs elapsed {elapsed}"
    );

    // Plan counts by action, every action present.
    for action in PATH_ACTIONS {
        let expected = match *action {
            "create" | "unchanged" => 1.0,
            _ => 0.0,
        };
        assert_eq!(
            value(&g, "vault_sync_last_run_paths", &[("action", action)]),
            expected,
            "paths{{action={action}}}"
        );
    }

    // Vault requests: reads, the 404 of the new path, writes; known labels only.
    let mut by_class: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (labels, m) in samples(&g, "vault_sync_last_run_vault_requests") {
        let method = labels.get("method").cloned().unwrap_or_default();
        let class = labels.get("status_class").cloned().unwrap_or_default();
        assert!(
            ["GET", "POST", "PUT", "PATCH", "DELETE", "LIST"].contains(&method.as_str()),
            "unexpected method {method}"
        );
        assert!(
            ["2xx", "3xx", "4xx", "5xx", "other", "error"].contains(&class.as_str()),
            "unexpected status_class {class}"
        );
        by_class.insert((method, class), num(&m["value"]));
    }
    let get = |m: &str, c: &str| by_class.get(&(m.into(), c.into())).copied().unwrap_or(0.0);
    assert!(get("GET", "2xx") >= 2.0, "{by_class:?}");
    assert!(
        get("GET", "4xx") >= 1.0,
        "the new path reads 404: {by_class:?}"
    );
    assert!(
        get("POST", "2xx") + get("PUT", "2xx") >= 1.0,
        "{by_class:?}"
    );
    for class in ["5xx", "error"] {
        for method in ["GET", "POST", "PUT"] {
            assert_eq!(get(method, class), 0.0, "{method} {class}: {by_class:?}");
        }
    }

    assert_eq!(
        value(&g, "vault_sync_build_info", &[("version", VERSION)]),
        1.0
    );
    assert_no_path_labels(&g);

    ns.assert_no_leak(&[&out.stdout, &out.stderr, &api_text]);
    group.delete().await;
    assert!(
        group.fetch().await.0.is_none(),
        "group still there after DELETE"
    );
}

// --- 2. a failed run merges, keeping the last success ------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_pushes_errors_and_keeps_last_success() {
    let ns = TestNs::new("obs-fail").await;
    let group = PushGroup::new("fail");
    ns.secret("good", &[("TOKEN", &ns.value("good-token"))])
        .await;
    ns.deployment(
        "good",
        &[(PATH, &ns.path("secret", "good"))],
        &PodRefs::new().env_from("good"),
    )
    .await;
    let ok = cli_push(&ns, &group, &["run"]).await;
    ok.assert_code(0);
    let (g, _) = group.group().await;
    let success_1 = value(&g, "vault_sync_last_success_timestamp_seconds", &[]);
    let run_1 = value(&g, "vault_sync_last_run_timestamp_seconds", &[]);
    assert_eq!(success_1, run_1);

    // Make the second run's timestamp visibly later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    broken_deployments(&ns).await;
    let failed = cli_push(&ns, &group, &["run"]).await;
    failed.assert_code(1);

    let (g, api_text) = group.group().await;
    let nsn = ns.name.as_str();
    assert_eq!(
        value(
            &g,
            "vault_sync_last_run_secret_not_found_errors",
            &[("namespace", nsn), ("secret", "missing")]
        ),
        1.0
    );
    assert_eq!(
        samples(&g, "vault_sync_last_run_secret_not_found_errors").len(),
        1,
        "{g:#}"
    );
    assert_eq!(
        value(
            &g,
            "vault_sync_last_run_secret_key_missing_errors",
            &[("namespace", nsn), ("secret", "present")]
        ),
        1.0
    );
    assert_eq!(
        samples(&g, "vault_sync_last_run_secret_key_missing_errors").len(),
        1,
        "{g:#}"
    );
    assert_eq!(
        value(
            &g,
            "vault_sync_last_run_config_parse_errors",
            &[
                ("namespace", nsn),
                ("deployment", "badjson"),
                ("error_type", "invalid_secrets_json")
            ]
        ),
        1.0
    );
    assert_eq!(
        samples(&g, "vault_sync_last_run_config_parse_errors").len(),
        1,
        "{g:#}"
    );

    for (deployment, result) in [
        ("good", "success"),
        ("nosecret", "error"),
        ("nokey", "error"),
        ("badjson", "error"),
    ] {
        assert_eq!(
            value(
                &g,
                "vault_sync_last_run_sync_attempts",
                &[
                    ("namespace", nsn),
                    ("deployment", deployment),
                    ("result", result)
                ]
            ),
            1.0,
            "{deployment} {result}"
        );
    }
    assert_eq!(
        samples(&g, "vault_sync_last_run_sync_attempts").len(),
        4,
        "{g:#}"
    );
    assert_eq!(
        value(&g, "vault_sync_last_run_paths", &[("action", "error")]),
        3.0
    );
    assert_eq!(
        value(&g, "vault_sync_last_run_paths", &[("action", "unchanged")]),
        1.0
    );
    assert_eq!(
        value(&g, "vault_sync_last_run_paths", &[("action", "create")]),
        0.0
    );

    let run_2 = value(&g, "vault_sync_last_run_timestamp_seconds", &[]);
    assert!(
        run_2 > run_1 + 1.0,
        "last_run {run_2} not newer than {run_1}"
    );
    let success_2 = value(&g, "vault_sync_last_success_timestamp_seconds", &[]);
    assert_eq!(
        success_2, success_1,
        "a failed run changed last_success_timestamp"
    );
    for family in RUN_FAMILIES {
        assert!(g.get(*family).is_some(), "family {family} missing:\n{g:#}");
    }
    // Errors by type, once each; nothing was written, so no write error.
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_errors", "error_type"),
        BTreeMap::from([
            ("invalid_secrets_json".to_owned(), 1.0),
            ("secret_key_missing".to_owned(), 1.0),
            ("secret_not_found".to_owned(), 1.0),
        ]),
        "{:#}",
        g["vault_sync_last_run_errors"]
    );
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_vault_write_errors", "error_type"),
        BTreeMap::new(),
        "Deployment errors counted as Vault write errors"
    );
    assert_no_path_labels(&g);

    // A third run, failing again, with two of the broken Deployments gone:
    // the group is replaced whole (no series of theirs is left from the
    // second run), and the last success is still the first run's.
    for gone in ["nosecret", "badjson"] {
        ns.delete_deployment(gone).await;
    }
    let third = cli_push(&ns, &group, &["run"]).await;
    third.assert_code(1);
    let (g, _) = group.group().await;
    let deployments: Vec<String> = samples(&g, "vault_sync_last_run_sync_attempts")
        .into_iter()
        .map(|(l, _)| l["deployment"].clone())
        .collect();
    assert_eq!(deployments, ["good", "nokey"], "{g:#}");
    assert!(
        g.get("vault_sync_last_run_secret_not_found_errors")
            .is_none()
            && g.get("vault_sync_last_run_config_parse_errors").is_none(),
        "series of the previous run survived:\n{g:#}"
    );
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_errors", "error_type"),
        BTreeMap::from([("secret_key_missing".to_owned(), 1.0)])
    );
    assert_eq!(
        value(&g, "vault_sync_last_success_timestamp_seconds", &[]),
        success_1,
        "a second failed run changed last_success_timestamp"
    );

    ns.assert_no_leak(&[
        &ok.stdout,
        &ok.stderr,
        &failed.stdout,
        &failed.stderr,
        &third.stdout,
        &third.stderr,
        &api_text,
    ]);
    group.delete().await;
}

// --- 3. the metrics file; plan pushes only with --push-metrics -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_file_is_exposition_format() {
    let ns = TestNs::new("obs-file").await;
    let group = PushGroup::new("file");
    ns.secret("one", &[("K1", &ns.value("one-k1"))]).await;
    ns.secret("two", &[("K2", &ns.value("two-k2"))]).await;
    ns.deployment(
        "app",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("one").volume("two"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault-sync.prom");
    let file_arg = file.display().to_string();

    let out = cli_push(&ns, &group, &["run", "--metrics-file", &file_arg]).await;
    out.assert_code(0);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("metrics file {file_arg}: {e}\n{out}"));
    let families = parse_exposition(&text);
    for family in RUN_FAMILIES {
        assert!(families.contains_key(*family), "{family} missing:\n{text}");
    }
    let nsn = ns.name.as_str();
    assert_eq!(
        file_value(
            &families,
            "vault_sync_last_run_paths",
            &[("action", "create")]
        ),
        2.0
    );
    assert_eq!(
        file_value(
            &families,
            "vault_sync_secrets_discovered",
            &[("namespace", nsn), ("deployment", "app")]
        ),
        2.0
    );
    assert_eq!(
        file_value(
            &families,
            "vault_sync_last_run_sync_attempts",
            &[
                ("namespace", nsn),
                ("deployment", "app"),
                ("result", "success")
            ]
        ),
        1.0
    );
    assert_eq!(
        file_value(&families, "vault_sync_sync_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        file_value(&families, "vault_sync_build_info", &[("version", VERSION)]),
        1.0
    );
    // The file and the push are the same numbers.
    let (g, api_text) = group.group().await;
    assert_eq!(
        value(&g, "vault_sync_last_run_timestamp_seconds", &[]),
        file_value(&families, "vault_sync_last_run_timestamp_seconds", &[])
    );
    // Written atomically: no temporary file left behind.
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read tempdir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(left, vec![file.clone()], "files in the metrics dir");

    // A failed run rewrites the file with the previous last success.
    let success = file_value(&families, "vault_sync_last_success_timestamp_seconds", &[]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ns.deployment(
        "broken",
        &[(PATH, &ns.path("secret", "broken"))],
        &PodRefs::new().env_from("missing"),
    )
    .await;
    let failed = ns.cli(&["run", "--metrics-file", &file_arg]).await;
    failed.assert_code(1);
    let failed_text = std::fs::read_to_string(&file).expect("metrics file");
    let failed_families = parse_exposition(&failed_text);
    assert_eq!(
        file_value(
            &failed_families,
            "vault_sync_last_success_timestamp_seconds",
            &[]
        ),
        success,
        "a failed run moved or dropped the file's last success:\n{failed_text}"
    );
    assert!(
        file_value(
            &failed_families,
            "vault_sync_last_run_timestamp_seconds",
            &[]
        ) > success + 1.0
    );
    ns.assert_no_leak(&[&text, &api_text, &failed_text]);
    group.delete().await;
}

/// Secret `secret` with one key (value `ns.value(label)`), and Deployment
/// `app` writing it to `secret/it/<ns>/app`.
async fn app_with_secret(ns: &TestNs, secret: &str, key: &str, label: &str) {
    ns.secret(secret, &[(key, &ns.value(label))]).await;
    ns.deployment(
        "app",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from(secret),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_pushes_only_with_push_metrics() {
    let ns = TestNs::new("obs-plan").await;
    let group = PushGroup::new("plan").of("plan");
    app_with_secret(&ns, "cfg", "C", "cfg-c").await;

    let plain = cli_push(&ns, &group, &["plan"]).await;
    plain.assert_code(2);
    let (found, text) = group.fetch().await;
    assert!(
        found.is_none(),
        "plain plan pushed metrics:\n{text}\n{plain}"
    );

    let pushed = cli_push(&ns, &group, &["plan", "--push-metrics"]).await;
    pushed.assert_code(2);
    let (g, api_text) = group.group().await;
    for family in RUN_FAMILIES {
        if *family == "vault_sync_sync_duration_seconds" {
            // plan writes nothing; the histogram is still there, empty.
            assert_eq!(num(&g[family]["metrics"][0]["count"]), 0.0, "{g:#}");
            continue;
        }
        assert!(g.get(*family).is_some(), "family {family} missing:\n{g:#}");
    }
    assert_eq!(
        value(&g, "vault_sync_last_run_paths", &[("action", "create")]),
        1.0
    );
    // Changes pending are not a failure.
    assert_eq!(
        value(&g, "vault_sync_last_success_timestamp_seconds", &[]),
        value(&g, "vault_sync_last_run_timestamp_seconds", &[])
    );
    // A plan writes nothing.
    assert!(
        ns.vault
            .kv2_read("secret", &ns.rel("app/cfg"))
            .await
            .is_none(),
        "plan wrote to Vault"
    );
    // The plan's group is its own: the CronJob's run group is untouched.
    let (run_group, text) = group.of("run").fetch().await;
    assert!(run_group.is_none(), "plan pushed to the run group:\n{text}");
    ns.assert_no_leak(&[&api_text]);
    group.delete().await;
}

// --- 4. a failed push ------------------------------------------------------------------

/// A local port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_push_is_a_warning_unless_required() {
    let ns = TestNs::new("obs-nopush").await;
    app_with_secret(&ns, "s", "K", "k").await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let env = [("PUSHGATEWAY_URL", dead.as_str())];

    let warned = ns.cli_env(&["run"], &env).await;
    warned.assert_code(0);
    assert!(
        warned.stderr.contains("WARN") && warned.stderr.contains("pushing metrics to"),
        "no warning about the failed push:\n{warned}"
    );
    assert!(
        warned.stderr.contains(&dead),
        "the warning names the URL:\n{warned}"
    );
    // The run itself was applied.
    assert!(
        ns.vault
            .kv2_read("secret", &ns.rel("app/s"))
            .await
            .is_some(),
        "the run did not write:\n{warned}"
    );

    let required = ns.cli_env(&["run", "--require-push"], &env).await;
    required.assert_code(1);
    assert!(
        required.stderr.contains("ERROR") && required.stderr.contains("pushing metrics to"),
        "no error about the failed push:\n{required}"
    );

    // --require-push with a working Pushgateway is fine.
    let group = PushGroup::new("nopush");
    let fine = cli_push(&ns, &group, &["run", "--require-push"]).await;
    fine.assert_code(0);
    assert!(!fine.stderr.contains("pushing metrics to"), "{fine}");
    group.group().await;
    group.delete().await;
}

/// A `--metrics-file` that cannot be written is a warning, and must not
/// keep the metrics from the Pushgateway (two independent sinks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_metrics_file_does_not_stop_the_push() {
    let ns = TestNs::new("obs-badfile").await;
    let group = PushGroup::new("badfile");
    app_with_secret(&ns, "s", "K", "k").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("no-such-dir").join("vault-sync.prom");
    let file_arg = file.display().to_string();
    let out = cli_push(&ns, &group, &["run", "--metrics-file", &file_arg]).await;
    out.assert_code(0);
    assert!(
        out.stderr.contains("WARN") && out.stderr.contains(&file_arg),
        "no warning about the metrics file:\n{out}"
    );
    let (found, text) = group.fetch().await;
    assert!(
        found.is_some(),
        "an unwritable --metrics-file kept the metrics from the Pushgateway:\n{out}\n{text}"
    );
    group.delete().await;
}

/// Both outputs failing: each failure is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_metric_outputs_failing_are_both_reported() {
    let ns = TestNs::new("obs-bothout").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("no-such-dir").join("vault-sync.prom");
    let file_arg = file.display().to_string();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let out = ns
        .cli_env(
            &["run", "--metrics-file", &file_arg],
            &[("PUSHGATEWAY_URL", dead.as_str())],
        )
        .await;
    out.assert_code(0);
    assert!(
        out.stderr.contains(&dead),
        "push failure not reported:\n{out}"
    );
    assert!(
        out.stderr.contains(&file_arg),
        "metrics-file failure not reported:\n{out}"
    );
    let required = ns
        .cli_env(
            &["run", "--metrics-file", &file_arg, "--require-push"],
            &[("PUSHGATEWAY_URL", dead.as_str())],
        )
        .await;
    required.assert_code(1);
}

/// Grouping-label values with '/' (base64 in the URL) and other characters
/// (percent-encoded) arrive unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_label_values_are_encoded() {
    let ns = TestNs::new("obs-labels").await;
    let group = PushGroup::new("labels");
    let odd = format!("{} a/b c%d", group.test);
    let odd_label = format!("odd={odd}");
    let out = cli_push(&ns, &group, &["run", "--push-label", &odd_label]).await;
    out.assert_code(0);
    let (g, _) = group.group().await;
    assert_eq!(g["labels"]["odd"], odd.as_str(), "{:#}", g["labels"]);
    // The group's URL carries both labels (odd one base64-encoded).
    let url = format!(
        "{}/odd@base64/{}",
        group.url(),
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &odd)
    );
    let status = group
        .http
        .delete(&url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or_default();
    assert_eq!(status, 202, "DELETE {url}");
    assert!(
        group.fetch().await.0.is_none(),
        "group still there after DELETE"
    );
}

/// Vault unreachable: the run fails per path, and the pushed metrics say
/// why (`last_run_errors{error_type="connection_failed"}`). Nothing was
/// written (the reads failed first), so no write error is counted: that
/// family counts failed writes and deletes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_vault_is_counted() {
    let ns = TestNs::new("obs-novault").await;
    let group = PushGroup::new("novault");
    app_with_secret(&ns, "s", "K", "k").await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let label = group.push_label();
    let out = ns
        .cli_env(
            &["run", "--vault-timeout", "2s", "--push-label", &label],
            &[
                ("PUSHGATEWAY_URL", STACK.pushgateway_url()),
                ("VAULT_ADDR", &dead),
            ],
        )
        .await;
    out.assert_code(1);
    let (g, _) = group.group().await;
    assert!(
        g.get("vault_sync_last_success_timestamp_seconds").is_none(),
        "a failed first run pushed a last success:\n{g:#}"
    );
    assert!(
        g.get("vault_sync_last_run_timestamp_seconds").is_some(),
        "{g:#}"
    );
    let errors: f64 = samples(&g, "vault_sync_last_run_vault_requests")
        .iter()
        .filter(|(l, _)| l.get("status_class").map(String::as_str) == Some("error"))
        .map(|(_, m)| num(&m["value"]))
        .sum();
    assert!(errors >= 1.0, "no failed request counted:\n{g:#}");
    assert_eq!(
        value(
            &g,
            "vault_sync_last_run_sync_attempts",
            &[
                ("namespace", ns.name.as_str()),
                ("deployment", "app"),
                ("result", "error")
            ]
        ),
        1.0
    );
    let errors = nonzero_by(&g, "vault_sync_last_run_errors", "error_type");
    assert_eq!(
        errors.keys().collect::<Vec<_>>(),
        ["connection_failed"],
        "Vault unreachable:\n{out}\n{:#}",
        g["vault_sync_last_run_errors"]
    );
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_vault_write_errors", "error_type"),
        BTreeMap::new(),
        "no write was attempted, yet write errors were counted"
    );
    group.delete().await;
}

/// A failed run whose push fails too still reports the failed push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_push_of_a_failed_run_is_reported() {
    let ns = TestNs::new("obs-bothfail").await;
    ns.deployment(
        "app",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("missing"),
    )
    .await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let out = ns
        .cli_env(&["run"], &[("PUSHGATEWAY_URL", dead.as_str())])
        .await;
    out.assert_code(1);
    assert!(
        out.stderr.contains("pushing metrics to"),
        "the failed push went unreported:\n{out}"
    );
}

/// A run that fails before any per-Deployment work (here: an unreadable
/// kubeconfig) still pushes its failure, and a failed push is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_failure_is_pushed() {
    let ns = TestNs::new("obs-early").await;
    let group = PushGroup::new("early");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("no-such-kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let out = ns
        .cli_env(
            &["run", "--push-label", &group.push_label()],
            &[
                ("PUSHGATEWAY_URL", STACK.pushgateway_url()),
                ("KUBECONFIG", kubeconfig.as_str()),
            ],
        )
        .await;
    out.assert_code(1);
    assert!(out.stderr.contains("error"), "{out}");
    let (g, _) = group.group().await;
    assert!(
        g.get("vault_sync_last_success_timestamp_seconds").is_none(),
        "{g:#}"
    );
    assert!(
        g.get("vault_sync_last_run_timestamp_seconds").is_some(),
        "{g:#}"
    );
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_errors", "error_type"),
        BTreeMap::from([("config".to_owned(), 1.0)]),
        "the early failure is counted once, as what it is:\n{g:#}"
    );
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_vault_write_errors", "error_type"),
        BTreeMap::new(),
        "a kubeconfig failure is not a Vault write error"
    );
    // Every per-run family is pushed even though the run stopped early, so
    // the group holds nothing of an earlier run.
    for family in [
        "vault_sync_last_run_paths",
        "vault_sync_last_run_errors",
        "vault_sync_last_run_vault_write_errors",
    ] {
        assert!(g.get(family).is_some(), "{family} missing:\n{g:#}");
    }
    group.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_push_of_an_early_failure_is_reported() {
    let ns = TestNs::new("obs-early2").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("no-such-kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let out = ns
        .cli_env(
            &["run"],
            &[
                ("PUSHGATEWAY_URL", dead.as_str()),
                ("KUBECONFIG", kubeconfig.as_str()),
            ],
        )
        .await;
    out.assert_code(1);
    assert!(
        out.stderr.contains("pushing metrics to"),
        "the failed push went unreported:\n{out}"
    );
}

// --- no secret value in what is pushed or written -----------------------------------

/// `run` pushes its metrics; neither the push nor the metrics file carries
/// a secret value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pushes_metrics_without_secret_values() {
    let ns = TestNs::new("metrics").await;
    ns.secret("db", &[("password", &ns.value("metrics"))]).await;
    ns.deployment(
        "api",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("db"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault-sync.prom");
    let file_arg = file.display().to_string();
    let label = format!("it_ns={}", ns.name);

    let run = ns
        .cli(&[
            "run",
            "--pushgateway-url",
            STACK.pushgateway_url(),
            "--push-label",
            &label,
            "--require-push",
            "--metrics-file",
            &file_arg,
        ])
        .await;
    run.assert_code(0);

    let text = std::fs::read_to_string(&file).expect("metrics file written");
    ns.assert_no_leak(&[&text]);
    assert!(text.contains("vault_sync_"), "{text}");

    let http = reqwest::Client::new();
    let body: Value = http
        .get(format!("{}/api/v1/metrics", STACK.pushgateway_url()))
        .send()
        .await
        .expect("GET metrics")
        .json()
        .await
        .expect("metrics JSON");
    let group = body["data"]
        .as_array()
        .and_then(|groups| {
            groups
                .iter()
                .find(|g| g["labels"]["it_ns"] == ns.name.as_str())
        })
        .cloned()
        .unwrap_or_else(|| panic!("no pushed group with it_ns={}", ns.name));
    assert_eq!(group["labels"]["job"], "vault-sync");
    assert_eq!(group["labels"]["cluster"], "default");
    let pushed = group.to_string();
    ns.assert_no_leak(&[&pushed]);
    assert!(
        pushed.contains("vault_sync_last_success_timestamp_seconds"),
        "{pushed}"
    );

    let _ = http
        .delete(format!(
            "{}/metrics/job/vault-sync/cluster/default/command/run/it_ns/{}",
            STACK.pushgateway_url(),
            ns.name
        ))
        .send()
        .await;
}
