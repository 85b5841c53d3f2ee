//! Deployments + Secrets → the desired Vault state.
//!
//! Pure: the shell fetches the Secrets each Deployment needs
//! ([`required_secrets`]) and hands them in as plain data. A problem with one
//! Deployment is recorded against it and never stops the others.

use super::error_kind::ErrorKind;
use std::collections::BTreeMap;

use super::annotations::{Mode, Reconcile, SyncSpec};
use super::ownership::Owner;
use super::references::SecretReference;
use super::value::{NotUtf8, SecretMap, SecretValue};

/// A Secret's identity and revision, as the API server gave them: what a
/// saved plan pins a change to instead of any value (see `saved_plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub uid: String,
    pub resource_version: String,
}

/// What the shell found for one Secret.
#[derive(Debug, Clone)]
pub enum SecretFetch {
    /// Key → value, or `NotUtf8` for bytes Vault cannot store faithfully;
    /// and the Secret's uid and resourceVersion when the source gave them.
    Found(
        BTreeMap<String, Result<SecretValue, NotUtf8>>,
        Option<SecretMeta>,
    ),
    NotFound,
    /// Reading it failed (e.g. RBAC forbids it): `kind` is a metric label.
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

impl SecretFetch {
    /// Bytes of keys and values held (for sizing batches).
    pub fn value_bytes(&self) -> usize {
        match self {
            Self::Found(data, _) => data
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, SecretValue::len))
                .sum(),
            Self::NotFound | Self::Failed { .. } => 0,
        }
    }

    /// A Secret's `data` as read; each value is decoded once, here.
    pub fn found(data: BTreeMap<String, Vec<u8>>) -> Self {
        Self::Found(
            data.into_iter()
                .map(|(key, bytes)| (key, SecretValue::from_bytes(bytes)))
                .collect(),
            None,
        )
    }

    /// The same fetch, carrying the Secret's uid and resourceVersion.
    pub fn with_meta(self, meta: Option<SecretMeta>) -> Self {
        match self {
            Self::Found(data, _) => Self::Found(data, meta),
            other => other,
        }
    }

    /// The uid and resourceVersion of a found Secret, if known.
    pub fn meta(&self) -> Option<&SecretMeta> {
        match self {
            Self::Found(_, meta) => meta.as_ref(),
            Self::NotFound | Self::Failed { .. } => None,
        }
    }
}

/// A path as one Deployment wants it.
#[derive(Debug, Clone)]
pub struct DesiredPath {
    /// The path as the annotation spells it (auto-discovery: `<path>/<secret>`),
    /// not yet resolved against a mount.
    pub raw_path: String,
    pub owner: Owner,
    pub data: SecretMap,
    pub preserve_on_delete: bool,
    /// The Secrets its keys come from.
    pub sources: Vec<String>,
}

/// Why a Deployment (or one of its paths) cannot be synced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error("Secret {namespace}/{secret} not found; create it, or remove it from the Deployment")]
    SecretNotFound { namespace: String, secret: String },
    #[error("Secret {namespace}/{secret} has no key {key:?}; keys it has: {available}")]
    KeyMissing {
        namespace: String,
        secret: String,
        key: String,
        available: String,
    },
    #[error(
        "Secret {namespace}/{secret}, key {key:?}: the value is binary (not UTF-8), which Vault KV cannot store as a string; store it base64-encoded in the Secret"
    )]
    BinaryValue {
        namespace: String,
        secret: String,
        key: String,
    },
    #[error("Secret {namespace}/{secret} could not be read: {message}")]
    SecretUnreadable {
        namespace: String,
        secret: String,
        kind: ErrorKind,
        message: String,
    },
}

impl DesiredError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::SecretNotFound { .. } => ErrorKind::SecretNotFound,
            Self::KeyMissing { .. } => ErrorKind::SecretKeyMissing,
            Self::BinaryValue { .. } => ErrorKind::BinaryValue,
            Self::SecretUnreadable { kind, .. } => *kind,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }

    pub fn secret(&self) -> &str {
        match self {
            Self::SecretNotFound { secret, .. }
            | Self::KeyMissing { secret, .. }
            | Self::BinaryValue { secret, .. }
            | Self::SecretUnreadable { secret, .. } => secret,
        }
    }
}

/// What one Deployment contributes to the desired state.
#[derive(Debug, Clone, Default)]
pub struct DeploymentDesire {
    pub paths: Vec<DesiredPath>,
    /// Problems, each with the raw path it blocks (if known).
    pub errors: Vec<(Option<String>, DesiredError)>,
    /// Informational notes (optional Secret missing, reconcile off).
    pub notes: Vec<String>,
    /// Everything this Deployment already owns must be left alone this run:
    /// it failed, or it asked not to be reconciled. Orphan detection uses it.
    pub hold_existing: bool,
}

