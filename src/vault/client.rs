//! The HTTP side of Vault: one client, retries, token handling.
//!
//! vaultrs builds the HTTP client (so `VAULT_CACERT`, client certificates and
//! `VAULT_SKIP_VERIFY` are honoured the way its users expect) and performs the
//! logins. KV reads and writes go through the same `reqwest::Client` directly,
//! because vaultrs' KV helpers split content and metadata into two requests
//! and hide status codes, which vault-sync needs for typed errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::RwLock;
use vaultrs::client::{VaultClient, VaultClientSettings};
use zeroize::Zeroizing;

use super::auth::AuthMethod;
use super::error::{ServerSays, VaultError, error_messages, server_says};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How to reach Vault. Built by the CLI from flags and `VAULT_*`/`BAO_*`.
#[derive(Clone)]
pub struct VaultConfig {
    pub addr: String,
    pub namespace: Option<String>,
    /// PEM bundle(s) to trust (VAULT_CACERT, or every file of VAULT_CAPATH).
    pub ca_certs: Vec<String>,
    pub client_cert: Option<(String, String)>,
    pub skip_verify: bool,
    /// Bound on one request, and on all retries of one operation together.
    pub timeout: Duration,
    pub auth: AuthMethod,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("addr", &self.addr)
            .field("namespace", &self.namespace)
            .field("auth", &self.auth.name())
            .finish_non_exhaustive()
    }
}

/// A response: status and parsed JSON body (`Null` when empty).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

/// A logged-in Vault client.
pub struct Vault {
    login_client: VaultClient,
    http: reqwest::Client,
    addr: String,
    namespace: Option<String>,
    token: RwLock<Zeroizing<String>>,
    auth: AuthMethod,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// Set once Vault proved unreachable (retries exhausted): every later
    /// request of this run fails at once with the same error, so a run with
    /// thousands of paths ends within about one `--vault-timeout` instead of
    /// waiting it out path by path.
    gave_up: std::sync::OnceLock<VaultError>,
    /// A given token (`VAULT_TOKEN`): whether it passed a self-lookup.
    given_token_valid: tokio::sync::OnceCell<bool>,
    /// Once a stop is requested, no new request is started.
    shutdown: Shutdown,
}

impl Vault {
    /// Builds the client and logs in.
    pub async fn connect(config: VaultConfig, metrics: Arc<Metrics>) -> Result<Self, VaultError> {
        let vault = Self::new(config, metrics)?;
        vault.login().await?;
        Ok(vault)
    }

