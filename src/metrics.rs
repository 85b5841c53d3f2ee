//! The metrics a run reports, in one registry.
//!
//! vault-sync is a batch job: one process, one run, one push. Every family
//! therefore describes **the last run** of its Pushgateway group (see
//! `commands::publish_metrics` for the grouping key), and each push replaces
//! the group whole. Counts are gauges named `vault_sync_last_run_*`: a
//! counter that restarts at zero in every process and is sampled between
//! pushes cannot be read with `rate()` or `increase()`. The one counter-typed
//! family left is the write-latency histogram, whose buckets are counters by
//! the format's definition; its HELP says how to read it.
//!
//! Every label value the code can emit is from a closed set listed here
//! (`ErrorKind::ALL`, [`VAULT_WRITE_ERROR_TYPES`], [`SYNC_RESULTS`],
//! [`AUTH_RESULTS`], [`AUTH_METHODS`], [`REQUEST_METHODS`],
//! [`STATUS_CLASSES`], and `Action::NAMES` for paths), except the
//! Kubernetes names `namespace`, `deployment` and `secret`, which are bounded
//! by the cluster. No label ever carries a Vault path or a value.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::error_kind::ErrorKind;
use crate::core::plan::Action;

mod workload;
pub use workload::WorkloadGauge;

/// The `error_type`s of a failed Vault write or delete: the kinds a
/// `VaultError` maps to. Every `error_type` of `vault_sync_last_run_errors`
/// is one of `ErrorKind::ALL`; both sets are pre-seeded at zero, so that a
/// dashboard shows 0 rather than "no data" and an alert's `> 0` has a series
/// to compare.
pub const VAULT_WRITE_ERROR_TYPES: [ErrorKind; 9] = [
    ErrorKind::ConnectionFailed,
    ErrorKind::AuthFailed,
    ErrorKind::PermissionDenied,
    ErrorKind::InvalidPath,
    ErrorKind::CasMismatch,
    ErrorKind::RequestTooLarge,
    ErrorKind::NotAttempted,
    ErrorKind::Stale,
    ErrorKind::Unknown,
];

/// `result` of `vault_sync_last_run_sync_attempts`: a Deployment's worst
/// path (error beats conflict beats success).
pub const SYNC_RESULTS: &[&str] = &["success", "conflict", "error"];
/// `result` of `vault_sync_last_run_auth_attempts`.
pub const AUTH_RESULTS: &[&str] = &["success", "failure"];
/// `method` of `vault_sync_last_run_auth_attempts` (`AuthMethod::name`).
pub const AUTH_METHODS: &[&str] = &["token", "kubernetes", "approle", "jwt"];
/// `method` of `vault_sync_last_run_vault_requests`.
pub const REQUEST_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "LIST"];
/// `status_class` of `vault_sync_last_run_vault_requests`.
pub const STATUS_CLASSES: &[&str] = &["2xx", "3xx", "4xx", "5xx", "other", "error"];

/// The family `publish_metrics` carries over from the group when a run
/// fails, so that a failure never moves it.
pub const LAST_SUCCESS: &str = "vault_sync_last_success_timestamp_seconds";

pub struct Metrics {
    registry: Registry,
    pub sync_attempts: WorkloadGauge,
    pub sync_duration: Histogram,
    pub secrets_discovered: WorkloadGauge,
    pub secret_not_found_errors: IntGaugeVec,
    pub secret_key_missing_errors: IntGaugeVec,
    pub config_parse_errors: IntGaugeVec,
    pub vault_write_errors: IntGaugeVec,
    pub errors: IntGaugeVec,
    pub auth_attempts: IntGaugeVec,
    pub last_success_timestamp: Gauge,
    pub last_run_timestamp: Gauge,
    pub run_duration: Gauge,
    pub paths: IntGaugeVec,
    pub vault_requests: IntGaugeVec,
    pub build_info: IntGaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("vault_sync_{name}"), help)
}

