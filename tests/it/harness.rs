//! Shared helpers for the end-to-end suite: the running stack's settings,
//! clients for Kubernetes and Vault, one namespace per test, fixtures, the
//! CLI runner, the audit-log reader and the leak guard.
//!
//! Isolation: every test gets its own Kubernetes namespace `it-<name>-<rand>`
//! and its own Vault prefix `<mount>/it/<namespace>/`, and every CLI call is
//! restricted with `-n <namespace>`, so tests run in parallel safely.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use reqwest::Method;
use serde_json::{Value, json};

// Which env file describes the servers, and how to start them, is the test
// crate's choice: tests/it reads tests/stack/.env, tests/cluster its own.
use crate::{ENV_FILE, NOT_RUNNING};

/// How long one CLI invocation may take before the test fails.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Stack settings
// ---------------------------------------------------------------------------

/// The variables of the env file (`tests/stack/.env` for tests/it).
pub struct StackEnv {
    vars: BTreeMap<String, String>,
}

impl StackEnv {
    /// A variable the stack must define.
    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{ENV_FILE} has no {key}; {NOT_RUNNING}"))
    }

    pub fn vault_addr(&self) -> &str {
        self.get("VAULT_ADDR").trim_end_matches('/')
    }

    pub fn vault_token(&self) -> &str {
        self.get("VAULT_TOKEN")
    }

    pub fn kubeconfig(&self) -> &str {
        self.get("KUBECONFIG")
    }

    pub fn pushgateway_url(&self) -> &str {
        self.get("PUSHGATEWAY_URL").trim_end_matches('/')
    }

    pub fn audit_log(&self) -> &str {
        self.get("VAULT_AUDIT_LOG")
    }
}

pub static STACK: LazyLock<StackEnv> = LazyLock::new(load_stack_env);

/// Parses `export K=V` lines (values optionally quoted).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

fn load_stack_env() -> StackEnv {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(ENV_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{NOT_RUNNING} ({}: {e})", path.display()));
    let env = StackEnv {
        vars: parse_env_file(&text),
    };
    // The file outlives the stack: check the servers really answer.
    for key in ["VAULT_ADDR", "KUBE_API_URL", "PUSHGATEWAY_URL"] {
        let url = env.get(key);
        let hostport = url
            .split("://")
            .nth(1)
            .unwrap_or(url)
            .split('/')
            .next()
            .unwrap_or_default();
        let reachable = hostport
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok());
        assert!(reachable, "{NOT_RUNNING} ({key}={url} does not answer)");
    }
    env
}

