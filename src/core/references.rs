//! Which Secrets a pod template references (auto-discovery mode).
//!
//! Scanned: `env[].valueFrom.secretKeyRef`, `envFrom[].secretRef` (in
//! `containers` and `initContainers`), `volumes[].secret` and
//! `volumes[].projected.sources[].secret`.
//!
//! Deliberately not scanned: `imagePullSecrets`. Registry credentials are
//! for the kubelet, not the application, and copying them to Vault would
//! widen their exposure; list them in `vault-sync.io/secrets` if really wanted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// A Secret the pod template references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub name: String,
    /// True only if *every* reference to this Secret is `optional: true`:
    /// then a missing Secret is skipped with a note instead of an error.
    pub optional: bool,
}

/// The Secrets referenced by `spec`, deduplicated, in name order.
pub fn secret_references(spec: &PodSpec) -> Vec<SecretReference> {
    // name → optional-everywhere so far
    let mut found: BTreeMap<String, bool> = BTreeMap::new();
    let mut add = |name: Option<&String>, optional: Option<bool>| {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return;
        };
        let optional = optional.unwrap_or(false);
        found
            .entry(name.clone())
            .and_modify(|all_optional| *all_optional &= optional)
            .or_insert(optional);
    };

    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        scan_container(container, &mut add);
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(secret) = &volume.secret {
            add(secret.secret_name.as_ref(), secret.optional);
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(secret) = &source.secret {
                    add(Some(&secret.name), secret.optional);
                }
            }
        }
    }

    found
        .into_iter()
        .map(|(name, optional)| SecretReference { name, optional })
        .collect()
}

fn scan_container(container: &Container, add: &mut impl FnMut(Option<&String>, Option<bool>)) {
    for env in container.env.iter().flatten() {
        if let Some(key_ref) = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            add(Some(&key_ref.name), key_ref.optional);
        }
    }
    for env_from in container.env_from.iter().flatten() {
        if let Some(secret_ref) = &env_from.secret_ref {
            add(Some(&secret_ref.name), secret_ref.optional);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("valid PodSpec")
    }

    fn names(refs: &[SecretReference]) -> Vec<(&str, bool)> {
        refs.iter().map(|r| (r.name.as_str(), r.optional)).collect()
    }

    #[test]
    fn every_reference_kind_is_found() {
        let refs = secret_references(&spec(json!({
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            "containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-key", "key": "a"}}},
                    {"name": "B", "value": "literal"},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "c"}}}
                ],
                "envFrom": [{"secretRef": {"name": "env-from"}}, {"configMapRef": {"name": "cm"}}]
            }],
            "volumes": [
                {"name": "v1", "secret": {"secretName": "vol"}},
                {"name": "v2", "projected": {"sources": [
                    {"secret": {"name": "projected"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}},
                {"name": "v3", "emptyDir": {}}
            ],
            "imagePullSecrets": [{"name": "registry"}]
        })));
        assert_eq!(
            names(&refs),
            vec![
                ("env-from", false),
                ("env-key", false),
                ("init-env", false),
                ("projected", false),
                ("vol", false),
            ]
        );
    }

    #[test]
    fn optional_only_if_optional_everywhere() {
        let refs = secret_references(&spec(json!({
            "containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "both", "key": "a", "optional": true}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "opt", "key": "b", "optional": true}}}
                ]
            }],
            "volumes": [{"name": "v", "secret": {"secretName": "both"}}]
        })));
        assert_eq!(names(&refs), vec![("both", false), ("opt", true)]);
    }

    #[test]
    fn no_references() {
        let refs = secret_references(&spec(json!({"containers": [{"name": "app"}]})));
        assert!(refs.is_empty());
    }
}
