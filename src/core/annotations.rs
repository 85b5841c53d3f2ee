//! The annotation contract: Deployment annotations → a typed [`SyncSpec`].
//!
//! The names and meanings are kept compatible with the operator that defined
//! them. Parsing never panics and never aborts a run: a bad annotation is an
//! [`AnnotationError`] for that one Deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::vault_path::{self, PathError};

/// The prefix of every annotation of the contract.
pub const DOMAIN: &str = "vault-sync.io/";

/// Vault path; its presence turns sync on.
pub const PATH: &str = "vault-sync.io/path";
/// JSON list of `{"name", "keys", "prefix"}`: custom mode.
pub const SECRETS: &str = "vault-sync.io/secrets";
/// `"true"`: never delete this path when its Deployment goes.
pub const PRESERVE_ON_DELETE: &str = "vault-sync.io/preserve-on-delete";
/// `"off"` or an interval of at least 30s.
pub const RECONCILE: &str = "vault-sync.io/reconcile";

/// The shortest reconcile interval the operator accepted.
pub const MIN_RECONCILE: Duration = Duration::from_secs(30);

/// What one Deployment asks vault-sync to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSpec {
    /// The Vault path as written in the annotation (validated, not yet
    /// resolved against a mount).
    pub path: String,
    pub mode: Mode,
    pub preserve_on_delete: bool,
    pub reconcile: Reconcile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No `vault-sync.io/secrets`: every Secret the pod template references
    /// is written whole to `<path>/<secret-name>`.
    AutoDiscover,
    /// The listed keys of the listed Secrets, merged into `<path>`.
    Custom(Vec<SecretSelection>),
}

/// One entry of the `vault-sync.io/secrets` list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSelection {
    pub name: String,
    pub keys: Vec<String>,
    #[serde(default)]
    pub prefix: Option<String>,
}

impl SecretSelection {
    /// The key as written to Vault: `prefix + key`.
    pub fn target_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix.as_deref().unwrap_or(""))
    }
}

/// The `vault-sync.io/reconcile` annotation. Scheduling belongs to the
/// CronJob; the value is validated so that typos are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// Not set: every run reconciles.
    Default,
    /// `"off"`: the Deployment is skipped (listed as such in the plan).
    Off,
    /// An interval; informational for a CronJob-driven tool.
    Every(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(
        "annotation {SECRETS} is not valid JSON ({0}); expected a list like [{{\"name\": \"db\", \"keys\": [\"password\"], \"prefix\": \"DB_\"}}]"
    )]
    SecretsJson(String),
    #[error(
        "annotation {SECRETS} is an empty list; remove the annotation to sync every referenced Secret, or list at least one Secret"
    )]
    SecretsEmpty,
    #[error("annotation {SECRETS}, entry {index}: \"name\" is empty")]
    EmptySecretName { index: usize },
    #[error(
        "annotation {SECRETS}, entry {index} ({name:?}): {name:?} is not a valid Secret name (lowercase letters, digits, '-' and '.', at most 253 characters)"
    )]
    InvalidSecretName { index: usize, name: String },
    #[error(
        "annotation {SECRETS}, entry {index} ({name:?}): \"keys\" is empty; list the keys to sync (an empty list does not mean \"all keys\")"
    )]
    EmptyKeys { index: usize, name: String },
    #[error(
        "annotation {SECRETS}, entry {index} ({name:?}): key {key:?} is not a valid Secret key (letters, digits, '-', '_' and '.')"
    )]
    InvalidKey {
        index: usize,
        name: String,
        key: String,
    },
    #[error(
        "annotation {SECRETS}, entry {index} ({name:?}): prefix {prefix:?} contains a control character or '/'"
    )]
    InvalidPrefix {
        index: usize,
        name: String,
        prefix: String,
    },
    #[error(
        "annotation {SECRETS}: Vault key {key:?} would be written by both {first} and {second}; give one of them a different \"prefix\""
    )]
    DuplicateTargetKey {
        key: String,
        first: String,
        second: String,
    },
    #[error("annotation {PRESERVE_ON_DELETE} is {0:?}; use \"true\" or \"false\"")]
    PreserveOnDelete(String),
    #[error(
        "annotation {RECONCILE} is {0:?}; use \"off\" or a duration of at least 30s such as \"5m\" or \"1h30m\""
    )]
    Reconcile(String),
}