/// Installs ring as the process-wide rustls provider, once.
pub fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `n` lowercase hex characters, different on every call.
pub fn random_hex(n: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A Kubernetes client (admin) from the stack's kubeconfig.
pub async fn kube_client() -> kube::Client {
    init_crypto();
    let kubeconfig = Kubeconfig::read_from(STACK.kubeconfig())
        .unwrap_or_else(|e| panic!("reading {}: {e}", STACK.kubeconfig()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config from the stack kubeconfig");
    kube::Client::try_from(config).expect("kube client")
}

/// A `vaultrs` client with the root token.
pub fn vaultrs_client(token: &str) -> vaultrs::client::VaultClient {
    init_crypto();
    let settings = vaultrs::client::VaultClientSettingsBuilder::default()
        .address(STACK.vault_addr())
        .token(token)
        .build()
        .expect("vaultrs settings");
    vaultrs::client::VaultClient::new(settings).expect("vaultrs client")
}

/// Raw Vault HTTP API with a token (root by default).
#[derive(Clone)]
pub struct VaultHttp {
    http: reqwest::Client,
    addr: String,
    token: String,
}

/// A KV v2 secret as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv2Secret {
    pub data: BTreeMap<String, String>,
    pub version: u64,
    pub custom_metadata: BTreeMap<String, String>,
}

impl VaultHttp {
    pub fn root() -> Self {
        Self::with_token(STACK.vault_token())
    }

    pub fn with_token(token: &str) -> Self {
        init_crypto();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            addr: STACK.vault_addr().to_owned(),
            token: token.to_owned(),
        }
    }

    /// One request to `/v1/<path>`; returns status and JSON body (Null if none).
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        status_and_body(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    /// A `POST` that must succeed (2xx); returns the body. `what` names the
    /// request in the failure message.
    pub async fn must_post(&self, path: &str, body: &Value, what: &str) -> Value {
        let (status, reply) = self.post(path, body).await;
        assert!((200..300).contains(&status), "{what}: {status} {reply}");
        reply
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.request(Method::DELETE, path, None).await.0
    }

    /// `LIST <path>`: the keys (sub-folders end with '/'); empty if none.
    pub async fn list(&self, path: &str) -> Vec<String> {
        let method = Method::from_bytes(b"LIST").expect("LIST method");
        let (status, body) = self.request(method, path, None).await;
        if status != 200 {
            return Vec::new();
        }
        body["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads `<mount>/data/<rel>`; `None` if absent (or soft-deleted).
    pub async fn kv2_read(&self, mount: &str, rel: &str) -> Option<Kv2Secret> {
        let (status, body) = self.get(&format!("{mount}/data/{rel}")).await;
        match status {
            200 => Some(Kv2Secret {
                data: string_map(&body["data"]["data"]),
                version: body["data"]["metadata"]["version"]
                    .as_u64()
                    .expect("KV v2 read has a version"),
                custom_metadata: string_map(&body["data"]["metadata"]["custom_metadata"]),
            }),
            404 => None,
            s => panic!("read {mount}/data/{rel}: {s} {body}"),
        }
    }

    /// Reads `<mount>/metadata/<rel>` (the `data` object); `None` if absent.
    pub async fn kv2_metadata(&self, mount: &str, rel: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("{mount}/metadata/{rel}")).await;
        match status {
            200 => Some(body["data"].clone()),
            404 => None,
            s => panic!("read {mount}/metadata/{rel}: {s} {body}"),
        }
    }

    /// Writes a new version (no CAS); returns the new version.
    pub async fn kv2_write(&self, mount: &str, rel: &str, data: &[(&str, &str)]) -> u64 {
        let map: BTreeMap<&str, &str> = data.iter().copied().collect();
        let (status, body) = self
            .post(&format!("{mount}/data/{rel}"), &json!({ "data": map }))
            .await;
        assert_eq!(status, 200, "write {mount}/data/{rel}: {body}");
        body["data"]["version"].as_u64().expect("version")
    }

    /// Replaces the custom_metadata map.
    pub async fn kv2_set_custom_metadata(&self, mount: &str, rel: &str, md: &[(&str, &str)]) {
        let map: BTreeMap<&str, &str> = md.iter().copied().collect();
        self.must_post(
            &format!("{mount}/metadata/{rel}"),
            &json!({ "custom_metadata": map }),
            &format!("metadata {mount}/metadata/{rel}"),
        )
        .await;
    }

    /// Reads a KV v1 secret; `None` if absent.
    pub async fn kv1_read(&self, mount: &str, rel: &str) -> Option<BTreeMap<String, String>> {
        let (status, body) = self.get(&format!("{mount}/{rel}")).await;
        match status {
            200 => Some(string_map(&body["data"])),
            404 => None,
            s => panic!("read {mount}/{rel}: {s} {body}"),
        }
    }

    /// Every leaf under `<list_root>/<folder>` (relative to `folder`).
    pub async fn list_recursive(&self, list_root: &str, folder: &str) -> Vec<String> {
        leaves_under(folder, |dir| {
            let path = format!("{list_root}/{dir}");
            async move { self.list(&path).await }
        })
        .await
    }

    /// Writes the ACL policy `name` (HCL text); fails unless Vault accepts it.
    pub async fn write_policy(&self, name: &str, hcl: &str) {
        self.must_post(
            &format!("sys/policies/acl/{name}"),
            &json!({ "policy": hcl }),
            &format!("policy {name}"),
        )
        .await;
    }

    /// `auth/token/create` with `request` (policies, ttl, display_name, …);
    /// fails unless 200. Returns the new token and Vault's whole answer.
    pub async fn create_token(&self, request: &Value) -> (String, Value) {
        let (status, body) = self.post("auth/token/create", request).await;
        assert_eq!(status, 200, "create token {request}: {body}");
        let token = body["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned();
        (token, body)
    }
}

/// The policy vault-sync ships, `examples/vault-policy.hcl`, as HCL text.
pub fn example_policy() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vault-policy.hcl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every leaf under `folder`, sorted, walking it with `list` (which gives a
/// folder's keys, sub-folders ending with '/').
pub async fn leaves_under<F, Fut>(folder: &str, mut list: F) -> Vec<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut out = Vec::new();
    let mut todo = vec![folder.trim_end_matches('/').to_owned()];
    while let Some(dir) = todo.pop() {
        for key in list(dir.clone()).await {
            let child = format!("{dir}/{}", key.trim_end_matches('/'));
            if key.ends_with('/') {
                todo.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    out
}

/// A Vault answer's status and JSON body (Null if none, a string if not JSON).
pub async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// The index secret `<mount>/vault-sync/index/<cluster>` as text ("" if none).
pub async fn index_text(vault: &VaultHttp, mount: &str, cluster: &str) -> String {
    vault
        .kv2_read(mount, &format!("vault-sync/index/{cluster}"))
        .await
        .map(|s| s.data.iter().map(|(k, v)| format!("{k}={v}\n")).collect())
        .unwrap_or_default()
}

/// The entries of a stored index (`format` plus `entries-NNNN` chunks of
/// JSON lines, each carrying its display path): (display path, line), in
/// stored order, duplicates kept.
pub fn index_lines(data: &BTreeMap<String, String>) -> Vec<(String, String)> {
    data.iter()
        .filter(|(k, _)| k.starts_with("entries-"))
        .flat_map(|(_, chunk)| chunk.lines())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("index line is JSON");
            let path = v["path"].as_str().expect("index line has a path");
            (path.to_owned(), line.to_owned())
        })
        .collect()
}

/// A JSON object's values as strings (non-strings as JSON text).
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let s = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Leak guard
// ---------------------------------------------------------------------------

/// Fails if any secret value (or its base64 form, as Kubernetes stores it)
/// appears in any of the outputs.
pub fn assert_no_leak<S: AsRef<str>>(outputs: &[&str], values: &[S]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for (vi, value) in values.iter().enumerate() {
        let value = value.as_ref();
        assert!(
            value.len() >= 8,
            "leak guard: value #{vi} is too short to be distinctive"
        );
        let forms = [value.to_owned(), b64.encode(value)];
        for (oi, output) in outputs.iter().enumerate() {
            for form in &forms {
                if let Some(pos) = output.find(form.as_str()) {
                    let start = output[..pos]
                        .char_indices()
                        .rev()
                        .nth(80)
                        .map_or(0, |(i, _)| i);
                    panic!(
                        "SECRET LEAK: value #{vi} appears in output #{oi} at byte {pos}; context: {:?}",
                        &output[start..pos]
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CLI runner
// ---------------------------------------------------------------------------

/// What one run of the binary produced.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout parsed as JSON (for `-o json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, expected, "unexpected exit code:\n{self}");
        self
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ vault-sync {}\nexit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs the built binary with the stack's environment (and nothing else of
/// the test process's), plus `extra_env`. Blocking; bounded by CLI_TIMEOUT.
pub fn run_cli(args: &[&str], extra_env: &[(&str, &str)]) -> CliOutput {
    run_cli_within(args, extra_env, CLI_TIMEOUT)
        .unwrap_or_else(|_| panic!("vault-sync {args:?} did not finish within {CLI_TIMEOUT:?}"))
}

/// Like [`run_cli`], but kills the process after `limit`: `Err(stderr so
/// far)` when it had to.
pub fn run_cli_within(
    args: &[&str],
    extra_env: &[(&str, &str)],
    limit: Duration,
) -> Result<CliOutput, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault-sync"));
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.env("VAULT_ADDR", STACK.vault_addr())
        .env("VAULT_TOKEN", STACK.vault_token())
        .env("KUBECONFIG", STACK.kubeconfig())
        .env("NO_COLOR", "1");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn vault-sync");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait vault-sync") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        return Err(stderr);
    };
    Ok(CliOutput {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: status
            .code()
            .unwrap_or_else(|| panic!("vault-sync {args:?} killed by a signal: {status}")),
        stdout,
        stderr,
    })
}

// ---------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------

/// One audit-log entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// "request" or "response".
    pub kind: String,
    pub operation: String,
    pub path: String,
    /// Top-level `error` (response entries of failed requests).
    pub error: String,
    /// The token's display name (`token-<display_name>` for created tokens).
    pub client: String,
}

/// A position in the audit log; entries after it are "new".
pub struct AuditMark {
    offset: u64,
}

/// Remembers the audit log's current end.
pub fn audit_mark() -> AuditMark {
    let len = std::fs::metadata(STACK.audit_log())
        .unwrap_or_else(|e| panic!("audit log {}: {e}", STACK.audit_log()))
        .len();
    AuditMark { offset: len }
}

impl AuditMark {
    /// Every complete entry written since the mark, as the JSON the audit
    /// device wrote (request bodies included, strings HMAC'd).
    pub fn raw_entries(&self) -> Vec<Value> {
        let mut file = std::fs::File::open(STACK.audit_log()).expect("open audit log");
        file.seek(SeekFrom::Start(self.offset)).expect("seek");
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).expect("read audit log");
        // A concurrent writer may have left a partial last line.
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes[..end]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .collect()
    }

    /// Every complete entry written since the mark.
    pub fn entries(&self) -> AuditEntries {
        let entries = self
            .raw_entries()
            .into_iter()
            .map(|v| AuditEntry {
                kind: v["type"].as_str().unwrap_or_default().to_owned(),
                operation: v["request"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                path: v["request"]["path"].as_str().unwrap_or_default().to_owned(),
                error: v["error"].as_str().unwrap_or_default().to_owned(),
                client: v["auth"]["display_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect();
        AuditEntries(entries)
    }
}

pub struct AuditEntries(pub Vec<AuditEntry>);

pub const WRITE_OPS: &[&str] = &["create", "update", "patch", "delete"];

/// The deletes among `writes` (operation, API path), in order.
pub fn only_deletes(writes: Vec<(String, String)>) -> Vec<(String, String)> {
    writes
        .into_iter()
        .filter(|(op, _)| op == "delete")
        .collect()
}

impl AuditEntries {
    /// Request entries whose path contains `needle`.
    pub fn requests<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = &'a AuditEntry> + 'a {
        self.0
            .iter()
            .filter(move |e| e.kind == "request" && e.path.contains(needle))
    }

    /// Request counts by operation for paths containing `needle`.
    pub fn ops(&self, needle: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in self.requests(needle) {
            *out.entry(e.operation.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Write requests (create/update/patch/delete) on paths containing `needle`.
    pub fn writes(&self, needle: &str) -> Vec<(String, String)> {
        self.requests(needle)
            .filter(|e| WRITE_OPS.contains(&e.operation.as_str()))
            .map(|e| (e.operation.clone(), e.path.clone()))
            .collect()
    }

    /// Write requests made with the token whose display name is `client`,
    /// on any path.
    pub fn writes_by(&self, client: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|e| {
                e.kind == "request"
                    && e.client == client
                    && WRITE_OPS.contains(&e.operation.as_str())
            })
            .map(|e| (e.operation.clone(), e.path.clone()))
            .collect()
    }

    /// Request entries made with the token whose display name is `client`.
    pub fn requests_by(&self, client: &str) -> usize {
        self.0
            .iter()
            .filter(|e| e.kind == "request" && e.client == client)
            .count()
    }

    /// Failed writes: response entries of create/update/patch requests on
    /// paths containing `needle` that carry an error. (OpenBao logs a
    /// check-and-set refusal as "invalid request"; the detail is HMAC'd.)
    pub fn failed_writes(&self, needle: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|e| {
                e.kind == "response"
                    && e.path.contains(needle)
                    && ["create", "update", "patch"].contains(&e.operation.as_str())
                    && !e.error.is_empty()
            })
            .map(|e| (e.operation.clone(), e.path.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Pod templates
// ---------------------------------------------------------------------------

/// How a pod template references Secrets.
#[derive(Debug, Default, Clone)]
pub struct PodRefs {
    env_from: Vec<String>,
    key_refs: Vec<(String, String)>,
    volumes: Vec<String>,
    projected: Vec<String>,
}

impl PodRefs {
    pub fn new() -> Self {
        Self::default()
    }

    /// `envFrom: [{secretRef: {name}}]`
    pub fn env_from(mut self, secret: &str) -> Self {
        self.env_from.push(secret.to_owned());
        self
    }

    /// `env: [{valueFrom: {secretKeyRef: {name, key}}}]`
    pub fn key_ref(mut self, secret: &str, key: &str) -> Self {
        self.key_refs.push((secret.to_owned(), key.to_owned()));
        self
    }

    /// `volumes: [{secret: {secretName}}]`
    pub fn volume(mut self, secret: &str) -> Self {
        self.volumes.push(secret.to_owned());
        self
    }

    /// `volumes: [{projected: {sources: [{secret: {name}}]}}]`
    pub fn projected(mut self, secret: &str) -> Self {
        self.projected.push(secret.to_owned());
        self
    }

    pub fn pod_spec(&self) -> Value {
        let env: Vec<Value> = self
            .key_refs
            .iter()
            .enumerate()
            .map(|(i, (name, key))| {
                json!({
                    "name": format!("FROM_SECRET_{i}"),
                    "valueFrom": {"secretKeyRef": {"name": name, "key": key}}
                })
            })
            .collect();
        let env_from: Vec<Value> = self
            .env_from
            .iter()
            .map(|name| json!({"secretRef": {"name": name}}))
            .collect();
        let mut volumes: Vec<Value> = Vec::new();
        let mut mounts: Vec<Value> = Vec::new();
        for (i, name) in self.volumes.iter().enumerate() {
            volumes.push(json!({"name": format!("sec-{i}"), "secret": {"secretName": name}}));
            mounts.push(json!({"name": format!("sec-{i}"), "mountPath": format!("/secrets/{i}")}));
        }
        if !self.projected.is_empty() {
            let sources: Vec<Value> = self
                .projected
                .iter()
                .map(|name| json!({"secret": {"name": name}}))
                .collect();
            volumes.push(json!({"name": "projected", "projected": {"sources": sources}}));
            mounts.push(json!({"name": "projected", "mountPath": "/projected"}));
        }
        json!({
            "containers": [{
                "name": "app",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "env": env,
                "envFrom": env_from,
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        })
    }
}

// ---------------------------------------------------------------------------
// Per-test namespace
// ---------------------------------------------------------------------------

/// A namespace of its own for one test (`it-<label>-<rand>`), deleted with
/// its Vault prefix on drop (unless `IT_KEEP=1`).
pub struct TestNs {
    pub name: String,
    pub kube: kube::Client,
    /// Root token: fixtures and checks.
    pub vault: VaultHttp,
    /// The token this test's CLI runs use (a root-policy child token whose
    /// display name identifies the test in the audit log).
    pub cli_token: String,
    /// The KV v2 mount holding this test's vault-sync index
    /// (`VAULT_SYNC_INDEX_MOUNT`): the index is one CAS-written secret per
    /// cluster, so tests sharing it would race each other.
    pub index_mount: String,
    values: Mutex<Vec<String>>,
}

/// The KV mounts tests write under.
pub const KV2_MOUNTS: &[&str] = &["secret", "team"];
pub const KV1_MOUNT: &str = "kv1";
/// Per-test index mounts are `<prefix><namespace>`.
pub const INDEX_MOUNT_PREFIX: &str = "it-index-";

impl TestNs {
    pub async fn new(label: &str) -> Self {
        let name = format!("it-{label}-{}", random_hex(6));
        assert!(name.len() <= 63, "namespace name {name} too long");
        let kube = kube_client().await;
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"vault-sync-it": "true"}}}),
        )
        .expect("namespace");
        Api::<Namespace>::all(kube.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let vault = VaultHttp::root();
        let (cli_token, _) = vault
            .create_token(&json!({"policies": ["root"], "display_name": name, "ttl": "2h"}))
            .await;
        let index_mount = format!("{INDEX_MOUNT_PREFIX}{name}");
        vault
            .must_post(
                &format!("sys/mounts/{index_mount}"),
                &json!({"type": "kv", "options": {"version": "2"}}),
                &format!("mount {index_mount}"),
            )
            .await;
        Self {
            name,
            kube,
            vault,
            cli_token,
            index_mount,
            values: Mutex::new(Vec::new()),
        }
    }

    /// The audit log's display name of [`Self::cli_token`].
    pub fn audit_client(&self) -> String {
        format!("token-{}", self.name)
    }

    /// This test's vault-sync index secret, as text (keys and values; its
    /// layout is vault-sync's business, tests only look for mentions).
    pub async fn index_text(&self) -> String {
        index_text(&self.vault, &self.index_mount, "default").await
    }

    /// `<mount>/it/<ns>/<rest>`, the Vault path as an annotation spells it.
    pub fn path(&self, mount: &str, rest: &str) -> String {
        format!("{mount}/{}", self.rel(rest))
    }

    /// `it/<ns>/<rest>`: the path inside a mount.
    pub fn rel(&self, rest: &str) -> String {
        format!("it/{}/{rest}", self.name)
    }

    /// What every Vault API path of this test contains (audit filter).
    pub fn audit_needle(&self) -> String {
        format!("it/{}/", self.name)
    }

    /// A distinctive secret value, registered with the leak guard.
    pub fn value(&self, label: &str) -> String {
        let v = format!("SeCrEt-{}-{label}", random_hex(12));
        self.values.lock().expect("values").push(v.clone());
        v
    }

    /// Every secret value registered so far.
    pub fn values(&self) -> Vec<String> {
        self.values.lock().expect("values").clone()
    }

    /// Fails if any registered value appears in any of `outputs`.
    pub fn assert_no_leak(&self, outputs: &[&str]) {
        assert_no_leak(outputs, &self.values());
    }

    pub fn secrets_api(&self) -> Api<Secret> {
        Api::namespaced(self.kube.clone(), &self.name)
    }

    pub fn deployments_api(&self) -> Api<Deployment> {
        Api::namespaced(self.kube.clone(), &self.name)
    }

    /// Creates a Secret from string data.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) -> Secret {
        let map: BTreeMap<&str, &str> = data.iter().copied().collect();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": self.name},
            "type": "Opaque",
            "stringData": map,
        }))
        .expect("secret");
        self.secrets_api()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("create Secret {}/{name}: {e}", self.name))
    }

    /// Sets (adds or replaces) keys of an existing Secret.
    pub async fn patch_secret(&self, name: &str, data: &[(&str, &str)]) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let map: BTreeMap<&str, String> = data.iter().map(|(k, v)| (*k, b64.encode(v))).collect();
        self.secrets_api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "data": map })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch Secret {}/{name}: {e}", self.name));
    }

    /// Creates a Deployment with these annotations and a pod template
    /// referencing Secrets as `refs` says.
    pub async fn deployment(
        &self,
        name: &str,
        annotations: &[(&str, &str)],
        refs: &PodRefs,
    ) -> Deployment {
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": self.name, "annotations": annotations},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": refs.pod_spec(),
                }
            }
        }))
        .expect("deployment");
        self.deployments_api()
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap_or_else(|e| panic!("create Deployment {}/{name}: {e}", self.name))
    }

    /// Deletes a Deployment and waits until the API server no longer has
    /// it (there is no controller manager and there are no finalizers, so
    /// it is gone at once; this makes sure).
    pub async fn delete_deployment(&self, name: &str) {
        let api = self.deployments_api();
        api.delete(name, &kube::api::DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete Deployment {}/{name}: {e}", self.name));
        for _ in 0..100 {
            if api.get_opt(name).await.expect("get Deployment").is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("Deployment {}/{name} still exists", self.name);
    }

    /// Sets one annotation of a Deployment.
    pub async fn annotate(&self, deployment: &str, key: &str, value: &str) {
        self.deployments_api()
            .patch(
                deployment,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("annotate {}/{deployment}: {e}", self.name));
    }

    /// Runs the binary scoped to this namespace (`-n <ns>` appended) and
    /// checks that no registered secret value leaked into its output.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_env(args, &[]).await
    }

    pub async fn cli_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> CliOutput {
        let mut full: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        full.push("-n".into());
        full.push(self.name.clone());
        let mut env: Vec<(String, String)> = vec![
            ("VAULT_TOKEN".into(), self.cli_token.clone()),
            ("VAULT_SYNC_INDEX_MOUNT".into(), self.index_mount.clone()),
        ];
        // Later entries win.
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = full.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_cli(&args, &env)
        })
        .await
        .expect("vault-sync runner");
        let mut secrets = self.values();
        secrets.push(self.cli_token.clone());
        assert_no_leak(&[&out.stdout, &out.stderr], &secrets);
        out
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
            eprintln!(
                "IT_KEEP=1: keeping namespace {} and its Vault paths",
                self.name
            );
            return;
        }
        let name = self.name.clone();
        let token = self.cli_token.clone();
        let index_mount = self.index_mount.clone();
        // The test's runtime is going away: clean up on a runtime of our own.
        block_on_own_runtime(async move { cleanup(&name, &token, &index_mount).await });
    }
}