    /// Builds the client without logging in (`check` reports each step).
    pub fn new(config: VaultConfig, metrics: Arc<Metrics>) -> Result<Self, VaultError> {
        let addr = config.addr.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&addr)
            .map_err(|e| VaultError::Config(format!("invalid Vault address {addr:?}: {e}")))?;
        if config.skip_verify {
            tracing::warn!(
                "TLS certificate verification for Vault is DISABLED (VAULT_SKIP_VERIFY); anyone on the network path can read the secrets vault-sync sends"
            );
        }
        let identity = match &config.client_cert {
            None => None,
            Some((cert, key)) => {
                let mut pem = std::fs::read(cert).map_err(|e| {
                    VaultError::Config(format!("cannot read client certificate {cert}: {e}"))
                })?;
                pem.extend(std::fs::read(key).map_err(|e| {
                    VaultError::Config(format!("cannot read client key {key}: {e}"))
                })?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    VaultError::Config(format!("invalid client certificate/key {cert}, {key}: {e}"))
                })?)
            }
        };
        for ca in &config.ca_certs {
            if !std::path::Path::new(ca).is_file() {
                return Err(VaultError::Config(format!(
                    "CA certificate file {ca} does not exist (VAULT_CACERT/VAULT_CAPATH)"
                )));
            }
        }
        let settings = VaultClientSettings {
            address: url,
            ca_certs: config.ca_certs.clone(),
            identity,
            timeout: Some(config.timeout),
            token: String::new(),
            verify: !config.skip_verify,
            version: 1,
            wrapping: false,
            namespace: config.namespace.clone(),
            proxy: None,
        };
        let login_client = VaultClient::new(settings)
            .map_err(|e| VaultError::Config(format!("cannot build the Vault HTTP client: {e}")))?;
        let http = login_client.http.http.clone();
        Ok(Self {
            login_client,
            http,
            addr,
            namespace: config.namespace,
            token: RwLock::new(Zeroizing::new(String::new())),
            auth: config.auth,
            timeout: config.timeout,
            metrics,
            gave_up: std::sync::OnceLock::new(),
            given_token_valid: tokio::sync::OnceCell::new(),
            shutdown: Shutdown::default(),
        })
    }

    /// Stops starting requests once `shutdown` is requested.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn auth_method(&self) -> &AuthMethod {
        &self.auth
    }

    /// Logs in (again) with the configured method and stores the token.
    pub async fn login(&self) -> Result<(), VaultError> {
        let method = self.auth.name();
        let result = self
            .with_retry(|| self.auth.login(&self.login_client, &self.addr))
            .await;
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .auth_attempts
            .with_label_values(&[method, outcome])
            .inc();
        *self.token.write().await = result?;
        Ok(())
    }

    /// The failure that ends the run for every request: the token is not
    /// valid and cannot be renewed by a login.
    pub fn fatal(&self) -> Option<VaultError> {
        self.gave_up
            .get()
            .filter(|e| matches!(e, VaultError::AuthFailed { .. }))
            .cloned()
    }

    /// Retries `op` with jittered exponential backoff while it fails with a
    /// retryable error, within the configured total time.
    async fn with_retry<T, F, Fut>(&self, mut op: F) -> Result<T, VaultError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some(e) = self.gave_up.get() {
                return Err(e.clone());
            }
            match op().await {
                Ok(v) => return Ok(v),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    let jitter = Duration::from_millis(u64::from(rand_jitter_ms()));
                    if started.elapsed() + delay + jitter >= self.timeout {
                        if matches!(e, VaultError::Connection { .. } | VaultError::Sealed) {
                            let _ = self.gave_up.set(e.clone());
                        }
                        return Err(e);
                    }
                    tracing::debug!(error = %e, delay_ms = delay.as_millis() as u64, "retrying Vault request");
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Sends one API request (`path` without `/v1/`), retrying transient
    /// failures, and logging in again once if the token has expired.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Payload<'_>>,
        content_type: &str,
    ) -> Result<Reply, VaultError> {
        if let Some(reason) = self.shutdown.reason() {
            return Err(VaultError::NotAttempted {
                path: path.to_owned(),
                reason,
            });
        }
        let reply = self
            .with_retry(|| self.send_once(method.clone(), path, body.clone(), content_type))
            .await?;
        if reply.status != StatusCode::FORBIDDEN {
            return Ok(reply);
        }
        if self.auth.can_relogin() {
            if !self.token_is_valid().await {
                tracing::info!("Vault token expired or was revoked; logging in again");
                self.login().await?;
                return self
                    .with_retry(|| self.send_once(method.clone(), path, body.clone(), content_type))
                    .await;
            }
        } else if !*self
            .given_token_valid
            .get_or_init(|| self.given_token_checked())
            .await
        {
            // A 403 from a token that cannot even look itself up is not a
            // missing policy on this path: say so once, and stop every
            // request after this one.
            let e = VaultError::AuthFailed {
                method: self.auth.name().to_owned(),
                message: "the Vault token is invalid, expired or revoked (a lookup of the token itself was denied); set VAULT_TOKEN to a valid token".into(),
            };
            let _ = self.gave_up.set(e.clone());
            return Err(e);
        }
        Ok(reply)
    }

    /// Whether the given token works, asked once per run, on its first
    /// 403 (`auth/token/lookup-self` is in Vault's default policy).
    async fn given_token_checked(&self) -> bool {
        let valid = self.token_is_valid().await;
        if !valid {
            // A given token counts as a successful login at start, since
            // nothing is sent then; now it proved not to be one.
            let method = self.auth.name();
            let attempts = &self.metrics.auth_attempts;
            let _ = attempts.remove_label_values(&[method, "success"]);
            attempts.with_label_values(&[method, "failure"]).inc();
        }
        valid
    }

    async fn token_is_valid(&self) -> bool {
        matches!(
            self.with_retry(|| self.send_once(Method::GET, "auth/token/lookup-self", None, "application/json"))
                .await,
            Ok(Reply { status, .. }) if status.is_success()
        )
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Payload<'_>>,
        content_type: &str,
    ) -> Result<Reply, Attempt> {
        let url = format!("{}/v1/{}", self.addr, encode_api_path(path));
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(self.timeout)
            .header("X-Vault-Request", "true");
        {
            let token = self.token.read().await;
            if !token.is_empty() {
                req = req.header("X-Vault-Token", token.as_str());
            }
        }
        // sys/health is served by the root namespace only; OpenBao answers
        // 400 "operation unavailable in namespaces" when one is sent.
        if let Some(ns) = &self.namespace
            && !path.starts_with("sys/health")
        {
            req = req.header("X-Vault-Namespace", ns);
        }
        let mut feed = None;
        match body {
            // Shared, not copied: a copy per attempt of a large body was
            // the peak of a large first run.
            Some(Payload::Bytes(body)) => {
                req = req
                    .header("Content-Type", content_type)
                    .body(body.0.clone());
            }
            Some(Payload::Pieces { make, len }) => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    let piece = rx.recv().await?;
                    Some((Ok::<_, std::convert::Infallible>(piece), rx))
                });
                req = req
                    .header("Content-Type", content_type)
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(stream));
                feed = Some((tx, make()));
            }
            None => {}
        }
        let sent = match feed {
            None => req.send().await,
            // Each piece is made when the connection takes the one before:
            // one piece is held at a time, never the whole body. The feed
            // stops when the request fails (the body is dropped).
            Some((tx, pieces)) => {
                let feed = async move {
                    for piece in pieces {
                        if tx.send(piece).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(req.send(), feed).0
            }
        };
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.metrics.record_vault_request(method.as_str(), None);
                // reqwest's message names the URL: fine, paths are not secret.
                let error = VaultError::Connection {
                    addr: self.addr.clone(),
                    message: crate::error_chain(&e),
                };
                // A certificate that does not verify will not verify on the
                // next attempt either.
                return Err(if is_tls_failure(&e) {
                    Attempt::Final(error)
                } else {
                    Attempt::Retry(error)
                });
            }
        };
        let status = response.status();
        self.metrics
            .record_vault_request(method.as_str(), Some(status.as_u16()));
        let bytes = read_body(response).await.map_err(|e| {
            Attempt::Retry(VaultError::Connection {
                addr: self.addr.clone(),
                message: crate::error_chain(&e),
            })
        })?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        match status.as_u16() {
            503 => {
                let sealed = server_says(&body) == ServerSays::Sealed;
                Err(Attempt::Retry(if sealed {
                    VaultError::Sealed
                } else {
                    VaultError::Status {
                        status: 503,
                        operation: method_name(&method),
                        path: path.to_owned(),
                        message: error_messages(&body),
                    }
                }))
            }
            code if retryable_status(code) => Err(Attempt::Retry(VaultError::Status {
                status: status.as_u16(),
                operation: method_name(&method),
                path: path.to_owned(),
                message: error_messages(&body),
            })),
            _ => Ok(Reply { status, body }),
        }
    }
}

