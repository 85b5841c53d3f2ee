//! Hostile input, end to end against the real stack through the built
//! binary: whatever a Deployment, a Secret or Vault's existing state holds,
//! vault-sync fails that one workload with the right error, or accepts it
//! as documented, and never leaks a value.
//!
//! 1. **Bad annotations and inputs.** One table ([`cases`]): each case is a
//!    Deployment (plus the Secrets and Vault state it needs) and its exact
//!    expected outcome, either a per-Deployment entry in the JSON output (an
//!    `error` with its `error_type`, path and message, a `conflict`, a failed
//!    write) or documented acceptance (the path written with exactly the
//!    expected content and vault-sync's marker). All cases live in ONE
//!    namespace beside one good Deployment, so one `plan -o json` and one
//!    `run -o json` exercise them all at once; a few need a run of their own
//!    (`--adopt`, another namespace, table output). For every run: the process
//!    exits (no panic), within `fixtures::RUN_BUDGET`, and every other
//!    Deployment still syncs.
//! 2. **Leakage.** Every secret value is a distinctive harness value, and every
//!    output goes through the leak guard (`TestNs::cli`). One test runs with
//!    `-v -v`, `RUST_LOG=trace` and `--log-format json` (then text), so that
//!    reqwest/hyper/kube trace logs are on, and checks no value, token or
//!    base64 form appears. (`Debug` redaction of `SecretValue` itself is
//!    unit-tested in `src/core/value.rs`, `debug_is_redacted`.)
//! 3. **Cluster names.** `--cluster-name default` and names that are not
//!    DNS labels are refused before any Vault request.
//! 4. **Server limits.** A Secret with more keys than OpenBao accepts in one
//!    request is `request_too_large`, naming the limit.
//!
//! Known bugs in `src/` are cases carrying a [`Bug`]: the table asserts the
//! *correct* outcome for them, counts a failure as XFAIL (printed, not
//! fatal) and fails if the case unexpectedly passes (the marker must then go).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::audit::audit_mark;
use crate::fixtures::{ClusterNs, actions_by_workload, change, cli_bounded, deploy, pod};
use crate::harness::annotation::{PATH, PRESERVE, RECONCILE, SECRETS};
use crate::harness::{CliOutput, PodRefs, STACK, TestNs, assert_no_leak, random_hex, run_detached};
use crate::vault::VaultHttp;

/// Deployment label selecting the cases of the `--adopt` run.
const GROUP_LABEL: &str = "hostile-group";

/// The API server caps the annotations of one object at 256 KiB in total.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    /// The good Deployment: not a hostile case, checked like one.
    Control,
    SecretsAnnotation,
    Path,
    Flags,
    SecretData,
    Ownership,
    Scope,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Control => "control (good Deployment)",
            Self::SecretsAnnotation => "vault-sync.io/secrets",
            Self::Path => "vault-sync.io/path",
            Self::Flags => "preserve-on-delete / reconcile",
            Self::SecretData => "Secrets and their data",
            Self::Ownership => "ownership and conflicts",
            Self::Scope => "scope (ignored / excluded)",
        })
    }
}

/// One expected fact about a case.
enum Want {
    /// A `changes[]` entry with action "error".
    Error {
        path: String,
        error_type: &'static str,
        fragment: String,
        secret: Option<String>,
    },
    /// A `create`; after `run` the path holds exactly `data`, with
    /// vault-sync's marker (KV v2).
    Written {
        mount: &'static str,
        rel: String,
        data: BTreeMap<String, String>,
        preserve: bool,
    },
    /// A `create` whose write Vault refuses: `result: failed` after `run`.
    WriteFailed {
        mount: &'static str,
        rel: String,
        error_type: &'static str,
        fragment: String,
    },
    /// A `conflict` entry.
    Conflict { path: String, fragment: String },
    /// A note for the Deployment.
    Note(String),
    /// Nothing at this location after `run`.
    Absent { mount: &'static str, rel: String },
}

impl Want {
    fn is_change(&self) -> bool {
        !matches!(self, Self::Note(_) | Self::Absent { .. })
    }

