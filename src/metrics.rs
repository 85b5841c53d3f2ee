//! The metrics a run reports, in one registry.
//!
//! Family names are the original operator's, prefixed `vault_sync_`, plus
//! what Prometheus' guidance asks of batch jobs. No label ever carries a
//! Vault path (unbounded cardinality) or a value.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub sync_attempts: IntCounterVec,
    pub sync_duration: Histogram,
    pub secrets_discovered: IntGaugeVec,
    pub secret_not_found_errors: IntCounterVec,
    pub secret_key_missing_errors: IntCounterVec,
    pub config_parse_errors: IntCounterVec,
    pub vault_write_errors: IntCounterVec,
    pub auth_attempts: IntCounterVec,
    pub last_success_timestamp: Gauge,
    pub last_run_timestamp: Gauge,
    pub run_duration: Gauge,
    pub paths: IntGaugeVec,
    pub vault_requests: IntCounterVec,
    pub build_info: IntGaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("vault_sync_{name}"), help)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(opts(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
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
            "Time to write one path to Vault (content and metadata).",
        ))?;
        registry.register(Box::new(sync_duration.clone()))?;

        let m = Self {
            sync_attempts: counter(
                "sync_attempts_total",
                "Deployments synced, by result (success, error, conflict).",
                &["namespace", "deployment", "result"],
            )?,
            sync_duration,
            secrets_discovered: gauge_vec(
                "secrets_discovered",
                "Secrets a Deployment references (auto-discovery) or lists (custom mode).",
                &["namespace", "deployment"],
            )?,
            secret_not_found_errors: counter(
                "secret_not_found_errors_total",
                "Referenced Secrets that do not exist.",
                &["namespace", "secret"],
            )?,
            secret_key_missing_errors: counter(
                "secret_key_missing_errors_total",
                "Keys listed in vault-sync.io/secrets that a Secret lacks.",
                &["namespace", "secret"],
            )?,
            config_parse_errors: counter(
                "config_parse_errors_total",
                "Invalid vault-sync.io/* annotations.",
                &["namespace", "deployment", "error_type"],
            )?,
            vault_write_errors: counter(
                "vault_write_errors_total",
                "Failed Vault writes and reads, by error type.",
                &["error_type"],
            )?,
            auth_attempts: counter(
                "auth_attempts_total",
                "Vault logins, by auth method and result.",
                &["method", "result"],
            )?,
            last_success_timestamp: gauge(
                "last_success_timestamp_seconds",
                "Unix time of the last run that finished without errors.",
            )?,
            last_run_timestamp: gauge(
                "last_run_timestamp_seconds",
                "Unix time of the last run, successful or not.",
            )?,
            run_duration: gauge("run_duration_seconds", "Wall time of the last run.")?,
            paths: gauge_vec(
                "paths",
                "Vault paths in the last run's plan, by action.",
                &["action"],
            )?,
            vault_requests: counter(
                "vault_requests_total",
                "HTTP requests sent to Vault, by method and status class (2xx, 4xx, 5xx, error).",
                &["method", "status_class"],
            )?,
            build_info: gauge_vec(
                "build_info",
                "Always 1; labelled with the version.",
                &["version"],
            )?,
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Known error types start at zero, so a rate() over them works from
        // the first push and a dashboard shows 0 rather than "no data".
        for error_type in [
            "permission_denied",
            "invalid_path",
            "connection_failed",
            "auth_failed",
            "cas_mismatch",
            "unknown",
        ] {
            m.vault_write_errors.with_label_values(&[error_type]);
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
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Counts one failed Vault operation by its `error_type`.
    pub fn count_vault_error(&self, error_type: &str) {
        self.vault_write_errors
            .with_label_values(&[error_type])
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
            .with_label_values(&[method, class])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_registered_and_encoded() {
        let m = Metrics::new().unwrap();
        m.sync_attempts
            .with_label_values(&["ns", "d", "success"])
            .inc();
        m.record_vault_request("GET", Some(404));
        m.record_vault_request("PUT", None);
        let text = m.encode().unwrap();
        for family in [
            "vault_sync_sync_attempts_total{deployment=\"d\",namespace=\"ns\",result=\"success\"} 1",
            "vault_sync_vault_requests_total{method=\"GET\",status_class=\"4xx\"} 1",
            "vault_sync_vault_requests_total{method=\"PUT\",status_class=\"error\"} 1",
            "vault_sync_build_info{version=",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
    }
}