/// A reply's body, read piece by piece into one buffer of its announced
/// length. (`Response::bytes` keeps every piece until the last arrives and
/// then copies them into one: an index read of megabytes held its text
/// three times at once, counting the connection's read buffer, which grows
/// while pieces of it are held.) Zeroed when dropped: a read of a secret
/// holds its values.
async fn read_body(mut response: reqwest::Response) -> reqwest::Result<Zeroizing<Vec<u8>>> {
    // The announced length is the server's word: trusted only as far as a
    // bounded first reservation.
    const MAX_RESERVE: u64 = 64 << 20;
    let announced = response.content_length().unwrap_or(0).min(MAX_RESERVE);
    let mut body = Zeroizing::new(Vec::with_capacity(announced as usize));
    while let Some(piece) = response.chunk().await? {
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// Statuses worth another attempt, for every request, logins included:
/// rate limited, or a server error that a standby or a restart clears.
pub(super) fn retryable_status(code: u16) -> bool {
    matches!(code, 429 | 500 | 502 | 503 | 504)
}

/// One attempt's failure: worth retrying or not.
pub(crate) enum Attempt {
    Retry(VaultError),
    Final(VaultError),
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "read",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        _ if m.as_str() == "LIST" => "list",
        _ => "write",
    }
}

/// What a request sends.
#[derive(Clone)]
pub(crate) enum Payload<'a> {
    /// Serialized once, sent as is by every attempt.
    Bytes(&'a RequestBody),
    /// Made piece by piece while it is sent, anew for each attempt: for a
    /// body of megabytes that is cheap to make again (the index), so that
    /// it is never held whole. `len` is the total, sent as Content-Length
    /// (not chunked: proxies in front of Vault may refuse chunked bodies).
    /// Never for secret values: the pieces are not zeroed.
    Pieces { make: Arc<MakePieces<'a>>, len: u64 },
}

/// Makes the pieces of a [`Payload::Pieces`] body, once per attempt.
pub(crate) type MakePieces<'a> =
    dyn Fn() -> Box<dyn Iterator<Item = Vec<u8>> + Send + 'a> + Send + Sync + 'a;

/// A request body: serialized once, shared by every attempt to send it,
/// and zeroed when dropped (it may hold secret values) if the HTTP client
/// no longer holds it, which it does not once the request is answered.
pub(crate) struct RequestBody(bytes::Bytes);

impl RequestBody {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes::Bytes::from(bytes))
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Ok(mut bytes) = std::mem::take(&mut self.0).try_into_mut() {
            zeroize::Zeroize::zeroize(bytes.as_mut());
        }
    }
}

