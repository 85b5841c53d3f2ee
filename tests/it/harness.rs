//! Shared helpers for the end-to-end suite: the running stack's settings,
//! a Kubernetes client, one namespace per test with its builders (Secrets,
//! Deployments, pod templates), the CLI runner and the leak guard. The Vault
//! client is in `vault`, the audit-log reader in `audit`.
//!
//! Isolation: every test gets its own Kubernetes namespace `it-<name>-<rand>`
//! and its own Vault prefix `<mount>/it/<namespace>/`, and every CLI call is
//! restricted with `-n <namespace>`, so tests run in parallel safely.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
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
use serde_json::{Value, json};

// Which env file describes the servers, and how to start them, is the test
// crate's choice: tests/it reads tests/stack/.env, tests/cluster its own.
use crate::vault::VaultHttp;
use crate::{ENV_FILE, NOT_RUNNING};

/// The annotations vault-sync reads.
pub mod annotation {
    pub const PATH: &str = "vault-sync.io/path";
    pub const SECRETS: &str = "vault-sync.io/secrets";
    pub const PRESERVE: &str = "vault-sync.io/preserve-on-delete";
    pub const RECONCILE: &str = "vault-sync.io/reconcile";
}

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

/// The wall clock, in seconds since the epoch (as metrics carry it).
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
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
        self.vault.index_text(&self.index_mount, "default").await
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

    /// Creates a Secret with one distinctive value per key (registered with
    /// the leak guard); returns key → value.
    pub async fn secret_of_keys(&self, name: &str, keys: &[&str]) -> BTreeMap<String, String> {
        let data: BTreeMap<String, String> = keys
            .iter()
            .map(|k| ((*k).to_owned(), self.value(&format!("{name}-{k}"))))
            .collect();
        let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.secret(name, &pairs).await;
        data
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

/// Runs cleanup on a runtime of its own (the test's is going away), best effort.
pub fn run_detached(fut: impl std::future::Future<Output = ()> + Send + 'static) {
    if std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
        return;
    }
    block_on_own_runtime(fut);
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