    /// The Vault location a `run` may write for it.
    fn writes(&self) -> Option<(&'static str, &str)> {
        match self {
            Self::Written { mount, rel, .. } | Self::WriteFailed { mount, rel, .. } => {
                Some((*mount, rel.as_str()))
            }
            _ => None,
        }
    }
}

fn error(error_type: &'static str, path: impl Into<String>, fragment: impl Into<String>) -> Want {
    Want::Error {
        path: path.into(),
        error_type,
        fragment: fragment.into(),
        secret: None,
    }
}

fn error_in(
    error_type: &'static str,
    path: impl Into<String>,
    secret: &str,
    fragment: impl Into<String>,
) -> Want {
    Want::Error {
        path: path.into(),
        error_type,
        fragment: fragment.into(),
        secret: Some(secret.to_owned()),
    }
}

fn written(mount: &'static str, rel: impl Into<String>, data: BTreeMap<String, String>) -> Want {
    Want::Written {
        mount,
        rel: rel.into(),
        data,
        preserve: false,
    }
}

fn conflict(path: impl Into<String>, fragment: impl Into<String>) -> Want {
    Want::Conflict {
        path: path.into(),
        fragment: fragment.into(),
    }
}

/// A bug in `src/`: the case's wants are the correct behaviour, which the
/// current build does not show.
struct Bug {
    what: &'static str,
    /// Where the current build writes instead (inside the test's prefix).
    lands_at: Option<String>,
}

struct Case {
    family: Family,
    name: String,
    annotations: Annotations,
    pod: Value,
    labels: Annotations,
    wants: Vec<Want>,
    bug: Option<Bug>,
}

impl Case {
    fn new(family: Family, name: &str, annotations: &[(&str, &str)], wants: Vec<Want>) -> Self {
        Self {
            family,
            name: name.to_owned(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            pod: pod(&[]),
            labels: Vec::new(),
            wants,
            bug: None,
        }
    }

    fn pod(mut self, pod: Value) -> Self {
        self.pod = pod;
        self
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Marks a case as a known bug (strict: the suite fails once it passes).
    /// No case carries one now; kept for the next bug found.
    #[allow(dead_code)]
    fn bug(mut self, what: &'static str, lands_at: Option<String>) -> Self {
        self.bug = Some(Bug { what, lands_at });
        self
    }
}

/// Annotations (or labels) of a Deployment, in order.
type Annotations = Vec<(String, String)>;

/// The Secrets every case may use, created as string data unless noted.
struct Fixtures {
    /// Secret name → key → value.
    strings: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret `bin`: base64 of its binary value (for the leak guard).
    binary_b64: String,
}

impl Fixtures {
    fn data(&self, secret: &str) -> BTreeMap<String, String> {
        self.strings
            .get(secret)
            .unwrap_or_else(|| panic!("no fixture Secret {secret}"))
            .clone()
    }

    fn value(&self, secret: &str, key: &str) -> String {
        self.data(secret)
            .remove(key)
            .unwrap_or_else(|| panic!("fixture Secret {secret} has no key {key}"))
    }

    /// `(target, value of source key)` pairs from one Secret.
    fn pick(&self, secret: &str, pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, target)| ((*target).to_owned(), self.value(secret, key)))
            .collect()
    }
}

/// Number of entries and padded prefix of the big-but-valid secrets list.
const HUGE_OK_ENTRIES: usize = 400;

fn huge_ok_prefix(i: usize) -> String {
    format!("P{i:03}_{}_", "x".repeat(590))
}

/// A ~255 KiB `vault-sync.io/secrets` list that is valid: 400 entries with
/// long prefixes, 400 keys in one path (under OpenBao's JSON string limit).
fn huge_ok_list() -> String {
    let entries: Vec<String> = (0..HUGE_OK_ENTRIES)
        .map(|i| {
            format!(
                r#"{{"name":"huge-src","keys":["k"],"prefix":"{}"}}"#,
                huge_ok_prefix(i)
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

/// A ~250 KiB list whose last entry is invalid; returns it and that entry's index.
fn huge_bad_list() -> (String, usize) {
    let n = 4850;
    let mut entries: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"db","keys":["password"],"prefix":"P{i:05}_"}}"#))
        .collect();
    entries.push(r#"{"name":"db","keys":[]}"#.to_owned());
    (format!("[{}]", entries.join(",")), n)
}

/// Creates every Secret and the foreign Vault paths the cases need.
async fn create_fixtures(ns: &TestNs) -> Fixtures {
    let mut strings: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut add = |name: &str, pairs: Vec<(String, String)>| {
        strings.insert(name.to_owned(), pairs.into_iter().collect());
    };
    let v = |label: &str| ns.value(label);
    add(
        "db",
        vec![
            ("password".into(), v("db-password")),
            ("user".into(), v("db-user")),
        ],
    );
    add(
        "good-src",
        vec![
            ("password".into(), v("good-password")),
            ("user".into(), v("good-user")),
        ],
    );
    add(
        "odd-keys",
        vec![
            ("tls.crt".into(), v("tls-crt")),
            ("db-password".into(), v("dash")),
            ("API_KEY".into(), v("underscore")),
            ("a.b-c_d".into(), v("mixed")),
            (".hidden".into(), v("leading-dot")),
        ],
    );
    add(
        "k400",
        (0..400)
            .map(|i| (format!("k{i:04}"), v(&format!("k400-{i}"))))
            .collect(),
    );
    add(
        "k1000",
        (0..1000)
            .map(|i| (format!("k{i:04}"), v(&format!("k1000-{i}"))))
            .collect(),
    );
    // 1 MiB exactly, the most one Secret may hold; made of a registered
    // value so that any leaked piece of it is caught.
    let marker = v("one-mib");
    let mut big = marker.repeat((1 << 20) / marker.len() + 1);
    big.truncate(1 << 20);
    add("big", vec![("big".into(), big)]);
    add(
        "empty-value",
        vec![
            ("empty".into(), String::new()),
            ("other".into(), v("empty-other")),
        ],
    );
    add("empty-secret", vec![]);
    add("opt-present", vec![("token".into(), v("opt-token"))]);
    add("ips-app", vec![("token".into(), v("ips-token"))]);
    add("regcred", vec![("config".into(), v("registry-cred"))]);
    add("spell-src", vec![("token".into(), v("spell-token"))]);
    add("huge-src", vec![("k".into(), v("huge"))]);
    add("adopt-src", vec![("password".into(), v("adopt-password"))]);

    for (name, data) in &strings {
        let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ns.secret(name, &pairs).await;
    }

    // Binary: not UTF-8, next to a valid key.
    let marker = ns.value("binary");
    let mut blob = vec![0xff, 0xfe, 0x00, 0xc3];
    blob.extend_from_slice(marker.as_bytes());
    let binary_b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    raw_secret(
        ns,
        "bin",
        BTreeMap::from([
            ("blob".to_owned(), blob),
            ("fine".to_owned(), ns.value("bin-fine").into_bytes()),
        ]),
    )
    .await;

    // Vault paths that exist before vault-sync looks at them.
    let vault = &ns.vault;
    let rel = |rest: &str| ns.rel(&format!("c/{rest}"));
    vault
        .kv2_write(
            "secret",
            &rel("foreign"),
            &[("theirs", &ns.value("foreign"))],
        )
        .await;
    vault
        .kv2_write(
            "secret",
            &rel("foreign-adopt"),
            &[("stale", &ns.value("foreign-adopt"))],
        )
        .await;
    vault
        .kv2_write("secret", &rel("eso"), &[("eso", &ns.value("eso"))])
        .await;
    vault
        .kv2_set_custom_metadata("secret", &rel("eso"), &[("managed-by", "external-secrets")])
        .await;
    vault
        .kv2_write(
            "secret",
            &rel("other-owner"),
            &[("x", &ns.value("other-owner"))],
        )
        .await;
    // Another cluster's owner: this run cannot tell whether it still
    // exists, so the path is never taken over (a same-cluster owner that is
    // gone would be; see ownership.rs).
    let ghost = format!("elsewhere/{}/ghost", ns.name);
    vault
        .kv2_set_custom_metadata(
            "secret",
            &rel("other-owner"),
            &[
                ("managed-by", "vault-sync"),
                ("vault-sync.io/owner", &ghost),
                ("vault-sync.io/preserve-on-delete", "false"),
            ],
        )
        .await;
    vault
        .kv2_write(
            "secret",
            &rel("malformed"),
            &[("x", &ns.value("malformed"))],
        )
        .await;
    vault
        .kv2_set_custom_metadata("secret", &rel("malformed"), &[("managed-by", "vault-sync")])
        .await;

    Fixtures {
        strings,
        binary_b64,
    }
}

/// A Secret with raw bytes (the harness writes strings only).
async fn raw_secret(ns: &TestNs, name: &str, data: BTreeMap<String, Vec<u8>>) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.name.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Default::default()
    };
    ns.secrets_api()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create Secret {}/{name}: {e}", ns.name));
}

/// Every case, with its expected outcome. Paths are `secret/it/<ns>/c/<case>`
/// unless the case is about the path.
fn cases(ns: &TestNs, fx: &Fixtures, transit_mount: &str) -> Vec<Case> {
    use Family::*;
    let p = |rest: &str| ns.path("secret", &format!("c/{rest}"));
    let rel = |rest: &str| ns.rel(&format!("c/{rest}"));
    let nsn = ns.name.as_str();
    let db = r#"[{"name":"db","keys":["password"]}]"#;
    let db_password = || fx.pick("db", &[("password", "password")]);
    let mut cases = Vec::new();

    // --- control ----------------------------------------------------------------
    cases.push(Case::new(
        Control,
        "good",
        &[
            (PATH, &p("good")),
            (
                SECRETS,
                r#"[{"name":"good-src","keys":["user","password"],"prefix":"GOOD_"}]"#,
            ),
        ],
        vec![written(
            "secret",
            rel("good"),
            fx.pick(
                "good-src",
                &[("user", "GOOD_user"), ("password", "GOOD_password")],
            ),
        )],
    ));

    // --- vault-sync.io/secrets --------------------------------------------------
    let json_cases: &[(&str, &str, &'static str, &str)] = &[
        (
            "json-invalid",
            "not json",
            "invalid_secrets_json",
            "is not valid JSON (expected ident",
        ),
        (
            "json-object",
            r#"{"name":"db","keys":["password"]}"#,
            "invalid_secrets_json",
            "invalid type: map, expected a sequence",
        ),
        (
            "json-number-keys",
            r#"[{"name":"db","keys":[1]}]"#,
            "invalid_secrets_json",
            "invalid type: integer `1`, expected a string",
        ),
        (
            "json-null",
            "null",
            "invalid_secrets_json",
            "invalid type: null, expected a sequence",
        ),
        (
            "json-keys-null",
            r#"[{"name":"db","keys":null}]"#,
            "invalid_secrets_json",
            "invalid type: null, expected a sequence",
        ),
        (
            "json-unknown-field",
            r#"[{"name":"db","keys":["password"],"extra":true}]"#,
            "invalid_secrets_json",
            "unknown field `extra`",
        ),
        (
            "json-missing-name",
            r#"[{"keys":["password"]}]"#,
            "invalid_secrets_json",
            "missing field `name`",
        ),
        (
            "json-trailing",
            r#"[{"name":"db","keys":["password"]}] trailing"#,
            "invalid_secrets_json",
            "trailing characters",
        ),
        (
            "json-empty-list",
            "[]",
            "invalid_secrets_json",
            "is an empty list",
        ),
        (
            "entry-empty-name",
            r#"[{"name":"","keys":["password"]}]"#,
            "invalid_secrets_entry",
            r#"entry 0: "name" is empty"#,
        ),
        (
            "entry-bad-name",
            r#"[{"name":"Bad_Name","keys":["password"]}]"#,
            "invalid_secrets_entry",
            r#""Bad_Name" is not a valid Secret name"#,
        ),
        (
            "entry-empty-keys",
            r#"[{"name":"db","keys":[]}]"#,
            "invalid_secrets_entry",
            r#""keys" is empty"#,
        ),
        (
            "entry-bad-key",
            r#"[{"name":"db","keys":["a/b"]}]"#,
            "invalid_secrets_entry",
            r#"key "a/b" is not a valid Secret key"#,
        ),
        (
            "entry-prefix-slash",
            r#"[{"name":"db","keys":["password"],"prefix":"a/b"}]"#,
            "invalid_secrets_entry",
            r#"prefix "a/b" contains a control character or '/'"#,
        ),
        (
            "entry-prefix-escape",
            "[{\"name\":\"db\",\"keys\":[\"password\"],\"prefix\":\"A\\u001b[31m\"}]",
            "invalid_secrets_entry",
            r#"prefix "A\u{1b}[31m" contains a control character"#,
        ),
        (
            "entry-duplicate-target",
            r#"[{"name":"db","keys":["user"],"prefix":"DB_"},{"name":"good-src","keys":["DB_user"]}]"#,
            "invalid_secrets_entry",
            r#"Vault key "DB_user" would be written by both db/user and good-src/DB_user"#,
        ),
    ];
    for &(name, json, error_type, fragment) in json_cases {
        cases.push(Case::new(
            SecretsAnnotation,
            name,
            &[(PATH, &p(name)), (SECRETS, json)],
            vec![error(error_type, p(name), fragment)],
        ));
    }
    let deep = "[".repeat(100_000);
    cases.push(Case::new(
        SecretsAnnotation,
        "json-deep-nesting",
        &[(PATH, &p("json-deep-nesting")), (SECRETS, &deep)],
        vec![error(
            "invalid_secrets_json",
            p("json-deep-nesting"),
            "is not valid JSON (",
        )],
    ));
    cases.push(Case::new(
        SecretsAnnotation,
        "json-duplicate-field",
        &[
            (PATH, &p("json-duplicate-field")),
            (
                SECRETS,
                r#"[{"name":"db","name":"good-src","keys":["password"]}]"#,
            ),
        ],
        vec![error(
            "invalid_secrets_json",
            p("json-duplicate-field"),
            "duplicate field `name`",
        )],
    ));
    // Regression (ARRAY_ENTRY_BUG, fixed): serde's derive also takes a struct as a
    // positional array; the documented format is a list of objects.
    cases.push(Case::new(
        SecretsAnnotation,
        "json-array-entry",
        &[
            (PATH, &p("json-array-entry")),
            (SECRETS, r#"[["db",["password"],"ARR_"]]"#),
        ],
        vec![
            error(
                "invalid_secrets_json",
                p("json-array-entry"),
                "is not valid JSON (",
            ),
            Want::Absent {
                mount: "secret",
                rel: rel("json-array-entry"),
            },
        ],
    ));
    let (huge_bad, bad_index) = huge_bad_list();
    assert!(huge_bad.len() > 250 * 1024 && huge_bad.len() < MAX_ANNOTATIONS_BYTES - 1024);
    cases.push(Case::new(
        SecretsAnnotation,
        "json-huge-invalid",
        &[(PATH, &p("json-huge-invalid")), (SECRETS, &huge_bad)],
        vec![error(
            "invalid_secrets_entry",
            p("json-huge-invalid"),
            format!(r#"entry {bad_index} ("db"): "keys" is empty"#),
        )],
    ));
    let huge_ok = huge_ok_list();
    assert!(huge_ok.len() > 250 * 1024 && huge_ok.len() < MAX_ANNOTATIONS_BYTES - 1024);
    let huge_value = fx.value("huge-src", "k");
    cases.push(Case::new(
        SecretsAnnotation,
        "json-huge-valid",
        &[(PATH, &p("json-huge-valid")), (SECRETS, &huge_ok)],
        vec![written(
            "secret",
            rel("json-huge-valid"),
            (0..HUGE_OK_ENTRIES)
                .map(|i| (format!("{}k", huge_ok_prefix(i)), huge_value.clone()))
                .collect(),
        )],
    ));
    cases.push(Case::new(
        SecretsAnnotation,
        "json-duplicate-key",
        &[
            (PATH, &p("json-duplicate-key")),
            (SECRETS, r#"[{"name":"db","keys":["password","password"]}]"#),
        ],
        vec![written("secret", rel("json-duplicate-key"), db_password())],
    ));

    // --- vault-sync.io/path -----------------------------------------------------
    let path_errors: Vec<(&str, String, &'static str)> = vec![
        ("path-empty", String::new(), "the Vault path is empty"),
        ("path-blank", "   ".into(), "the Vault path is empty"),
        (
            "path-dotdot",
            p("a/../../../../sys"),
            r#"has a "." or ".." segment"#,
        ),
        ("path-dot", p("a/./b"), r#"has a "." or ".." segment"#),
        (
            "path-double-slash",
            p("a//b"),
            r#"has an empty segment ("//")"#,
        ),
        (
            "path-leading-slash",
            format!("/{}", p("lead")),
            "starts or ends with '/'",
        ),
        (
            "path-trailing-slash",
            format!("{}/", p("trail")),
            "starts or ends with '/'",
        ),
        (
            "path-sys",
            "sys/policies/acl/hostile".into(),
            "is under sys/, which is Vault's own API",
        ),
        (
            "path-auth",
            "auth/token/create".into(),
            "is under auth/, which is Vault's own API",
        ),
        (
            "path-identity",
            "identity/entity/name/hostile".into(),
            "is under identity/, which is Vault's own API",
        ),
        (
            "path-cubbyhole",
            "cubbyhole/hostile".into(),
            "is under cubbyhole/, which is Vault's own API",
        ),
        (
            "path-escape",
            p("a\u{1b}[31mred"),
            "contains whitespace, a control character",
        ),
        (
            "path-nul",
            p("a\u{0}b"),
            "contains whitespace, a control character",
        ),
        (
            "path-space",
            p("a b"),
            "contains whitespace, a control character",
        ),
        (
            "path-tab",
            p("a\tb"),
            "contains whitespace, a control character",
        ),
        (
            "path-newline-inside",
            p("a\nb"),
            "contains whitespace, a control character",
        ),
        (
            "path-nbsp",
            p("a\u{a0}b"),
            "contains whitespace, a control character",
        ),
        (
            "path-too-long",
            p(&"x".repeat(600)),
            "is longer than 512 characters",
        ),
        (
            "path-mount-root",
            "secret".into(),
            r#"names the mount "secret/" itself"#,
        ),
        (
            "path-mount-data-root",
            "secret/data".into(),
            r#"names the mount "secret/" itself"#,
        ),
        (
            "path-not-kv",
            format!("{transit_mount}/keys/hostile"),
            r#"which is a "transit" engine, not KV"#,
        ),
        (
            "path-no-mount",
            format!("hx-nomount-{}/app", random_hex(8)),
            "no secrets engine is mounted there",
        ),
    ];
    for (name, path, fragment) in path_errors {
        cases.push(Case::new(
            Path,
            name,
            &[(PATH, &path), (SECRETS, db)],
            vec![error("invalid_path", path.clone(), fragment)],
        ));
    }
    // Accepted spellings.
    cases.push(Case::new(
        Path,
        "path-unicode",
        &[(PATH, &p("café-ünï-日本")), (SECRETS, db)],
        vec![written("secret", rel("café-ünï-日本"), db_password())],
    ));
    cases.push(Case::new(
        Path,
        "path-surrounding-space",
        &[(PATH, &format!("  {} \n", p("trimmed"))), (SECRETS, db)],
        vec![written("secret", rel("trimmed"), db_password())],
    ));
    cases.push(Case::new(
        Path,
        "path-data-spelling",
        &[
            (
                PATH,
                &ns.path("secret", "c/data-spelling")
                    .replacen("secret/", "secret/data/", 1),
            ),
            (SECRETS, db),
        ],
        vec![written("secret", rel("data-spelling"), db_password())],
    ));
    cases.push(Case::new(
        Path,
        "path-kv1",
        &[(PATH, &ns.path("kv1", "c/path-kv1")), (SECRETS, db)],
        vec![written("kv1", rel("path-kv1"), db_password())],
    ));
    cases.push(Case::new(
        Path,
        "path-team-mount",
        &[(PATH, &ns.path("team", "c/path-team-mount")), (SECRETS, db)],
        vec![written("team", rel("path-team-mount"), db_password())],
    ));
    // Regression (URL_BUG, fixed): URL metacharacters. The path is pasted into the request URL unescaped,
    // so the URL parser (query, fragment, dot-segment normalisation, percent
    // decoding by the server) moves the write elsewhere.
    let url_bugs: &[(&str, &str, &str)] = &[
        ("path-query", "query?x=1", "query"),
        ("path-fragment", "fragment#frag", "fragment"),
        ("path-pct-dotdot", "dotdot/%2e%2e/escaped", "escaped"),
        ("path-pct-slash", "pct%2Fslash", "pct/slash"),
    ];
    for &(name, rest, lands) in url_bugs {
        cases.push(Case::new(
            Path,
            name,
            &[(PATH, &p(rest)), (SECRETS, db)],
            vec![
                error("invalid_path", p(rest), "the Vault path"),
                Want::Absent {
                    mount: "secret",
                    rel: rel(lands),
                },
            ],
        ));
    }

    // --- preserve-on-delete / reconcile -----------------------------------------
    let flag_errors: &[(&str, &str, &str, &'static str)] = &[
        (
            "preserve-yes",
            PRESERVE,
            "yes",
            "invalid_preserve_on_delete",
        ),
        ("reconcile-10s", RECONCILE, "10s", "invalid_reconcile"),
        ("reconcile-negative", RECONCILE, "-1m", "invalid_reconcile"),
        ("reconcile-unit", RECONCILE, "5x", "invalid_reconcile"),
    ];
    for &(name, key, value, error_type) in flag_errors {
        cases.push(Case::new(
            Flags,
            name,
            &[(PATH, &p(name)), (SECRETS, db), (key, value)],
            vec![error(
                error_type,
                p(name),
                format!("annotation {key} is {value:?}"),
            )],
        ));
    }
    cases.push(Case::new(
        Flags,
        "preserve-upper-true",
        &[
            (PATH, &p("preserve-upper-true")),
            (SECRETS, db),
            (PRESERVE, "TRUE"),
        ],
        vec![Want::Written {
            mount: "secret",
            rel: rel("preserve-upper-true"),
            data: db_password(),
            preserve: true,
        }],
    ));
    cases.push(Case::new(
        Flags,
        "reconcile-off",
        &[
            (PATH, &p("reconcile-off")),
            (SECRETS, db),
            (RECONCILE, "off"),
        ],
        vec![
            Want::Note(r#"reconcile is "off": skipped"#.into()),
            Want::Absent {
                mount: "secret",
                rel: rel("reconcile-off"),
            },
        ],
    ));
    cases.push(Case::new(
        Flags,
        "reconcile-5m",
        &[(PATH, &p("reconcile-5m")), (SECRETS, db), (RECONCILE, "5m")],
        vec![written("secret", rel("reconcile-5m"), db_password())],
    ));

    // --- Secrets and their data -------------------------------------------------
    cases.push(Case::new(
        SecretData,
        "missing-secret",
        &[
            (PATH, &p("missing-secret")),
            (
                SECRETS,
                r#"[{"name":"db","keys":["password"]},{"name":"nope","keys":["k"]}]"#,
            ),
        ],
        vec![error_in(
            "secret_not_found",
            p("missing-secret"),
            "nope",
            format!("Secret {nsn}/nope not found"),
        )],
    ));
    cases.push(
        Case::new(
            SecretData,
            "missing-secret-auto",
            &[(PATH, &p("missing-secret-auto"))],
            vec![error_in(
                "secret_not_found",
                p("missing-secret-auto/gone"),
                "gone",
                format!("Secret {nsn}/gone not found"),
            )],
        )
        .pod(pod(&["gone"])),
    );
    cases.push(Case::new(
        SecretData,
        "missing-key",
        &[
            (PATH, &p("missing-key")),
            (SECRETS, r#"[{"name":"db","keys":["pasword"]}]"#),
        ],
        vec![error_in(
            "secret_key_missing",
            p("missing-key"),
            "db",
            format!(r#"Secret {nsn}/db has no key "pasword"; keys it has: password, user"#),
        )],
    ));
    cases.push(
        Case::new(
            SecretData,
            "optional-missing",
            &[(PATH, &p("optional-missing"))],
            vec![
                written(
                    "secret",
                    rel("optional-missing/opt-present"),
                    fx.data("opt-present"),
                ),
                Want::Note(format!(
                    "optional Secret {nsn}/opt-gone does not exist: skipped"
                )),
                Want::Absent {
                    mount: "secret",
                    rel: rel("optional-missing/opt-gone"),
                },
            ],
        )
        .pod(json!({"containers": [{
            "name": "app",
            "image": "busybox",
            "envFrom": [{"secretRef": {"name": "opt-present"}}],
            "env": [{"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "opt-gone", "key": "k", "optional": true}}}],
        }]})),
    );
    cases.push(
        Case::new(
            SecretData,
            "image-pull-secret",
            &[(PATH, &p("image-pull-secret"))],
            vec![
                written(
                    "secret",
                    rel("image-pull-secret/ips-app"),
                    fx.data("ips-app"),
                ),
                Want::Absent {
                    mount: "secret",
                    rel: rel("image-pull-secret/regcred"),
                },
            ],
        )
        .pod(json!({
            "imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "app", "image": "busybox",
                "envFrom": [{"secretRef": {"name": "ips-app"}}]}],
        })),
    );
    cases.push(Case::new(
        SecretData,
        "binary-custom",
        &[
            (PATH, &p("binary-custom")),
            (SECRETS, r#"[{"name":"bin","keys":["fine","blob"]}]"#),
        ],
        vec![error_in(
            "binary_value",
            p("binary-custom"),
            "bin",
            format!(r#"Secret {nsn}/bin, key "blob": the value is binary"#),
        )],
    ));
    cases.push(
        Case::new(
            SecretData,
            "binary-auto",
            &[(PATH, &p("binary-auto"))],
            vec![error_in(
                "binary_value",
                p("binary-auto/bin"),
                "bin",
                format!(r#"Secret {nsn}/bin, key "blob": the value is binary"#),
            )],
        )
        .pod(pod(&["bin"])),
    );
    cases.push(
        Case::new(
            SecretData,
            "odd-keys-auto",
            &[(PATH, &p("odd-keys-auto"))],
            vec![written(
                "secret",
                rel("odd-keys-auto/odd-keys"),
                fx.data("odd-keys"),
            )],
        )
        .pod(pod(&["odd-keys"])),
    );
    cases.push(Case::new(
        SecretData,
        "odd-keys-custom",
        &[
            (PATH, &p("odd-keys-custom")),
            (
                SECRETS,
                r#"[{"name":"odd-keys","keys":["tls.crt","db-password","API_KEY","a.b-c_d",".hidden"],"prefix":"X.-_"}]"#,
            ),
        ],
        vec![written(
            "secret",
            rel("odd-keys-custom"),
            fx.pick(
                "odd-keys",
                &[
                    ("tls.crt", "X.-_tls.crt"),
                    ("db-password", "X.-_db-password"),
                    ("API_KEY", "X.-_API_KEY"),
                    ("a.b-c_d", "X.-_a.b-c_d"),
                    (".hidden", "X.-_.hidden"),
                ],
            ),
        )],
    ));
    cases.push(
        Case::new(
            SecretData,
            "keys-400",
            &[(PATH, &p("keys-400"))],
            vec![written("secret", rel("keys-400/k400"), fx.data("k400"))],
        )
        .pod(pod(&["k400"])),
    );
    cases.push(
        Case::new(
            SecretData,
            "keys-1000",
            &[(PATH, &p("keys-1000"))],
            vec![Want::WriteFailed {
                mount: "secret",
                rel: rel("keys-1000/k1000"),
                // OpenBao's 400 for its max_request_json_strings limit.
                error_type: "request_too_large",
                fragment:
                    "refused JSON input due to high complexity: exceeded maximum number of strings"
                        .into(),
            }],
        )
        .pod(pod(&["k1000"])),
    );
    cases.push(
        Case::new(
            SecretData,
            "value-1mib",
            &[(PATH, &p("value-1mib"))],
            vec![written("secret", rel("value-1mib/big"), fx.data("big"))],
        )
        .pod(pod(&["big"])),
    );
    cases.push(
        Case::new(
            SecretData,
            "empty-value",
            &[(PATH, &p("empty-value"))],
            vec![written(
                "secret",
                rel("empty-value/empty-value"),
                fx.data("empty-value"),
            )],
        )
        .pod(pod(&["empty-value"])),
    );
    cases.push(
        Case::new(
            SecretData,
            "empty-secret",
            &[(PATH, &p("empty-secret"))],
            vec![written(
                "secret",
                rel("empty-secret/empty-secret"),
                BTreeMap::new(),
            )],
        )
        .pod(pod(&["empty-secret"])),
    );

    // --- ownership and conflicts ------------------------------------------------
    for (name, other) in [("same-a", "same-b"), ("same-b", "same-a")] {
        cases.push(Case::new(
            Ownership,
            name,
            &[(PATH, &p("same")), (SECRETS, db)],
            vec![conflict(p("same"), format!("also wanted by {nsn}/{other}"))],
        ));
    }
    let spell_long = ns
        .path("secret", "c/spell")
        .replacen("secret/", "secret/data/", 1);
    for (name, path, other) in [
        ("spell-data", spell_long.clone(), "spell-short"),
        ("spell-short", p("spell"), "spell-data"),
    ] {
        cases.push(
            Case::new(
                Ownership,
                name,
                &[(PATH, &path)],
                vec![conflict(
                    p("spell/spell-src"),
                    format!("also wanted by {nsn}/{other}"),
                )],
            )
            .pod(pod(&["spell-src"])),
        );
    }
    let adopt = r#"[{"name":"adopt-src","keys":["password"]}]"#;
    cases.push(Case::new(
        Ownership,
        "foreign",
        &[(PATH, &p("foreign")), (SECRETS, db)],
        vec![conflict(
            p("foreign"),
            "exists in Vault and is not managed by vault-sync",
        )],
    ));
    cases.push(
        Case::new(
            Ownership,
            "foreign-adopt",
            &[(PATH, &p("foreign-adopt")), (SECRETS, adopt)],
            vec![conflict(
                p("foreign-adopt"),
                "exists in Vault and is not managed by vault-sync; rerun with --adopt",
            )],
        )
        .label(GROUP_LABEL, "adopt"),
    );
    cases.push(
        Case::new(
            Ownership,
            "eso",
            &[(PATH, &p("eso")), (SECRETS, adopt)],
            vec![conflict(
                p("eso"),
                r#"managed by "external-secrets" (custom_metadata managed-by)"#,
            )],
        )
        .label(GROUP_LABEL, "adopt"),
    );
    cases.push(Case::new(
        Ownership,
        "other-owner",
        &[(PATH, &p("other-owner")), (SECRETS, db)],
        vec![conflict(
            p("other-owner"),
            format!("owned by vault-sync for Deployment elsewhere/{nsn}/ghost"),
        )],
    ));
    cases.push(
        Case::new(
            Ownership,
            "malformed",
            &[(PATH, &p("malformed")), (SECRETS, adopt)],
            vec![conflict(
                p("malformed"),
                "marked managed-by=vault-sync but without a valid owner",
            )],
        )
        .label(GROUP_LABEL, "adopt"),
    );

    // --- scope ------------------------------------------------------------------
    cases.push(Case::new(
        Scope,
        "no-path",
        &[(SECRETS, "not json at all")],
        vec![],
    ));
    cases.push(Case::new(
        Scope,
        "near-miss-keys",
        &[
            ("vault-sync.io/Path", &p("near-miss-keys")),
            ("vault-sync.io/paths", &p("near-miss-keys")),
            ("vault-sync/path", &p("near-miss-keys")),
        ],
        vec![Want::Absent {
            mount: "secret",
            rel: rel("near-miss-keys"),
        }],
    ));
    cases
}

const ARRAY_ENTRY_BUG: &str = "src/core/annotations.rs SecretSelection derives Deserialize, \
which also accepts each entry as a positional JSON array ([\"db\", [\"password\"], \"P_\"]); \
the contract (README) is a list of {name, keys, prefix} objects, with unknown fields refused";

const TABLE_BUG: &str = "src/render/table.rs render() puts change.path in the PATH column \
unescaped; for an annotation error that path is the raw annotation \
(src/engine/mod.rs prepare(), Problem.path), so ESC/NUL from a Deployment's annotation reach the \
operator's terminal (escape-sequence injection); messages are escaped ({:?}), the path is not";

// ---------------------------------------------------------------------------
// Checking a case against one output
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Plan,
    Run,
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| text(s).to_owned()).collect())
        .unwrap_or_default()
}

/// Key names that differ between two maps (never the values).
fn diff_keys(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> String {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, _)| k)
        .collect();
    format!("missing keys {missing:?}, unexpected keys {extra:?}, different values for {differ:?}")
}

/// Everything wrong with `case` in one JSON output (empty: as expected).
async fn verify(ns: &TestNs, case: &Case, out: &Value, phase: Phase) -> Vec<String> {
    let mut bad = Vec::new();
    let mine: Vec<&Value> = out["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| {
                    c["namespace"] == ns.name.as_str() && c["deployment"] == case.name.as_str()
                })
                .collect()
        })
        .unwrap_or_default();
    let notes: Vec<&str> = out["notes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| {
                    n["namespace"] == ns.name.as_str() && n["deployment"] == case.name.as_str()
                })
                .map(|n| text(&n["message"]))
                .collect()
        })
        .unwrap_or_default();
    let expected = case.wants.iter().filter(|w| w.is_change()).count();
    if mine.len() != expected {
        bad.push(format!(
            "{phase:?}: {expected} change(s) expected, got {}: {mine:?}",
            mine.len()
        ));
    }
    let find = |path: &str| mine.iter().copied().find(|c| c["path"] == path);
    let mut check = |ok: bool, what: String| {
        if !ok {
            bad.push(format!("{phase:?}: {what}"));
        }
    };
    for want in &case.wants {
        match want {
            Want::Error {
                path,
                error_type,
                fragment,
                secret,
            } => {
                let Some(c) = find(path) else {
                    check(false, format!("no change with path {path:?}"));
                    continue;
                };
                check(c["action"] == "error", format!("action: {c}"));
                check(
                    c["error_type"] == *error_type,
                    format!("error_type {error_type} expected: {c}"),
                );
                check(
                    text(&c["message"]).contains(fragment.as_str()),
                    format!("message lacks {fragment:?}: {c}"),
                );
                check(
                    text(&c["message"]).contains(&format!("{}/{}", ns.name, case.name)),
                    format!("message does not name the Deployment: {c}"),
                );
                if let Some(secret) = secret {
                    check(
                        c["secret"] == secret.as_str(),
                        format!("secret {secret}: {c}"),
                    );
                }
                check(
                    c.get("result").is_none(),
                    format!("an error has a result: {c}"),
                );
            }
            Want::Written {
                mount,
                rel,
                data,
                preserve,
            } => {
                let path = format!("{mount}/{rel}");
                let Some(c) = find(&path) else {
                    check(false, format!("no change with path {path:?}"));
                    continue;
                };
                check(c["action"] == "create", format!("action create: {c}"));
                check(c["mount"] == format!("{mount}/"), format!("mount: {c}"));
                let kv = if *mount == "kv1" { 1 } else { 2 };
                check(c["kv_version"] == kv, format!("kv_version {kv}: {c}"));
                let added: Vec<String> = data.keys().cloned().collect();
                check(
                    strings(&c["keys"]["added"]) == added,
                    format!("keys.added expected {} keys: {c}", added.len()),
                );
                match phase {
                    Phase::Plan => check(c.get("result").is_none(), format!("plan result: {c}")),
                    Phase::Run => {
                        check(c["result"] == "applied", format!("result applied: {c}"));
                        if kv == 1 {
                            let got = ns.vault.kv1_read(mount, rel).await.unwrap_or_default();
                            check(
                                got == *data,
                                format!("{path} content: {}", diff_keys(data, &got)),
                            );
                        } else {
                            match ns.vault.kv2_read(mount, rel).await {
                                None => check(false, format!("{path} not in Vault")),
                                Some(got) => {
                                    check(
                                        got.data == *data,
                                        format!("{path} content: {}", diff_keys(data, &got.data)),
                                    );
                                    let md = &got.custom_metadata;
                                    let owner = format!("default/{}/{}", ns.name, case.name);
                                    check(
                                        md.get("managed-by").map(String::as_str)
                                            == Some("vault-sync")
                                            && md.get("vault-sync.io/owner") == Some(&owner)
                                            && md
                                                .get("vault-sync.io/preserve-on-delete")
                                                .map(String::as_str)
                                                == Some(if *preserve { "true" } else { "false" }),
                                        format!("{path} marker: {md:?}"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            Want::WriteFailed {
                mount,
                rel,
                error_type,
                fragment,
            } => {
                let path = format!("{mount}/{rel}");
                let Some(c) = find(&path) else {
                    check(false, format!("no change with path {path:?}"));
                    continue;
                };
                check(c["action"] == "create", format!("action create: {c}"));
                if phase == Phase::Run {
                    check(c["result"] == "failed", format!("result failed: {c}"));
                    check(
                        c["error_type"] == *error_type,
                        format!("error_type {error_type}: {c}"),
                    );
                    check(
                        text(&c["message"]).contains(fragment.as_str()),
                        format!("message lacks {fragment:?}: {c}"),
                    );
                    let content = ns.vault.kv2_read(mount, rel).await;
                    check(
                        content.is_none(),
                        format!("{path} has content after a refused write"),
                    );
                }
            }
            Want::Conflict { path, fragment } => {
                let Some(c) = find(path) else {
                    check(false, format!("no change with path {path:?}"));
                    continue;
                };
                check(c["action"] == "conflict", format!("action conflict: {c}"));
                check(
                    text(&c["reason"]).contains(fragment.as_str()),
                    format!("reason lacks {fragment:?}: {c}"),
                );
                check(
                    c.get("result").is_none(),
                    format!("a conflict has a result: {c}"),
                );
            }
            Want::Note(fragment) => check(
                notes.iter().any(|n| n.contains(fragment.as_str())),
                format!("no note containing {fragment:?}: {notes:?}"),
            ),
            Want::Absent { mount, rel } => {
                if phase == Phase::Run {
                    let present = if *mount == "kv1" {
                        ns.vault.kv1_read(mount, rel).await.is_some()
                    } else {
                        ns.vault.kv2_metadata(mount, rel).await.is_some()
                    };
                    check(!present, format!("{mount}/{rel} exists in Vault"));
                }
            }
        }
    }
    if !case.wants.iter().any(|w| matches!(w, Want::Note(_))) && !notes.is_empty() {
        bad.push(format!("{phase:?}: unexpected notes {notes:?}"));
    }
    bad
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/// Raw ESC/NUL characters in a run's output, with some context.
fn raw_controls(out: &CliOutput) -> Vec<String> {
    let mut found = Vec::new();
    for (stream, s) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        for line in s
            .lines()
            .filter(|l| l.contains(['\u{1b}', '\u{0}', '\u{7}']))
        {
            found.push(format!("{stream}: {line:?}"));
        }
    }
    found
}

/// The path inside its mount of an API path (`secret/data/<rel>`,
/// `secret/metadata/<rel>`, `kv1/<rel>`), for the mounts tests write to.
fn rel_of(api_path: &str) -> Option<&str> {
    for prefix in [
        "secret/data/",
        "secret/metadata/",
        "team/data/",
        "team/metadata/",
        "kv1/",
    ] {
        if let Some(rel) = api_path.strip_prefix(prefix) {
            return Some(rel);
        }
    }
    None
}

/// A secrets engine mounted for one test on the shared server, unmounted on drop.
struct ScratchMount {
    path: String,
}

impl ScratchMount {
    async fn enable(engine: &str) -> Self {
        let path = format!("hx-{engine}-{}", random_hex(8));
        VaultHttp::root()
            .must_post(
                &format!("sys/mounts/{path}"),
                &json!({ "type": engine }),
                &format!("mount {engine} at {path}"),
            )
            .await;
        Self { path }
    }
}

impl Drop for ScratchMount {
    fn drop(&mut self) {
        let api = format!("sys/mounts/{}", self.path);
        run_detached(async move {
            VaultHttp::root().delete(&api).await;
        });
    }
}

// ---------------------------------------------------------------------------
// Part 1: the table, end to end
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_annotations_and_inputs_in_one_namespace() {
    let ns = TestNs::new("hostile").await;
    let outside = TestNs::new("hostile-out").await;
    let transit = ScratchMount::enable("transit").await;
    let fx = create_fixtures(&ns).await;
    let cases = cases(&ns, &fx, &transit.path);
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    for case in &cases {
        deploy(&ns, &case.name, &case.annotations, &case.labels, &case.pod).await;
    }
    // A Deployment in a namespace the runs exclude with -n.
    let outside_value = outside.value("outside");
    outside.secret("db", &[("password", &outside_value)]).await;
    let outside_path = outside.path("secret", "excluded");
    deploy(
        &outside,
        "excluded",
        &[
            (PATH.into(), outside_path.clone()),
            (
                SECRETS.into(),
                r#"[{"name":"db","keys":["password"]}]"#.into(),
            ),
        ],
        &[],
        &pod(&[]),
    )
    .await;
    let leak_extra = [fx.binary_b64.clone(), outside_value.clone()];

    // One plan, one run: every case at once. The run goes in batches of
    // three paths, so conflicts, errors and writes cross batch boundaries.
    let mark = audit_mark();
    let plan = cli_bounded(&ns, &["plan", "-o", "json"], &[]).await;
    plan.assert_code(1);
    let plan_batched = cli_bounded(&ns, &["plan", "-o", "json", "--batch-size", "1"], &[]).await;
    plan_batched.assert_code(1);
    let plan_listed =
        cli_bounded(&ns, &["plan", "-o", "json", "--read-secrets", "list"], &[]).await;
    plan_listed.assert_code(1);
    let run = cli_bounded(&ns, &["run", "-o", "json", "--batch-size", "3"], &[]).await;
    run.assert_code(1);
    let audit = mark.entries();
    assert_no_leak(
        &[
            &plan.stdout,
            &plan.stderr,
            &plan_batched.stdout,
            &plan_batched.stderr,
            &plan_listed.stdout,
            &plan_listed.stderr,
            &run.stdout,
            &run.stderr,
        ],
        &leak_extra,
    );
    let plan_json = plan.json();
    let run_json = run.json();
    // Batching never changes the plan: one Deployment per batch plans the
    // same changes, in the same order, with the same messages.
    assert_eq!(
        plan_json["changes"],
        plan_batched.json()["changes"],
        "a plan in batches of one differs from the default plan"
    );
    // Nor does reading Secrets by namespace LIST instead of one GET each:
    // missing, optional and unreadable Secrets come out the same.
    assert_eq!(
        plan_json["changes"],
        plan_listed.json()["changes"],
        "a plan with --read-secrets list differs from the default plan"
    );
    assert_eq!(run_json["format_version"], 1);
    assert_eq!(run_json["command"], "run");
    assert_eq!(run_json["changes_pending"], false);
    assert_eq!(plan_json["changes_pending"], true);
    assert_eq!(
        run_json["errors"].as_array().map(Vec::len),
        Some(0),
        "no run-wide error expected:\n{run}"
    );

    // `run` applies exactly the plan that `plan` prints.
    assert_eq!(
        actions_by_workload(&plan_json, &ns.name),
        actions_by_workload(&run_json, &ns.name),
        "plan and run disagree"
    );

    // Per case.
    let mut failures = Vec::new();
    let mut tally: BTreeMap<Family, (usize, usize, usize)> = BTreeMap::new();
    for case in &cases {
        let mut bad = verify(&ns, case, &plan_json, Phase::Plan).await;
        bad.extend(verify(&ns, case, &run_json, Phase::Run).await);
        let entry = tally.entry(case.family).or_default();
        entry.0 += 1;
        match (&case.bug, bad.is_empty()) {
            (None, true) => entry.1 += 1,
            (None, false) => failures.push(format!("case {}:\n  {}", case.name, bad.join("\n  "))),
            (Some(bug), false) => {
                entry.2 += 1;
                let landed = match &bug.lands_at {
                    Some(rel) => match ns.vault.kv2_read("secret", rel).await {
                        Some(_) => format!("; it wrote secret/{rel} instead"),
                        None => String::new(),
                    },
                    None => String::new(),
                };
                eprintln!(
                    "XFAIL case {} (BUG: {}){landed}:\n  {}",
                    case.name,
                    bug.what,
                    bad.join("\n  ")
                );
            }
            (Some(bug), true) => failures.push(format!(
                "case {} passes although marked as a bug ({}): remove the marker",
                case.name, bug.what
            )),
        }
    }

    // Nothing written but what the cases expect (and what known bugs write).
    let allowed: BTreeSet<String> = cases
        .iter()
        .flat_map(|c| {
            c.wants
                .iter()
                .filter_map(|w| w.writes().map(|(_, rel)| rel.to_owned()))
                .chain(c.bug.iter().filter_map(|b| b.lands_at.clone()))
        })
        .collect();
    let index_prefix = format!("{}/", ns.index_mount);
    for (op, path) in audit.writes_by(&ns.audit_client()) {
        if path.starts_with(&index_prefix) || path == "sys/capabilities-self" {
            continue;
        }
        match rel_of(&path) {
            Some(rel) if allowed.contains(rel) => {}
            _ => failures.push(format!("unexpected Vault write: {op} {path}")),
        }
    }

    // The excluded namespace: not listed, not read, not written.
    assert!(
        !run.stdout.contains(&outside.name) && !plan.stdout.contains(&outside.name),
        "the namespace excluded by -n appears in the output:\n{run}"
    );
    assert_eq!(
        audit.requests(&outside.audit_needle()).count(),
        0,
        "Vault requests for the excluded namespace's path"
    );
    assert!(
        outside
            .vault
            .kv2_read("secret", &outside.rel("excluded"))
            .await
            .is_none()
    );
    tally.entry(Family::Scope).or_default().0 += 1;
    tally.entry(Family::Scope).or_default().1 += 1;

    // Second run: what was written is unchanged; errors are the same.
    let mark = audit_mark();
    let again = cli_bounded(&ns, &["run", "-o", "json"], &[]).await;
    again.assert_code(1);
    let again_json = again.json();
    let audit = mark.entries();
    for case in &cases {
        for want in &case.wants {
            if let Want::Written { mount, rel, .. } = want {
                let path = format!("{mount}/{rel}");
                let c = again_json["changes"]
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["path"] == path.as_str()).cloned())
                    .unwrap_or_default();
                if case.bug.is_none() && c["action"] != "unchanged" {
                    failures.push(format!("second run, {path}: unchanged expected, got {c}"));
                }
            }
        }
    }
    let errors = |out: &Value| -> BTreeSet<(String, String, String)> {
        out["changes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["action"] == "error")
                    .map(|c| {
                        (
                            text(&c["deployment"]).to_owned(),
                            text(&c["path"]).to_owned(),
                            text(&c["error_type"]).to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        errors(&run_json),
        errors(&again_json),
        "errors differ between runs"
    );
    // Only the refused 1000-key path is retried (its create fails every time).
    let k1000 = ns.rel("c/keys-1000/k1000");
    for (op, path) in audit.writes_by(&ns.audit_client()) {
        let ok = path.starts_with(&index_prefix)
            || path == "sys/capabilities-self"
            || rel_of(&path) == Some(k1000.as_str());
        if !ok {
            failures.push(format!("second run wrote {op} {path}"));
        }
    }

    // --adopt on the labelled cases only: an unmarked path and a marker
    // without owner are taken over; a path another tool manages is not.
    let eso_rel = ns.rel("c/eso");
    let eso_before = ns
        .vault
        .kv2_read("secret", &eso_rel)
        .await
        .expect("eso path");
    let adopt_run = cli_bounded(
        &ns,
        &[
            "run",
            "-o",
            "json",
            "--adopt",
            "-l",
            &format!("{GROUP_LABEL}=adopt"),
        ],
        &[],
    )
    .await;
    adopt_run.assert_code(1);
    let adopt_json = adopt_run.json();
    let adopt_changes = adopt_json["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let deployments: BTreeSet<&str> = adopt_changes
        .iter()
        .map(|c| text(&c["deployment"]))
        .collect();
    assert_eq!(
        deployments,
        BTreeSet::from(["eso", "foreign-adopt", "malformed"]),
        "the -l run touched other Deployments:\n{adopt_run}"
    );
    let adopt_want = fx.pick("adopt-src", &[("password", "password")]);
    for name in ["foreign-adopt", "malformed"] {
        let c = adopt_changes
            .iter()
            .find(|c| c["deployment"] == name)
            .cloned()
            .unwrap_or_default();
        assert_eq!(c["action"], "update", "{name} adopted:\n{adopt_run}");
        assert_eq!(c["result"], "applied", "{name}:\n{adopt_run}");
        let got = ns
            .vault
            .kv2_read("secret", &ns.rel(&format!("c/{name}")))
            .await
            .expect("adopted path");
        assert_eq!(
            got.data,
            adopt_want,
            "{name}: {}",
            diff_keys(&adopt_want, &got.data)
        );
        assert_eq!(
            got.custom_metadata.get("vault-sync.io/owner"),
            Some(&format!("default/{}/{name}", ns.name)),
            "{name} marker"
        );
    }
    let eso = adopt_changes
        .iter()
        .find(|c| c["deployment"] == "eso")
        .cloned()
        .unwrap_or_default();
    assert_eq!(eso["action"], "conflict", "eso with --adopt:\n{adopt_run}");
    assert_eq!(
        ns.vault.kv2_read("secret", &eso_rel).await,
        Some(eso_before),
        "a path managed by external-secrets changed"
    );
    // Out of the selector: still there, not deleted as orphans.
    assert!(
        ns.vault
            .kv2_read("secret", &ns.rel("c/good"))
            .await
            .is_some()
    );

    // Table output: control characters from annotations must be escaped,
    // never sent raw to a terminal (NO_COLOR=1: no colour codes either).
    let table = cli_bounded(&ns, &["plan"], &[]).await;
    table.assert_code(1);
    let raw = raw_controls(&table);
    if !raw.is_empty() {
        failures.push(format!(
            "raw control characters in the table:\n  {}",
            raw.join("\n  ")
        ));
    }

    // The excluded namespace's Deployment is valid: on its own it would sync.
    let outside_plan = cli_bounded(&outside, &["plan", "-o", "json"], &[]).await;
    outside_plan.assert_code(2);
    assert_eq!(
        outside_plan.json()["summary"]["create"],
        1,
        "{outside_plan}"
    );

    eprintln!("hostile inputs: family | cases | pass | xfail (known bug)");
    for (family, (n, pass, xfail)) in &tally {
        eprintln!("  {family:<32} | {n:>3} | {pass:>3} | {xfail:>3}");
    }
    let total: usize = tally
        .iter()
        .filter(|(f, _)| **f != Family::Control)
        .map(|(_, t)| t.0)
        .sum();
    assert!(total >= 40, "only {total} hostile cases");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The terminal-injection bug on its own, strictly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_output_escapes_control_characters() {
    let ns = TestNs::new("hostile-tty").await;
    deploy(
        &ns,
        "red",
        &[(
            PATH.into(),
            format!("\u{1b}]0;pwned\u{7}\u{1b}[2J{}", ns.path("secret", "x")),
        )],
        &[],
        &pod(&[]),
    )
    .await;
    let plan = cli_bounded(&ns, &["plan"], &[]).await;
    plan.assert_code(1);
    let raw = raw_controls(&plan);
    assert!(raw.is_empty(), "{TABLE_BUG}:\n{}", raw.join("\n"));
}

/// The positional-array bug on its own, strictly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_entries_must_be_objects() {
    let ns = TestNs::new("hostile-array").await;
    ns.secret("db", &[("password", &ns.value("array"))]).await;
    deploy(
        &ns,
        "array",
        &[
            (PATH.into(), ns.path("secret", "array")),
            (SECRETS.into(), r#"[["db",["password"]]]"#.into()),
        ],
        &[],
        &pod(&[]),
    )
    .await;
    let plan = cli_bounded(&ns, &["plan", "-o", "json"], &[]).await;
    let c = plan.json()["changes"][0].clone();
    assert_eq!(
        c["error_type"], "invalid_secrets_json",
        "{ARRAY_ENTRY_BUG}\n{plan}"
    );
}

/// The URL-metacharacter bug on its own, strictly: such paths must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_metacharacters_in_a_path_are_refused() {
    let ns = TestNs::new("hostile-url").await;
    ns.secret("db", &[("password", &ns.value("url"))]).await;
    let cluster = ns.name.clone();
    let spellings = [
        ("query", "query?x=1"),
        ("fragment", "fragment#frag"),
        ("dotdot", "a/%2e%2e/escaped"),
        ("slash", "pct%2Fslash"),
    ];
    // With a cluster name, '..' segments climb out of clusters/<name>/ (here
    // into the test's own it/<ns>/ prefix, which cleanup covers). Listed
    // last, so that the mount of secret/ is already known.
    let climb = format!("%2e%2e/%2e%2e/%2e%2e/%2e%2e/it/{}/climbed", ns.name);
    let spellings: Vec<(&str, &str)> = spellings
        .into_iter()
        .chain(std::iter::once(("z-climb", climb.as_str())))
        .collect();
    for &(name, rest) in &spellings {
        deploy(
            &ns,
            name,
            &[
                (PATH.into(), ns.path("secret", rest)),
                (
                    SECRETS.into(),
                    r#"[{"name":"db","keys":["password"]}]"#.into(),
                ),
            ],
            &[],
            &pod(&[]),
        )
        .await;
    }
    let mark = audit_mark();
    let run = cli_bounded(&ns, &["run", "-o", "json", "--cluster-name", &cluster], &[]).await;
    let json = run.json();
    let writes = mark.entries().writes_by(&ns.audit_client());
    for &(name, _) in &spellings {
        let c = json["changes"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["deployment"] == name).cloned())
            .unwrap_or_default();
        assert_eq!(
            c["error_type"], "invalid_path",
            "{name}: {c}\nwrites: {writes:?}"
        );
    }
    assert!(
        writes.iter().all(|(_, p)| p.contains("vault-sync/index")),
        "{writes:?}"
    );
}

// ---------------------------------------------------------------------------
// Part 2: no value in trace-level logs
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_in_trace_level_logs() {
    let ns = TestNs::new("hostile-leak").await;
    let password = ns.value("leak-password");
    ns.secret(
        "db",
        &[("password", &password), ("user", &ns.value("leak-user"))],
    )
    .await;
    ns.secret("other", &[("token", &ns.value("leak-token"))])
        .await;
    let many: Vec<(String, String)> = (0..600)
        .map(|i| (format!("m{i:03}"), ns.value(&format!("many-{i}"))))
        .collect();
    let many_pairs: Vec<(&str, &str)> =
        many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ns.secret("many", &many_pairs).await;
    let marker = ns.value("leak-binary");
    let mut blob = vec![0xff, 0x00];
    blob.extend_from_slice(marker.as_bytes());
    let blob_b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    raw_secret(&ns, "bin", BTreeMap::from([("blob".to_owned(), blob)])).await;
    // A foreign path: its values are read from Vault, then refused.
    let foreign_value = ns.value("leak-foreign");
    ns.vault
        .kv2_write("secret", &ns.rel("foreign"), &[("theirs", &foreign_value)])
        .await;

    let custom = |path: &str, json: &str| -> Annotations {
        vec![
            (PATH.into(), ns.path("secret", path)),
            (SECRETS.into(), json.into()),
        ]
    };
    let auto = |path: &str| -> Annotations { vec![(PATH.into(), ns.path("secret", path))] };
    let deployments: Vec<(&str, Annotations, Value)> = vec![
        ("app", auto("app"), pod(&["db", "other"])),
        (
            "merged",
            custom(
                "merged",
                r#"[{"name":"db","keys":["password","user"],"prefix":"DB_"}]"#,
            ),
            pod(&[]),
        ),
        (
            "missing-key",
            custom("missing-key", r#"[{"name":"db","keys":["nope"]}]"#),
            pod(&[]),
        ),
        (
            "binary",
            custom("binary", r#"[{"name":"bin","keys":["blob"]}]"#),
            pod(&[]),
        ),
        (
            "foreign",
            custom("foreign", r#"[{"name":"other","keys":["token"]}]"#),
            pod(&[]),
        ),
        ("refused", auto("refused"), pod(&["many"])),
    ];
    for (name, annotations, pod) in &deployments {
        deploy(&ns, name, annotations, &[], pod).await;
    }

    let kube_token = STACK.get("KUBE_ADMIN_TOKEN").to_owned();
    // (The root token of the dev server, "root", is too short to look for.)
    let extra = [blob_b64, kube_token];
    let trace_env = [("RUST_LOG", "trace")];
    let json_logs = ["-v", "-v", "--log-format", "json"];
    let with = |cmd: &[&'static str]| -> Vec<&'static str> {
        cmd.iter().chain(json_logs.iter()).copied().collect()
    };
    let mut outputs = Vec::new();

    // plan, run (creates, errors, a conflict, a refused write), an update,
    // a deletion: every code path that holds values, with trace logs on.
    outputs.push(cli_bounded(&ns, &with(&["plan", "-o", "json"]), &trace_env).await);
    let run = cli_bounded(&ns, &with(&["run", "-o", "json"]), &trace_env).await;
    run.assert_code(1);
    assert_eq!(
        ns.vault
            .kv2_read("secret", &ns.rel("app/db"))
            .await
            .and_then(|s| s.data.get("password").cloned()),
        Some(password.clone()),
        "the run under trace logging did not write:\n{run}"
    );
    outputs.push(run);
    ns.patch_secret("db", &[("password", &ns.value("leak-password-2"))])
        .await;
    let update = cli_bounded(&ns, &with(&["run"]), &trace_env).await;
    assert!(update.stderr.contains("\"action\":\"update\""), "{update}");
    outputs.push(update);
    ns.deployments_api()
        .delete("merged", &DeleteParams::default())
        .await
        .expect("delete Deployment");
    let delete = cli_bounded(&ns, &with(&["run", "-o", "json"]), &trace_env).await;
    assert_eq!(delete.json()["summary"]["delete"], 1, "{delete}");
    outputs.push(delete);
    // Text logs too.
    outputs.push(cli_bounded(&ns, &["plan", "-v", "-v"], &trace_env).await);

    for out in &outputs {
        // Trace logging really was on, libraries included.
        let has_trace = out.stderr.contains("\"level\":\"TRACE\"") || out.stderr.contains("TRACE");
        assert!(has_trace, "no trace-level log lines:\n{out}");
        assert_no_leak(&[&out.stdout, &out.stderr], &extra);
    }
    assert!(
        outputs[1].stderr.contains("hyper") || outputs[1].stderr.contains("reqwest"),
        "HTTP client trace logs expected"
    );
}

// ---------------------------------------------------------------------------
// Part 3: cluster names that are not this cluster's
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_name_default_is_refused_before_any_vault_request() {
    let case = ClusterNs::new("int-cl-default").await;
    let ns = &case.ns;
    ns.secret("db", &[("k", &ns.value("db"))]).await;
    ns.deployment(
        "app",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("db"),
    )
    .await;
    // Where today's code writes it: under `clusters/default/`, which the
    // harness does not clean.
    let rel = format!("clusters/default/{}", ns.rel("app/db"));
    case.cleanup_later(format!("secret/metadata/{rel}"));
    let mark = audit_mark();
    let out = ns
        .cli(&["run", "-o", "json", "--cluster-name", "default"])
        .await;
    out.assert_code(1);
    assert!(
        out.stderr.contains("default"),
        "stderr should say why `default` is refused:\n{out}"
    );
    assert_eq!(
        mark.entries().requests_by(&ns.audit_client()),
        0,
        "requests reached Vault:\n{out}"
    );
    assert!(
        ns.vault.kv2_metadata("secret", &rel).await.is_none(),
        "written under clusters/default/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_that_are_not_lowercase_dns_labels_are_refused() {
    let ns = TestNs::new("int-cl-names").await;
    for name in ["Prod", "a/b"] {
        let mark = audit_mark();
        let out = ns.cli(&["plan", "--cluster-name", name]).await;
        out.assert_code(1);
        assert_eq!(
            mark.entries().requests_by(&ns.audit_client()),
            0,
            "{name}: requests reached Vault:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Part 4: a Secret larger than the server accepts
// ---------------------------------------------------------------------------

/// OpenBao refuses a request body with more than `max_request_json_strings`
/// (1,000 by default) JSON strings; 600 keys and their values are 1,200.
/// The stack's dev server (OpenBao 2.7.2) answers such a write with
/// `400 {"errors":["refused JSON input due to high complexity: exceeded
/// maximum number of strings"]}` (checked with curl), which names no limit:
/// vault-sync's message must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_with_more_keys_than_the_server_accepts_is_request_too_large() {
    let case = ClusterNs::new("int-json-limit").await;
    let keys: Vec<String> = (0..600).map(|i| format!("KEY_{i:04}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    case.secret("big", &refs).await;
    case.auto("app", "secret/app", &["big"], &[]).await;
    let run = case.json("run", &[]).await;
    run.assert_code(1);
    let c = change(&run, &case.display("secret", "app/big"));
    // The change lists 600 key names: show only what matters.
    let (error_type, message) = (text(&c["error_type"]), text(&c["message"]));
    assert_eq!(error_type, "request_too_large", "message: {message}");
    assert!(
        message.contains("limit"),
        "the message should name the limit hit: {message}"
    );
    assert!(
        case.ns
            .vault
            .kv2_metadata("secret", &case.rel("app/big"))
            .await
            .is_none()
    );
}