/// The Secrets a Deployment needs fetched.
///
/// `discovered` are the pod template's references ([`secret_references`]),
/// used in auto-discovery mode.
pub fn required_secrets(spec: &SyncSpec, discovered: &[SecretReference]) -> Vec<SecretReference> {
    match &spec.mode {
        Mode::AutoDiscover => discovered.to_vec(),
        Mode::Custom(selections) => {
            let mut names: Vec<String> = selections.iter().map(|s| s.name.clone()).collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|name| SecretReference {
                    name,
                    optional: false,
                })
                .collect()
        }
    }
}

/// The raw path auto-discovery writes one Secret to: `<path>/<secret>`.
fn secret_path(spec: &SyncSpec, secret: &str) -> String {
    format!("{}/{}", spec.path, secret)
}

/// Every raw path a Deployment can want, known before any Secret is read:
/// custom mode names it, auto-discovery derives one per referenced Secret.
pub fn wanted_paths(spec: &SyncSpec, discovered: &[SecretReference]) -> Vec<String> {
    match &spec.mode {
        Mode::Custom(_) => vec![spec.path.clone()],
        Mode::AutoDiscover => discovered
            .iter()
            .map(|r| secret_path(spec, &r.name))
            .collect(),
    }
}

/// What was fetched for the Secrets of one Deployment's namespace.
pub trait Secrets {
    fn secret(&self, name: &str) -> Option<&SecretFetch>;
}

impl Secrets for BTreeMap<String, SecretFetch> {
    fn secret(&self, name: &str) -> Option<&SecretFetch> {
        self.get(name)
    }
}

/// Builds what one Deployment wants in Vault.
///
/// `secrets` answers for each name from [`required_secrets`].
pub fn desire(
    owner: &Owner,
    spec: &SyncSpec,
    discovered: &[SecretReference],
    secrets: &impl Secrets,
) -> DeploymentDesire {
    let mut out = DeploymentDesire::default();
    if spec.reconcile == Reconcile::Off {
        out.notes
            .push("reconcile is \"off\": skipped, its Vault paths are left as they are".into());
        out.hold_existing = true;
        return out;
    }
    let namespace = &owner.namespace;
    let unreadable = |secret: &str| DesiredError::SecretNotFound {
        namespace: namespace.to_string(),
        secret: secret.to_owned(),
    };
    let failed = |secret: &str, kind: ErrorKind, message: &str| DesiredError::SecretUnreadable {
        namespace: namespace.to_string(),
        secret: secret.to_owned(),
        kind,
        message: message.to_owned(),
    };

    match &spec.mode {
        Mode::AutoDiscover => {
            for reference in required_secrets(spec, discovered) {
                let raw_path = secret_path(spec, &reference.name);
                match secrets.secret(&reference.name) {
                    Some(SecretFetch::Found(data, _)) => {
                        match decode_all(namespace, &reference.name, data) {
                            Ok(data) => out.paths.push(DesiredPath {
                                raw_path,
                                owner: owner.clone(),
                                data,
                                preserve_on_delete: spec.preserve_on_delete,
                                sources: vec![reference.name.clone()],
                            }),
                            Err(e) => out.errors.push((Some(raw_path), e)),
                        }
                    }
                    Some(SecretFetch::NotFound) | None if reference.optional => {
                        out.notes.push(format!(
                            "optional Secret {namespace}/{} does not exist: skipped",
                            reference.name
                        ));
                        // Its path may exist from before; keep it rather than
                        // deleting data a pod may still read once it returns.
                        out.hold_existing = true;
                    }
                    Some(SecretFetch::NotFound) | None => {
                        out.errors
                            .push((Some(raw_path), unreadable(&reference.name)));
                    }
                    Some(SecretFetch::Failed { kind, message }) => {
                        out.errors
                            .push((Some(raw_path), failed(&reference.name, *kind, message)));
                    }
                }
            }
        }
        Mode::Custom(selections) => {
            let mut data = SecretMap::new();
            let mut sources = Vec::new();
            let mut ok = true;
            for sel in selections {
                let found = match secrets.secret(&sel.name) {
                    Some(SecretFetch::Found(found, _)) => found,
                    Some(SecretFetch::Failed { kind, message }) => {
                        out.errors
                            .push((Some(spec.path.clone()), failed(&sel.name, *kind, message)));
                        ok = false;
                        continue;
                    }
                    Some(SecretFetch::NotFound) | None => {
                        out.errors
                            .push((Some(spec.path.clone()), unreadable(&sel.name)));
                        ok = false;
                        continue;
                    }
                };
                sources.push(sel.name.clone());
                for key in &sel.keys {
                    let Some(bytes) = found.get(key) else {
                        out.errors.push((
                            Some(spec.path.clone()),
                            DesiredError::KeyMissing {
                                namespace: namespace.to_string(),
                                secret: sel.name.clone(),
                                key: key.clone(),
                                available: list_keys(found),
                            },
                        ));
                        ok = false;
                        continue;
                    };
                    match bytes {
                        Ok(value) => {
                            data.insert(sel.target_key(key), value.clone());
                        }
                        Err(_) => {
                            out.errors.push((
                                Some(spec.path.clone()),
                                DesiredError::BinaryValue {
                                    namespace: namespace.to_string(),
                                    secret: sel.name.clone(),
                                    key: key.clone(),
                                },
                            ));
                            ok = false;
                        }
                    }
                }
            }
            // A path is written whole or not at all: never a partial merge.
            if ok {
                out.paths.push(DesiredPath {
                    raw_path: spec.path.clone(),
                    owner: owner.clone(),
                    data,
                    preserve_on_delete: spec.preserve_on_delete,
                    sources,
                });
            }
        }
    }
    if !out.errors.is_empty() {
        out.hold_existing = true;
    }
    out
}