/// Percent-encodes an API path (the part before vault-sync's own `?query`),
/// so that a secret's path reaches Vault as exactly the path shown in the
/// plan, whatever characters it holds.
fn encode_api_path(path: &str) -> String {
    let (p, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Whether a transport error is a TLS failure (bad certificate, unknown
/// issuer, handshake refused), found by type in the error chain.
/// Whether a transport error is TLS (a certificate that does not verify,
/// a handshake refused): final, since the next attempt fails the same way.
/// One answer for every request, logins included.
pub(super) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error hides its payload from source(); look inside.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// 0–99 ms of jitter without a dependency on a random-number crate: the
/// sub-second clock is random enough to spread retries of concurrent tasks.
fn rand_jitter_ms() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{RequestBody, encode_api_path};

    /// What makes the zeroing on drop happen: once the HTTP client's
    /// handle on an attempt's body is gone, the body is ours alone again.
    #[test]
    fn a_request_body_is_unique_again_once_an_attempt_drops_it() {
        // With spare capacity, as serde_json leaves a body it serialized.
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(b"{\"data\":{}}");
        let body = RequestBody::new(bytes);
        let attempt = body.0.clone();
        assert!(!body.0.is_unique());
        drop(attempt);
        assert!(body.0.is_unique());
    }

    #[test]
    fn api_paths_are_percent_encoded_but_queries_kept() {
        assert_eq!(encode_api_path("secret/data/app"), "secret/data/app");
        assert_eq!(encode_api_path("secret/data/café"), "secret/data/caf%C3%A9");
        assert_eq!(encode_api_path("secret/data/a%2Fb"), "secret/data/a%252Fb");
        assert_eq!(
            encode_api_path("secret/metadata/x?list=true"),
            "secret/metadata/x?list=true"
        );
    }
}
