//! Pushgateway adapter: one async `PUT /metrics/job/<job>/<label>/<value>...`.
//!
//! Not prometheus' own `push` feature: it brings blocking reqwest 0.12 and
//! OpenSSL, and would block the runtime.

// An adapter: it owns its HTTP client. (clippy.toml)
#![allow(clippy::disallowed_types)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PushError(pub String);

/// `/metrics/job/<job>/<name>/<value>...`, each value base64url-encoded
/// (`<name>@base64`) when it contains `/` or is empty, as the Pushgateway
/// requires.
pub fn group_path(job: &str, labels: &[(String, String)]) -> String {
    let mut path = String::from("/metrics");
    for (name, value) in std::iter::once(&("job".to_owned(), job.to_owned())).chain(labels) {
        if value.is_empty() || value.contains('/') {
            let encoded = if value.is_empty() {
                "=".to_owned()
            } else {
                URL_SAFE_NO_PAD.encode(value)
            };
            path.push_str(&format!("/{name}@base64/{encoded}"));
        } else {
            path.push_str(&format!("/{name}/{}", urlencode(value)));
        }
    }
    path
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How a push treats what the group already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `PUT`: the group becomes exactly `body` (stale series disappear).
    Replace,
    /// `POST`: only the families in `body` are replaced; others are kept.
    Merge,
}

/// Pushes `body` (Prometheus text format) to the group.
pub async fn push(
    base_url: &str,
    job: &str,
    labels: &[(String, String)],
    body: String,
    timeout: Duration,
    mode: Mode,
) -> Result<(), PushError> {
    let url = format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        group_path(job, labels)
    );
    let err = |message: String| PushError(format!("pushing metrics to {url} failed: {message}"));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let method = match mode {
        Mode::Replace => reqwest::Method::PUT,
        Mode::Merge => reqwest::Method::POST,
    };
    let mut req = client
        .request(method, &url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(body);
    if let Ok(token) = std::env::var("PUSHGATEWAY_BEARER_TOKEN") {
        req = req.bearer_auth(token);
    } else if let Ok(user) = std::env::var("PUSHGATEWAY_USERNAME") {
        req = req.basic_auth(user, std::env::var("PUSHGATEWAY_PASSWORD").ok());
    }
    let resp = req.send().await.map_err(|e| err(e.to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(err(format!("status {}", resp.status())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_paths_encode_awkward_values() {
        assert_eq!(
            group_path("vault-sync", &[("cluster".into(), "prod".into())]),
            "/metrics/job/vault-sync/cluster/prod"
        );
        assert_eq!(
            group_path("vault-sync", &[("cluster".into(), "a/b".into())]),
            "/metrics/job/vault-sync/cluster@base64/YS9i"
        );
        assert_eq!(
            group_path("j", &[("x".into(), String::new())]),
            "/metrics/job/j/x@base64/="
        );
    }
}