fn decode_all(
    namespace: &str,
    secret: &str,
    data: &BTreeMap<String, Result<SecretValue, NotUtf8>>,
) -> Result<SecretMap, DesiredError> {
    data.iter()
        .map(|(key, value)| {
            value
                .clone()
                .map(|v| (key.clone(), v))
                .map_err(|_| DesiredError::BinaryValue {
                    namespace: namespace.to_owned(),
                    secret: secret.to_owned(),
                    key: key.clone(),
                })
        })
        .collect()
}

fn list_keys<V>(data: &BTreeMap<String, V>) -> String {
    if data.is_empty() {
        return "(none: the Secret is empty)".into();
    }
    data.keys().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::annotations::SecretSelection;
    use crate::core::references::secret_references;
    use k8s_openapi::api::core::v1::PodSpec;
    use serde_json::json;

    fn owner() -> Owner {
        Owner::new("default", "shop", "api")
    }

    fn auto(path: &str) -> SyncSpec {
        SyncSpec {
            path: path.into(),
            mode: Mode::AutoDiscover,
            preserve_on_delete: false,
            reconcile: Reconcile::Default,
        }
    }

    fn custom(sel: Vec<SecretSelection>) -> SyncSpec {
        SyncSpec {
            mode: Mode::Custom(sel),
            ..auto("secret/app")
        }
    }

    fn sel(name: &str, keys: &[&str], prefix: Option<&str>) -> SecretSelection {
        SecretSelection {
            name: name.into(),
            keys: keys.iter().map(|k| (*k).into()).collect(),
            prefix: prefix.map(Into::into),
        }
    }

    fn found(pairs: &[(&str, &str)]) -> SecretFetch {
        SecretFetch::found(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn pod() -> PodSpec {
        serde_json::from_value(json!({
            "containers": [{"name": "app",
                "envFrom": [{"secretRef": {"name": "db"}}],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "opt", "key": "x", "optional": true}}}]}],
            "volumes": [{"name": "v", "projected": {"sources": [{"secret": {"name": "tls"}}]}}]
        }))
        .unwrap()
    }

    fn keys(p: &DesiredPath) -> Vec<&str> {
        p.data.keys().map(String::as_str).collect()
    }

    #[test]
    fn auto_discovery_writes_each_secret_whole_to_a_sub_path() {
        let secrets = BTreeMap::from([
            ("db".to_owned(), found(&[("user", "u"), ("password", "p")])),
            ("tls".to_owned(), found(&[("tls.crt", "c")])),
        ]);
        let d = desire(
            &owner(),
            &auto("secret/app"),
            &secret_references(&pod()),
            &secrets,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let paths: Vec<_> = d.paths.iter().map(|p| p.raw_path.as_str()).collect();
        assert_eq!(paths, ["secret/app/db", "secret/app/tls"]);
        assert_eq!(keys(&d.paths[0]), ["password", "user"]);
        assert_eq!(d.notes.len(), 1, "optional missing Secret is a note");
        assert!(d.notes[0].contains("opt"));
    }

    #[test]
    fn auto_discovery_missing_secret_is_an_error_for_that_path_only() {
        let secrets = BTreeMap::from([("tls".to_owned(), found(&[("tls.crt", "c")]))]);
        let d = desire(
            &owner(),
            &auto("secret/app"),
            &secret_references(&pod()),
            &secrets,
        );
        assert_eq!(d.paths.len(), 1);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].0.as_deref(), Some("secret/app/db"));
        assert_eq!(d.errors[0].1.metric_label(), "secret_not_found");
        assert!(d.hold_existing);
    }

    #[test]
    fn custom_mode_merges_with_prefixes() {
        let spec = custom(vec![
            sel("db", &["password"], Some("DB_")),
            sel("api", &["token"], None),
        ]);
        let secrets = BTreeMap::from([
            ("db".to_owned(), found(&[("password", "p"), ("user", "u")])),
            ("api".to_owned(), found(&[("token", "t")])),
        ]);
        let d = desire(&owner(), &spec, &[], &secrets);
        assert!(d.errors.is_empty());
        assert_eq!(d.paths.len(), 1);
        assert_eq!(keys(&d.paths[0]), ["DB_password", "token"]);
        assert_eq!(d.paths[0].raw_path, "secret/app");
        assert_eq!(d.paths[0].sources, ["db", "api"]);
        assert!(!d.hold_existing);
    }

    #[test]
    fn custom_mode_missing_key_lists_existing_keys_and_writes_nothing() {
        let spec = custom(vec![sel("db", &["pasword"], None)]);
        let secrets =
            BTreeMap::from([("db".to_owned(), found(&[("password", "p"), ("user", "u")]))]);
        let d = desire(&owner(), &spec, &[], &secrets);
        assert!(d.paths.is_empty());
        let msg = d.errors[0].1.to_string();
        assert!(msg.contains("\"pasword\""), "{msg}");
        assert!(msg.contains("password, user"), "{msg}");
        assert!(!msg.contains("\"p\""));
        assert_eq!(d.errors[0].1.metric_label(), "secret_key_missing");
    }

    #[test]
    fn custom_mode_missing_and_unreadable_secrets() {
        let spec = custom(vec![sel("gone", &["k"], None), sel("locked", &["k"], None)]);
        let secrets = BTreeMap::from([
            ("gone".to_owned(), SecretFetch::NotFound),
            (
                "locked".to_owned(),
                SecretFetch::Failed {
                    kind: ErrorKind::Forbidden,
                    message: "forbidden".into(),
                },
            ),
        ]);
        let d = desire(&owner(), &spec, &[], &secrets);
        assert!(d.paths.is_empty());
        let labels: Vec<_> = d.errors.iter().map(|e| e.1.metric_label()).collect();
        assert_eq!(labels, ["secret_not_found", "forbidden"]);
    }

    #[test]
    fn binary_values_are_refused() {
        let secrets = BTreeMap::from([(
            "db".to_owned(),
            SecretFetch::found(BTreeMap::from([("blob".to_owned(), vec![0xff, 0x00])])),
        )]);
        let spec = custom(vec![sel("db", &["blob"], None)]);
        let d = desire(&owner(), &spec, &[], &secrets);
        assert_eq!(d.errors[0].1.metric_label(), "binary_value");
        let d = desire(
            &owner(),
            &auto("secret/app"),
            &secret_references(&pod()),
            &secrets,
        );
        assert!(
            d.errors
                .iter()
                .any(|e| e.1.kind() == ErrorKind::BinaryValue)
        );
    }

    #[test]
    fn reconcile_off_holds_everything() {
        let spec = SyncSpec {
            reconcile: Reconcile::Off,
            ..auto("secret/app")
        };
        let d = desire(
            &owner(),
            &spec,
            &secret_references(&pod()),
            &BTreeMap::new(),
        );
        assert!(d.paths.is_empty() && d.errors.is_empty());
        assert!(d.hold_existing);
    }

    #[test]
    fn required_secrets_per_mode() {
        let names =
            |refs: Vec<SecretReference>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(required_secrets(
                &auto("secret/app"),
                &secret_references(&pod())
            )),
            ["db", "opt", "tls"]
        );
        let spec = custom(vec![
            sel("b", &["k"], None),
            sel("a", &["k"], Some("X")),
            sel("b", &["j"], Some("Y")),
        ]);
        assert_eq!(names(required_secrets(&spec, &[])), ["a", "b"]);
    }

    #[test]
    fn wanted_paths_match_what_desire_builds() {
        assert_eq!(
            wanted_paths(&auto("secret/app"), &secret_references(&pod())),
            ["secret/app/db", "secret/app/opt", "secret/app/tls"]
        );
        let spec = custom(vec![sel("a", &["k"], None), sel("b", &["j"], None)]);
        assert_eq!(wanted_paths(&spec, &[]), ["secret/app"]);
        let secrets = BTreeMap::from([
            ("db".to_owned(), found(&[("k", "v")])),
            ("opt".to_owned(), found(&[("k", "v")])),
            ("tls".to_owned(), found(&[("k", "v")])),
        ]);
        let d = desire(
            &owner(),
            &auto("secret/app"),
            &secret_references(&pod()),
            &secrets,
        );
        let built: Vec<_> = d.paths.iter().map(|p| p.raw_path.clone()).collect();
        assert_eq!(
            built,
            wanted_paths(&auto("secret/app"), &secret_references(&pod()))
        );
    }
}