impl AnnotationError {
    /// Label for `vault_sync_last_run_config_parse_errors{error_type}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Path(_) => "invalid_path",
            Self::SecretsJson(_) | Self::SecretsEmpty => "invalid_secrets_json",
            Self::EmptySecretName { .. }
            | Self::InvalidSecretName { .. }
            | Self::EmptyKeys { .. }
            | Self::InvalidKey { .. }
            | Self::InvalidPrefix { .. }
            | Self::DuplicateTargetKey { .. } => "invalid_secrets_entry",
            Self::PreserveOnDelete(_) => "invalid_preserve_on_delete",
            Self::Reconcile(_) => "invalid_reconcile",
        }
    }
}

/// Parses a Deployment's annotations.
///
/// `Ok(None)`: the Deployment does not ask for sync (no `vault-sync.io/path`).
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Option<SyncSpec>, AnnotationError> {
    let Some(raw_path) = annotations.get(PATH) else {
        return Ok(None);
    };
    let path = vault_path::validate(raw_path)?;
    let mode = match annotations.get(SECRETS) {
        None => Mode::AutoDiscover,
        Some(json) => Mode::Custom(parse_selections(json)?),
    };
    let preserve_on_delete = match annotations.get(PRESERVE_ON_DELETE).map(|s| s.trim()) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(AnnotationError::PreserveOnDelete(v.to_owned())),
    };
    let reconcile = match annotations.get(RECONCILE) {
        None => Reconcile::Default,
        Some(v) => parse_reconcile(v)?,
    };
    Ok(Some(SyncSpec {
        path,
        mode,
        preserve_on_delete,
        reconcile,
    }))
}

fn parse_selections(json: &str) -> Result<Vec<SecretSelection>, AnnotationError> {
    let bad = |e: serde_json::Error| AnnotationError::SecretsJson(e.to_string());
    let items: Vec<serde_json::Value> = serde_json::from_str(json).map_err(bad)?;
    // serde's derive would also accept `["db", ["k"], "P_"]` for a struct;
    // the contract is a list of objects.
    if let Some(index) = items.iter().position(|v| !v.is_object()) {
        return Err(AnnotationError::SecretsJson(format!(
            "entry {index} is not an object with \"name\" and \"keys\""
        )));
    }
    // Parsed again from the text, not from `items`: a JSON object value
    // silently keeps the last of duplicate fields, the derive refuses them.
    let selections: Vec<SecretSelection> = serde_json::from_str(json).map_err(bad)?;
    if selections.is_empty() {
        return Err(AnnotationError::SecretsEmpty);
    }
    // Final Vault key → "Secret/key" that produces it.
    let mut targets: BTreeMap<String, String> = BTreeMap::new();
    for (index, sel) in selections.iter().enumerate() {
        let name = sel.name.clone();
        if sel.name.is_empty() {
            return Err(AnnotationError::EmptySecretName { index });
        }
        if !is_dns_subdomain(&sel.name) {
            return Err(AnnotationError::InvalidSecretName { index, name });
        }
        if sel.keys.is_empty() {
            return Err(AnnotationError::EmptyKeys { index, name });
        }
        if let Some(prefix) = &sel.prefix
            && prefix.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(AnnotationError::InvalidPrefix {
                index,
                name,
                prefix: prefix.clone(),
            });
        }
        let mut seen = BTreeSet::new();
        for key in &sel.keys {
            if !is_secret_key(key) {
                return Err(AnnotationError::InvalidKey {
                    index,
                    name,
                    key: key.clone(),
                });
            }
            if !seen.insert(key.as_str()) {
                // Listing a key twice is harmless; it maps to the same target.
                continue;
            }
            let target = sel.target_key(key);
            let source = format!("{}/{key}", sel.name);
            if let Some(first) = targets.get(&target) {
                return Err(AnnotationError::DuplicateTargetKey {
                    key: target,
                    first: first.clone(),
                    second: source,
                });
            }
            targets.insert(target, source);
        }
    }
    Ok(selections)
}