/// Runs `fut` on a runtime and a thread of its own and waits for it (for a
/// `Drop`: the test's runtime is going away); best effort.
pub fn block_on_own_runtime(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    let handle = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(fut);
        }
    });
    let _ = handle.join();
}

/// Deletes what a run with `--cluster-name <cluster>` wrote to `mount`:
/// every path under `<mount>/clusters/<cluster>/`, then its index.
pub async fn delete_cluster_paths(vault: &VaultHttp, mount: &str, cluster: &str) {
    let root = format!("{mount}/metadata");
    for leaf in vault
        .list_recursive(&root, &format!("clusters/{cluster}"))
        .await
    {
        vault.delete(&format!("{root}/{leaf}")).await;
    }
    vault
        .delete(&format!("{root}/vault-sync/index/{cluster}"))
        .await;
}

/// Best effort: Deployments, Secrets, the namespace, the Vault prefix, the
/// index mount and the token.
async fn cleanup(name: &str, token: &str, index_mount: &str) {
    let kube = kube_client().await;
    let dp = DeleteParams::default();
    let lp = ListParams::default();
    let _ = Api::<Deployment>::namespaced(kube.clone(), name)
        .delete_collection(&dp, &lp)
        .await;
    let _ = Api::<Secret>::namespaced(kube.clone(), name)
        .delete_collection(&dp, &lp)
        .await;
    // Without a namespace controller the namespace stays Terminating; that
    // is harmless, its contents are gone.
    let _ = Api::<Namespace>::all(kube).delete(name, &dp).await;

    // `it/<ns>/`, and `clusters/<ns>/` for runs with `--cluster-name <ns>`
    // (whose index is `secret/vault-sync/index/<ns>`).
    let vault = VaultHttp::root();
    for folder in [format!("it/{name}"), format!("clusters/{name}")] {
        for mount in KV2_MOUNTS {
            for leaf in vault
                .list_recursive(&format!("{mount}/metadata"), &folder)
                .await
            {
                vault.delete(&format!("{mount}/metadata/{leaf}")).await;
            }
        }
        for leaf in vault.list_recursive(KV1_MOUNT, &folder).await {
            vault.delete(&format!("{KV1_MOUNT}/{leaf}")).await;
        }
    }
    vault
        .delete(&format!("secret/metadata/vault-sync/index/{name}"))
        .await;
    vault.delete(&format!("sys/mounts/{index_mount}")).await;
    let _ = vault
        .post("auth/token/revoke", &json!({ "token": token }))
        .await;
}

// ---------------------------------------------------------------------------
// Self-tests of the helpers (no stack needed)
// ---------------------------------------------------------------------------

#[test]
fn env_file_parsing() {
    let vars = parse_env_file("# comment\nexport A=1\nB=\"two words\"\n\nexport C='x=y'\n");
    assert_eq!(vars["A"], "1");
    assert_eq!(vars["B"], "two words");
    assert_eq!(vars["C"], "x=y");
}

#[test]
fn leak_guard_passes_clean_output() {
    assert_no_leak(
        &["plan: 1 to create", "keys: password"],
        &["SeCrEt-0123456789"],
    );
}

#[test]
#[should_panic(expected = "SECRET LEAK")]
fn leak_guard_catches_a_value() {
    assert_no_leak(&["ok", "value=SeCrEt-0123456789!"], &["SeCrEt-0123456789"]);
}

#[test]
#[should_panic(expected = "SECRET LEAK")]
fn leak_guard_catches_base64() {
    let encoded = base64::engine::general_purpose::STANDARD.encode("SeCrEt-0123456789");
    assert_no_leak(&[&format!("data: {encoded}")], &["SeCrEt-0123456789"]);
}