/// `label` if it is one of `set`; otherwise `"unknown"` (and a failed
/// debug assertion: the tests prove the set complete, so this never fires).
fn closed(label: &str, set: &[&'static str]) -> &'static str {
    match set.iter().find(|l| **l == label) {
        Some(l) => l,
        None => {
            debug_assert!(false, "label {label:?} is not in the closed set {set:?}");
            "unknown"
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(opts(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let gauge = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let sync_duration = Histogram::with_opts(HistogramOpts::new(
            "vault_sync_sync_duration_seconds",
            "Time to write one path to Vault (content and metadata), over the writes of the last run. \
             A histogram, so its buckets are counters by type, but each run starts them from zero: \
             read the last run's distribution from the values (e.g. _sum / _count), not with rate().",
        ))?;
        registry.register(Box::new(sync_duration.clone()))?;

        let m = Self {
            sync_attempts: WorkloadGauge::new(
                "vault_sync_last_run_sync_attempts",
                "1 for each Deployment the last run synced, labelled with its result: \
                 error (a path failed), conflict (a path it may not write), else success.",
                Some("result"),
            ),
            sync_duration,
            secrets_discovered: WorkloadGauge::new(
                "vault_sync_secrets_discovered",
                "Secrets a Deployment references (auto-discovery) or lists (custom mode), in the last run.",
                None,
            ),
            secret_not_found_errors: gauge_vec(
                "last_run_secret_not_found_errors",
                "Referenced Secrets that did not exist in the last run.",
                &["namespace", "secret"],
            )?,
            secret_key_missing_errors: gauge_vec(
                "last_run_secret_key_missing_errors",
                "Keys listed in vault-sync.io/secrets that a Secret lacked in the last run.",
                &["namespace", "secret"],
            )?,
            config_parse_errors: gauge_vec(
                "last_run_config_parse_errors",
                "Invalid vault-sync.io/* annotations in the last run, by error type.",
                &["namespace", "deployment", "error_type"],
            )?,
            vault_write_errors: gauge_vec(
                "last_run_vault_write_errors",
                "Vault writes and deletes that failed in the last run, by error type \
                 (reads, Kubernetes and configuration failures are not counted here: \
                 see vault_sync_last_run_errors).",
                &["error_type"],
            )?,
            errors: gauge_vec(
                "last_run_errors",
                "Errors the last run reported, by error type: Deployments in error \
                 (annotations, Secrets, failed Vault reads), failed writes and deletes, \
                 listing and index failures, and a failure that stopped the run. \
                 Conflicts and refused deletions are in vault_sync_last_run_paths.",
                &["error_type"],
            )?,
            auth_attempts: gauge_vec(
                "last_run_auth_attempts",
                "Vault logins in the last run, by auth method and result.",
                &["method", "result"],
            )?,
            last_success_timestamp: gauge(
                "last_success_timestamp_seconds",
                "Unix time of the end of the last run of this group that finished without errors \
                 (a failed run carries the previous value over).",
            )?,
            last_run_timestamp: gauge(
                "last_run_timestamp_seconds",
                "Unix time of the end of the last run of this group, successful or not.",
            )?,
            run_duration: gauge(
                "run_duration_seconds",
                "Wall time of the last run, in seconds.",
            )?,
            paths: gauge_vec(
                "last_run_paths",
                "Vault paths in the last run, by action: for run and prune what was done \
                 (a write or delete that failed is action error), for plan what would be done.",
                &["action"],
            )?,
            vault_requests: gauge_vec(
                "last_run_vault_requests",
                "HTTP requests the last run sent to Vault, by method and status class \
                 (2xx, 3xx, 4xx, 5xx, other, error = no answer).",
                &["method", "status_class"],
            )?,
            build_info: gauge_vec(
                "build_info",
                "Always 1; labelled with the version that ran.",
                &["version"],
            )?,
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // The closed label sets start at zero: every push carries every
        // series, so `> 0` alerts resolve and dashboards show 0, not gaps.
        for kind in ErrorKind::ALL {
            m.errors.with_label_values(&[kind.label()]);
        }
        for kind in VAULT_WRITE_ERROR_TYPES {
            m.vault_write_errors.with_label_values(&[kind.label()]);
        }
        for action in Action::NAMES {
            m.paths.with_label_values(&[action]);
        }
        Ok(m)
    }

    /// Prometheus text exposition format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        self.encode_without(None)
    }

    /// The text format, leaving out one family (see `publish_metrics`).
    pub fn encode_without(&self, skip: Option<&str>) -> Result<String, prometheus::Error> {
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| Some(f.name()) != skip)
            .collect();
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf)?;
        let mut text = String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        let workload_families: Vec<&WorkloadGauge> =
            [&self.sync_attempts, &self.secrets_discovered]
                .into_iter()
                .filter(|family| Some(family.name()) != skip)
                .collect();
        // Megabytes at tens of thousands of workloads: sized once, rather
        // than doubled (and copied) as it grows, at the end of the run.
        text.reserve_exact(workload_families.iter().map(|f| f.encoded_len()).sum());
        for family in workload_families {
            family.encode(&mut text);
        }
        Ok(text)
    }

    /// One error the run reports, by `error_type`.
    pub fn count_error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.label()]).inc();
    }

    /// One Vault write or delete that failed, by `error_type`.
    pub fn count_write_error(&self, kind: ErrorKind) {
        debug_assert!(VAULT_WRITE_ERROR_TYPES.contains(&kind), "{kind}");
        self.vault_write_errors
            .with_label_values(&[kind.label()])
            .inc();
    }

    pub fn record_vault_request(&self, method: &str, status: Option<u16>) {
        let class = match status {
            Some(s) => match s / 100 {
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                5 => "5xx",
                _ => "other",
            },
            None => "error",
        };
        self.vault_requests
            .with_label_values(&[closed(method, REQUEST_METHODS), class])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::core::annotations::{self, AnnotationError};
    use crate::core::desired::DesiredError;
    use crate::core::index::IndexError;
    use crate::k8s::KubeError;
    use crate::vault::VaultError;

    #[test]
    fn families_are_registered_and_encoded() {
        let m = Metrics::new().unwrap();
        m.sync_attempts.set(
            &crate::core::ownership::Owner::new("c", "ns", "d"),
            "success",
            1,
        );
        m.record_vault_request("GET", Some(404));
        m.record_vault_request("PUT", None);
        m.count_error(ErrorKind::SecretNotFound);
        m.count_write_error(ErrorKind::PermissionDenied);
        let text = m.encode().unwrap();
        for family in [
            "vault_sync_last_run_sync_attempts{deployment=\"d\",namespace=\"ns\",result=\"success\"} 1",
            "vault_sync_last_run_vault_requests{method=\"GET\",status_class=\"4xx\"} 1",
            "vault_sync_last_run_vault_requests{method=\"PUT\",status_class=\"error\"} 1",
            "vault_sync_last_run_errors{error_type=\"secret_not_found\"} 1",
            "vault_sync_last_run_errors{error_type=\"interrupted\"} 0",
            "vault_sync_last_run_vault_write_errors{error_type=\"permission_denied\"} 1",
            "vault_sync_last_run_paths{action=\"conflict\"} 0",
            "vault_sync_build_info{version=",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
    }

    /// The only counter-typed family is the histogram; every other family
    /// is a gauge, and no gauge is named like a counter.
    #[test]
    fn per_run_families_are_gauges() {
        let m = Metrics::new().unwrap();
        m.sync_duration.observe(0.1);
        for family in m.registry.gather() {
            let name = family.name();
            match family.get_field_type() {
                prometheus::proto::MetricType::GAUGE => {
                    assert!(
                        !name.ends_with("_total"),
                        "gauge {name} named like a counter"
                    );
                }
                prometheus::proto::MetricType::HISTOGRAM => {
                    assert_eq!(name, "vault_sync_sync_duration_seconds");
                }
                other => panic!("{name} is a {other:?}"),
            }
        }
    }

    // --- the closed set of error types ---------------------------------------------

    fn s() -> String {
        String::new()
    }

    /// One value of every `VaultError` variant. The match has no wildcard:
    /// a new variant fails to compile here until it is listed.
    fn every_vault_error() -> Vec<VaultError> {
        let all = vec![
            VaultError::Connection {
                addr: s(),
                message: s(),
            },
            VaultError::AuthFailed {
                method: s(),
                message: s(),
            },
            VaultError::PermissionDenied {
                operation: "write",
                path: s(),
                capability: "update",
                granted: None,
            },
            VaultError::InvalidPath {
                path: s(),
                message: s(),
            },
            VaultError::CasMismatch { path: s() },
            VaultError::Sealed,
            VaultError::RequestTooLarge {
                path: s(),
                message: s(),
            },
            VaultError::Status {
                status: 500,
                operation: "write",
                path: s(),
                message: s(),
            },
            VaultError::Decode {
                path: s(),
                message: s(),
            },
            VaultError::Config(s()),
            VaultError::NotAttempted {
                path: s(),
                reason: s(),
            },
            VaultError::Stale {
                path: s(),
                reason: s(),
            },
        ];
        let seen: BTreeSet<usize> = all
            .iter()
            .map(|e| match e {
                VaultError::Connection { .. } => 0,
                VaultError::AuthFailed { .. } => 1,
                VaultError::PermissionDenied { .. } => 2,
                VaultError::InvalidPath { .. } => 3,
                VaultError::CasMismatch { .. } => 4,
                VaultError::Sealed => 5,
                VaultError::RequestTooLarge { .. } => 6,
                VaultError::Status { .. } => 7,
                VaultError::Decode { .. } => 8,
                VaultError::Config(_) => 9,
                VaultError::NotAttempted { .. } => 10,
                VaultError::Stale { .. } => 11,
            })
            .collect();
        assert_eq!(seen.len(), 12, "every VaultError variant once");
        all
    }

    fn every_kube_error() -> Vec<KubeError> {
        let all = vec![
            KubeError::Config(s()),
            KubeError::Forbidden {
                verb: "list",
                resource: "deployments".into(),
                scope: s(),
                message: s(),
            },
            KubeError::NotFound {
                resource: "deployments",
                scope: s(),
            },
            KubeError::Unreachable(s()),
            KubeError::Api {
                code: 500,
                verb: "list",
                resource: "deployments",
                scope: s(),
                message: s(),
            },
        ];
        let seen: BTreeSet<usize> = all
            .iter()
            .map(|e| match e {
                KubeError::Config(_) => 0,
                KubeError::Forbidden { .. } => 1,
                KubeError::NotFound { .. } => 2,
                KubeError::Unreachable(_) => 3,
                KubeError::Api { .. } => 4,
            })
            .collect();
        assert_eq!(seen.len(), 5, "every KubeError variant once");
        all
    }

    fn every_index_error() -> Vec<IndexError> {
        let all = vec![
            IndexError::Untrusted {
                location: s(),
                cluster: s(),
                why: s(),
            },
            IndexError::UnknownFormat {
                location: s(),
                format: s(),
            },
            IndexError::Malformed {
                location: s(),
                entries: Vec::new(),
            },
            IndexError::Deleted {
                location: s(),
                version: 1,
            },
            IndexError::Lost {
                location: s(),
                marked: 1,
                example: s(),
            },
        ];
        let seen: BTreeSet<usize> = all
            .iter()
            .map(|e| match e {
                IndexError::Untrusted { .. } => 0,
                IndexError::UnknownFormat { .. } => 1,
                IndexError::Malformed { .. } => 2,
                IndexError::Deleted { .. } => 3,
                IndexError::Lost { .. } => 4,
            })
            .collect();
        assert_eq!(seen.len(), 5, "every IndexError variant once");
        all
    }

    fn every_annotation_error() -> Vec<AnnotationError> {
        let path = annotations::parse(&[(annotations::PATH.to_owned(), s())].into())
            .expect_err("an empty path is invalid");
        assert!(matches!(path, AnnotationError::Path(_)), "{path:?}");
        let all = vec![
            path,
            AnnotationError::SecretsJson(s()),
            AnnotationError::SecretsEmpty,
            AnnotationError::EmptySecretName { index: 0 },
            AnnotationError::InvalidSecretName {
                index: 0,
                name: s(),
            },
            AnnotationError::EmptyKeys {
                index: 0,
                name: s(),
            },
            AnnotationError::InvalidKey {
                index: 0,
                name: s(),
                key: s(),
            },
            AnnotationError::InvalidPrefix {
                index: 0,
                name: s(),
                prefix: s(),
            },
            AnnotationError::DuplicateTargetKey {
                key: s(),
                first: s(),
                second: s(),
            },
            AnnotationError::PreserveOnDelete(s()),
            AnnotationError::Reconcile(s()),
        ];
        let seen: BTreeSet<usize> = all
            .iter()
            .map(|e| match e {
                AnnotationError::Path(_) => 0,
                AnnotationError::SecretsJson(_) => 1,
                AnnotationError::SecretsEmpty => 2,
                AnnotationError::EmptySecretName { .. } => 3,
                AnnotationError::InvalidSecretName { .. } => 4,
                AnnotationError::EmptyKeys { .. } => 5,
                AnnotationError::InvalidKey { .. } => 6,
                AnnotationError::InvalidPrefix { .. } => 7,
                AnnotationError::DuplicateTargetKey { .. } => 8,
                AnnotationError::PreserveOnDelete(_) => 9,
                AnnotationError::Reconcile(_) => 10,
            })
            .collect();
        assert_eq!(seen.len(), 11, "every AnnotationError variant once");
        all
    }

    /// `SecretUnreadable` carries a `KubeError` label as its kind.
    fn every_desired_error() -> Vec<DesiredError> {
        let mut all = vec![
            DesiredError::SecretNotFound {
                namespace: s(),
                secret: s(),
            },
            DesiredError::KeyMissing {
                namespace: s(),
                secret: s(),
                key: s(),
                available: s(),
            },
            DesiredError::BinaryValue {
                namespace: s(),
                secret: s(),
                key: s(),
            },
        ];
        all.extend(
            every_kube_error()
                .iter()
                .map(|e| DesiredError::SecretUnreadable {
                    namespace: s(),
                    secret: s(),
                    kind: e.kind(),
                    message: s(),
                }),
        );
        let seen: BTreeSet<usize> = all
            .iter()
            .map(|e| match e {
                DesiredError::SecretNotFound { .. } => 0,
                DesiredError::KeyMissing { .. } => 1,
                DesiredError::BinaryValue { .. } => 2,
                DesiredError::SecretUnreadable { .. } => 3,
            })
            .collect();
        assert_eq!(seen.len(), 4, "every DesiredError variant");
        all
    }

    /// The kinds the engine and commands name directly: every
    /// `ErrorKind::Variant` in the source outside its own definition.
    fn named_kinds() -> BTreeSet<ErrorKind> {
        fn rs_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("read src") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    rs_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        rs_files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        files.retain(|f| {
            !f.ends_with("src/core/error_kind.rs")
                && !f.ends_with("src/metrics.rs")
                && !f.components().any(|c| c.as_os_str() == "tests")
        });
        let text: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("read source"))
            .collect();
        ErrorKind::ALL
            .into_iter()
            .filter(|k| text.contains(&format!("ErrorKind::{k:?}")))
            .collect()
    }

    #[test]
    fn every_error_kind_is_emitted_somewhere() {
        let mut emitted: BTreeSet<ErrorKind> = BTreeSet::new();
        emitted.extend(every_vault_error().iter().map(VaultError::kind));
        emitted.extend(every_kube_error().iter().map(KubeError::kind));
        emitted.extend(every_index_error().iter().map(IndexError::kind));
        emitted.extend(every_annotation_error().iter().map(AnnotationError::kind));
        emitted.extend(every_desired_error().iter().map(DesiredError::kind));
        emitted.extend(named_kinds());
        let dead: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| !emitted.contains(k))
            .collect();
        assert!(
            dead.is_empty(),
            "in ErrorKind::ALL but never emitted: {dead:?}"
        );
    }

    #[test]
    fn vault_write_error_types_are_the_vault_error_kinds() {
        let emitted: BTreeSet<ErrorKind> =
            every_vault_error().iter().map(VaultError::kind).collect();
        let listed: BTreeSet<ErrorKind> = VAULT_WRITE_ERROR_TYPES.into_iter().collect();
        assert_eq!(emitted, listed);
    }

    #[test]
    fn auth_methods_are_the_auth_method_names() {
        use crate::vault::{AuthMethod, JwtSource};
        use zeroize::Zeroizing;
        let jwt = || JwtSource::Value(Zeroizing::new(s()));
        let all = [
            AuthMethod::Token(Zeroizing::new(s())),
            AuthMethod::Kubernetes {
                mount: s(),
                role: s(),
                jwt: jwt(),
            },
            AuthMethod::AppRole {
                mount: s(),
                role_id: Zeroizing::new(s()),
                secret_id: Zeroizing::new(s()),
            },
            AuthMethod::Jwt {
                mount: s(),
                role: None,
                jwt: jwt(),
            },
        ];
        let names: BTreeSet<&str> = all
            .iter()
            .map(|m| match m {
                AuthMethod::Token(_)
                | AuthMethod::Kubernetes { .. }
                | AuthMethod::AppRole { .. }
                | AuthMethod::Jwt { .. } => m.name(),
            })
            .collect();
        assert_eq!(names, AUTH_METHODS.iter().copied().collect());
    }

    #[test]
    fn out_of_set_labels_become_unknown_in_release() {
        // In debug builds this is a failed assertion (a bug to fix); the
        // release binary never emits a label outside the set.
        if cfg!(debug_assertions) {
            assert!(std::panic::catch_unwind(|| closed("nope", REQUEST_METHODS)).is_err());
        }
        assert_eq!(closed("GET", REQUEST_METHODS), "GET");
    }
}