fn parse_reconcile(raw: &str) -> Result<Reconcile, AnnotationError> {
    let value = raw.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(Reconcile::Off);
    }
    match parse_go_duration(value) {
        Some(d) if d >= MIN_RECONCILE => Ok(Reconcile::Every(d)),
        _ => Err(AnnotationError::Reconcile(raw.to_owned())),
    }
}

/// Parses a Go `time.ParseDuration` string without sign (`"30s"`, `"1h30m"`,
/// `"1.5h"`), the format the operator's users already write.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// RFC 1123 subdomain, as Kubernetes requires of Secret names.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A key Kubernetes accepts in a Secret's `data`: `[-._a-zA-Z0-9]+`.
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&AnnotationError) -> bool;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> AnnotationError {
        parse(&ann(pairs)).expect_err("expected an error")
    }

    #[test]
    fn no_path_means_no_sync() {
        assert_eq!(parse(&ann(&[(SECRETS, "[]")])), Ok(None));
    }

    #[test]
    fn auto_discovery_defaults() {
        let spec = parse(&ann(&[(PATH, "secret/app")])).unwrap().unwrap();
        assert_eq!(
            spec,
            SyncSpec {
                path: "secret/app".into(),
                mode: Mode::AutoDiscover,
                preserve_on_delete: false,
                reconcile: Reconcile::Default,
            }
        );
    }

    #[test]
    fn custom_mode_with_prefixes() {
        let spec = parse(&ann(&[
            (PATH, "secret/data/app"),
            (
                SECRETS,
                r#"[{"name":"db","keys":["password","user"],"prefix":"DB_"},{"name":"api","keys":["token"]}]"#,
            ),
            (PRESERVE_ON_DELETE, "true"),
            (RECONCILE, "1h30m"),
        ]))
        .unwrap()
        .unwrap();
        let Mode::Custom(sel) = &spec.mode else {
            panic!("custom mode expected")
        };
        assert_eq!(sel.len(), 2);
        assert_eq!(sel[0].target_key("password"), "DB_password");
        assert_eq!(sel[1].target_key("token"), "token");
        assert!(spec.preserve_on_delete);
        assert_eq!(spec.reconcile, Reconcile::Every(Duration::from_secs(5400)));
    }

    #[test]
    fn secrets_json_errors() {
        let cases: &[(&str, Check)] = &[
            ("not json", |e| matches!(e, AnnotationError::SecretsJson(_))),
            (r#"{"name":"a","keys":["k"]}"#, |e| {
                matches!(e, AnnotationError::SecretsJson(_))
            }),
            ("null", |e| matches!(e, AnnotationError::SecretsJson(_))),
            (
                r#"[{"name":"a","name":"b","keys":["k"]}]"#,
                |e| matches!(e, AnnotationError::SecretsJson(m) if m.contains("duplicate field")),
            ),
            (
                r#"[["db",["password"],"P_"]]"#,
                |e| matches!(e, AnnotationError::SecretsJson(m) if m.contains("not an object")),
            ),
            ("[]", |e| matches!(e, AnnotationError::SecretsEmpty)),
            (r#"[{"name":"a","keys":[1]}]"#, |e| {
                matches!(e, AnnotationError::SecretsJson(_))
            }),
            (r#"[{"name":"a","keys":["k"],"extra":1}]"#, |e| {
                matches!(e, AnnotationError::SecretsJson(_))
            }),
            (r#"[{"keys":["k"]}]"#, |e| {
                matches!(e, AnnotationError::SecretsJson(_))
            }),
            (r#"[{"name":"","keys":["k"]}]"#, |e| {
                matches!(e, AnnotationError::EmptySecretName { index: 0 })
            }),
            (r#"[{"name":"Bad_Name","keys":["k"]}]"#, |e| {
                matches!(e, AnnotationError::InvalidSecretName { .. })
            }),
            (r#"[{"name":"a","keys":[]}]"#, |e| {
                matches!(e, AnnotationError::EmptyKeys { .. })
            }),
            (r#"[{"name":"a","keys":[""]}]"#, |e| {
                matches!(e, AnnotationError::InvalidKey { .. })
            }),
            (r#"[{"name":"a","keys":["k"],"prefix":"a/b"}]"#, |e| {
                matches!(e, AnnotationError::InvalidPrefix { .. })
            }),
            (
                r#"[{"name":"a","keys":["x"],"prefix":"P_"},{"name":"b","keys":["P_x"]}]"#,
                |e| matches!(e, AnnotationError::DuplicateTargetKey { key, .. } if key == "P_x"),
            ),
        ];
        for (json, check) in cases {
            let e = err(&[(PATH, "secret/app"), (SECRETS, json)]);
            assert!(check(&e), "{json}: unexpected {e:?}");
        }
    }

    #[test]
    fn duplicate_key_in_one_entry_is_harmless() {
        let spec = parse(&ann(&[
            (PATH, "secret/app"),
            (SECRETS, r#"[{"name":"a","keys":["k","k"]}]"#),
        ]));
        assert!(matches!(spec, Ok(Some(_))));
    }

    #[test]
    fn preserve_on_delete_values() {
        for (v, want) in [("true", true), ("false", false), ("TRUE", true)] {
            let spec = parse(&ann(&[(PATH, "secret/app"), (PRESERVE_ON_DELETE, v)]))
                .unwrap()
                .unwrap();
            assert_eq!(spec.preserve_on_delete, want, "{v}");
        }
        for v in ["yes", "1", ""] {
            assert_eq!(
                err(&[(PATH, "secret/app"), (PRESERVE_ON_DELETE, v)]),
                AnnotationError::PreserveOnDelete(v.into())
            );
        }
    }

    #[test]
    fn reconcile_values() {
        let ok = |v: &str| {
            parse(&ann(&[(PATH, "secret/app"), (RECONCILE, v)]))
                .unwrap()
                .unwrap()
                .reconcile
        };
        assert_eq!(ok("off"), Reconcile::Off);
        assert_eq!(ok("30s"), Reconcile::Every(Duration::from_secs(30)));
        assert_eq!(ok("5m"), Reconcile::Every(Duration::from_secs(300)));
        assert_eq!(ok("1.5h"), Reconcile::Every(Duration::from_secs(5400)));
        for v in ["10s", "-1m", "5x", "", "29s", "m", "1", "1h-2m"] {
            assert_eq!(
                err(&[(PATH, "secret/app"), (RECONCILE, v)]),
                AnnotationError::Reconcile(v.into()),
                "{v}"
            );
        }
    }

    #[test]
    fn bad_path_is_reported_with_the_path_error() {
        assert!(matches!(
            err(&[(PATH, "")]),
            AnnotationError::Path(PathError::Empty)
        ));
        assert_eq!(err(&[(PATH, "")]).metric_label(), "invalid_path");
    }

    #[test]
    fn names_and_keys() {
        assert!(is_dns_subdomain("db-credentials.v1"));
        assert!(!is_dns_subdomain("-db"));
        assert!(!is_dns_subdomain("DB"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_secret_key("tls.crt"));
        assert!(is_secret_key("DB_PASSWORD"));
        assert!(!is_secret_key("a/b"));
        assert!(!is_secret_key("ключ"));
    }
}
