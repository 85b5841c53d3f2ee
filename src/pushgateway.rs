//! Pushgateway adapter: one async `PUT /metrics/job/<job>/<label>/<value>...`,
//! and the read of one gauge a group holds (`GET /api/v1/metrics`).
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

fn group_url(base_url: &str, job: &str, labels: &[(String, String)]) -> String {
    format!(
        "{}{}",
        base_url.trim_end_matches('/'),
        group_path(job, labels)
    )
}

/// `req` with the Pushgateway's credentials, if any are set
/// (`PUSHGATEWAY_BEARER_TOKEN`, or `PUSHGATEWAY_USERNAME`/`PUSHGATEWAY_PASSWORD`).
fn authorised(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if let Ok(token) = std::env::var("PUSHGATEWAY_BEARER_TOKEN") {
        req.bearer_auth(token)
    } else if let Ok(user) = std::env::var("PUSHGATEWAY_USERNAME") {
        req.basic_auth(user, std::env::var("PUSHGATEWAY_PASSWORD").ok())
    } else {
        req
    }
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
    let url = group_url(base_url, job, labels);
    let err = |message: String| PushError(format!("pushing metrics to {url} failed: {message}"));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let method = match mode {
        Mode::Replace => reqwest::Method::PUT,
        Mode::Merge => reqwest::Method::POST,
    };
    let req = client
        .request(method, &url)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(body);
    let resp = authorised(req)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(err(format!("status {}", resp.status())))
    }
}

/// The value of the unlabelled gauge `family` in the group whose grouping
/// key is exactly `job` + `labels`, as the Pushgateway holds it now
/// (`GET /api/v1/metrics`); `None` when the group or the family is absent.
pub async fn read_gauge(
    base_url: &str,
    job: &str,
    labels: &[(String, String)],
    family: &str,
    timeout: Duration,
) -> Result<Option<f64>, PushError> {
    let url = format!("{}/api/v1/metrics", base_url.trim_end_matches('/'));
    let err = |message: String| PushError(format!("reading {url} failed: {message}"));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let resp = authorised(client.get(&url))
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("status {}", resp.status())));
    }
    let api: serde_json::Value = resp.json().await.map_err(|e| err(e.to_string()))?;
    gauge_in_groups(&api, job, labels, family).map_err(err)
}

/// [`read_gauge`] on the API's answer.
fn gauge_in_groups(
    api: &serde_json::Value,
    job: &str,
    labels: &[(String, String)],
    family: &str,
) -> Result<Option<f64>, String> {
    let groups = api["data"]
        .as_array()
        .ok_or_else(|| "the answer has no data array".to_owned())?;
    let mut want: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    want.insert("job".into(), job.into());
    let Some(group) = groups
        .iter()
        .find(|g| g["labels"].as_object() == Some(&want))
    else {
        return Ok(None);
    };
    let Some(value) = group[family]["metrics"]
        .as_array()
        .and_then(|m| m.first())
        .map(|m| &m["value"])
    else {
        return Ok(None);
    };
    value
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .map(Some)
        .ok_or_else(|| format!("{family} is not a number: {value}"))
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

    #[test]
    fn a_gauge_is_read_from_its_own_group_only() {
        let api = serde_json::json!({"status": "success", "data": [
            {"labels": {"job": "vault-sync", "cluster": "a", "command": "run", "test": "x"},
             "g": {"metrics": [{"labels": {}, "value": "3"}]}},
            {"labels": {"job": "vault-sync", "cluster": "a", "command": "run"},
             "g": {"metrics": [{"labels": {}, "value": "1.7644890001234567e+09"}]}},
            {"labels": {"job": "vault-sync", "cluster": "a", "command": "plan"},
             "g": {"metrics": [{"labels": {}, "value": "2"}]}},
        ]});
        let key = |command: &str| {
            vec![
                ("cluster".to_owned(), "a".to_owned()),
                ("command".to_owned(), command.to_owned()),
            ]
        };
        assert_eq!(
            gauge_in_groups(&api, "vault-sync", &key("run"), "g"),
            Ok(Some(1_764_489_000.123_456_7))
        );
        assert_eq!(
            gauge_in_groups(&api, "vault-sync", &key("plan"), "g"),
            Ok(Some(2.0))
        );
        assert_eq!(
            gauge_in_groups(&api, "vault-sync", &key("prune"), "g"),
            Ok(None)
        );
        assert_eq!(
            gauge_in_groups(&api, "vault-sync", &key("run"), "h"),
            Ok(None)
        );
        assert!(gauge_in_groups(&serde_json::json!({}), "vault-sync", &key("run"), "g").is_err());
    }
}
