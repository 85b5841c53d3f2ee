//! The fixtures and builders the suites share, beside the harness's
//! namespace, CLI runner and builders (`harness`), the Vault client
//! (`vault`) and the audit-log reader (`audit`):
//!
//! - [`BaoProcess`]: a private `bao server` process in a temp dir, with its
//!   own file audit log, killed (SIGKILL) on drop; [`PrivateBao`], a dev
//!   server on one;
//! - seeded paths ([`one_path`], [`many_paths`]) and what Vault must hold
//!   ([`assert_marker`], [`assert_whole_or_absent`], [`assert_all_written`]);
//! - Deployments of any shape ([`deploy`], [`pod`]) and a CLI run bounded in
//!   time ([`cli_bounded`]);
//! - [`TcpProxy`]: bytes between vault-sync and a server, with delays and
//!   faults tripped by traffic;
//! - a restricted ServiceAccount and its kubeconfig, vault-sync's own
//!   ServiceAccount token in a file;
//! - readers of `-o json` output ([`changes`], [`change`], [`change_of`],
//!   [`actions`], [`result_of`], [`failures`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::audit::AuditLog;
use crate::harness::annotation::PATH;
use crate::harness::{CliOutput, PodRefs, STACK, TestNs, block_on_own_runtime};
use crate::stack::service_account_token;
use crate::vault::{Data, Kv2Secret, PathState, VaultHttp, example_policy};

/// The environment of a run against a private server at `addr` with
/// `token`, the index in `secret/` (a private server's only KV mount).
pub fn private_env<'a>(addr: &'a str, token: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("VAULT_ADDR", addr),
        ("VAULT_TOKEN", token),
        ("VAULT_SYNC_INDEX_MOUNT", "secret"),
    ]
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The port of an `http(s)://127.0.0.1:<port>` URL.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

// ---------------------------------------------------------------------------
// A private OpenBao process
// ---------------------------------------------------------------------------

/// A `bao server` (the real binary, `BAO_BIN`) on a free port of 127.0.0.1,
/// with a temp dir as its home: `server.log`, and the file audit log
/// `audit.log` its configuration is to name. Killed (SIGKILL) on drop.
pub struct BaoProcess {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub addr: String,
}

impl BaoProcess {
    /// Not started yet: see [`Self::spawn`]. `scheme`: "http" or "https".
    pub fn new(scheme: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for a private bao");
        let port = free_port();
        Self {
            child: None,
            dir,
            port,
            addr: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// `<dir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `bao server <args>`, with nothing of the caller's VAULT_*/BAO_*
    /// environment and its home (a dev server's ~/.vault-token) in the temp
    /// dir; output appended to `server.log`.
    pub fn spawn(&mut self, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.log"))
            .expect("server.log");
        let child = Command::new(STACK.get("BAO_BIN"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .arg("server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn bao server");
        self.child = Some(child);
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// Panics (with the server log) if the server has exited; `when` is
    /// added to the message.
    pub fn check_alive(&mut self, when: &str) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "private bao exited ({status}){when}:\n{}",
                self.server_log()
            );
        }
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its own file audit log (`<dir>/audit.log`).
    pub fn audit_log(&self) -> AuditLog {
        AuditLog::at(&self.path("audit.log"))
    }
}

impl Drop for BaoProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `Deref` and `DerefMut` to the [`BaoProcess`] in the field `server` of a
/// private server type that wraps one with state of its own.
macro_rules! deref_to_server {
    ($wrapper:ty) => {
        impl std::ops::Deref for $wrapper {
            type Target = $crate::fixtures::BaoProcess;
            fn deref(&self) -> &Self::Target {
                &self.server
            }
        }

        impl std::ops::DerefMut for $wrapper {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.server
            }
        }
    };
}
pub(crate) use deref_to_server;

// ---------------------------------------------------------------------------
// A private OpenBao dev server
// ---------------------------------------------------------------------------

/// `bao server -dev` on a free port with its own file audit log, started
/// from the real binary (`BAO_BIN`) and killed (SIGKILL) on drop.
pub struct PrivateBao {
    server: BaoProcess,
    /// The dev-TLS CA (`-dev-tls` only).
    pub ca_file: Option<PathBuf>,
}

deref_to_server!(PrivateBao);

impl PrivateBao {
    pub async fn start() -> Self {
        Self::launch(false).await
    }

    /// `-dev-tls`: OpenBao generates a CA and a serving certificate for
    /// 127.0.0.1 into `<dir>/tls/vault-ca.pem` etc.
    pub async fn start_tls() -> Self {
        Self::launch(true).await
    }

    async fn launch(tls: bool) -> Self {
        let mut server = BaoProcess::new(if tls { "https" } else { "http" });
        let audit = server.path("audit.log");
        let config = server.path("audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"to-file\" {{\n  options {{\n    file_path = {:?}\n  }}\n}}\n",
                audit.display().to_string()
            ),
        )
        .expect("write audit.hcl");
        let mut args = vec![
            "-dev".to_owned(),
            "-dev-root-token-id=root".to_owned(),
            format!("-dev-listen-address=127.0.0.1:{}", server.port),
            format!("-config={}", config.display()),
        ];
        let tls_dir = server.path("tls");
        if tls {
            std::fs::create_dir_all(&tls_dir).expect("tls dir");
            args.push("-dev-tls".to_owned());
            args.push(format!("-dev-tls-cert-dir={}", tls_dir.display()));
        }
        server.spawn(&args);
        let mut bao = Self {
            server,
            ca_file: tls.then(|| tls_dir.join("vault-ca.pem")),
        };
        bao.wait_ready().await;
        bao
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive(" before becoming ready");
            let ca_ready = self.ca_file.as_ref().is_none_or(|f| f.is_file());
            if ca_ready && self.root().request(Method::GET, "sys/health", None).await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private bao not ready after 30s:\n{}",
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client with the root token (trusting the dev CA under TLS).
    pub fn root(&self) -> VaultHttp {
        VaultHttp::new(
            &self.addr,
            "root",
            self.ca_file.as_deref(),
            Duration::from_secs(10),
        )
    }

    pub fn ca_file(&self) -> String {
        self.ca_file
            .as_ref()
            .expect("started with -dev-tls")
            .display()
            .to_string()
    }

    /// The `vault-sync` policy of examples/vault-policy.hcl, as on the
    /// shared server.
    pub async fn write_vault_sync_policy(&self) {
        self.root()
            .must(
                Method::PUT,
                "sys/policies/acl/vault-sync",
                Some(&json!({ "policy": example_policy() })),
            )
            .await;
    }

    /// Kubernetes auth against the shared API server, configured as
    /// tests/stack/up.sh configures the shared OpenBao, with role
    /// `vault-sync-operator` whose tokens live `ttl`.
    pub async fn enable_kubernetes_auth(&self, kube: &kube::Client, ttl: &str) {
        let root = self.root();
        root.must(
            Method::POST,
            "sys/auth/kubernetes",
            Some(&json!({"type": "kubernetes"})),
        )
        .await;
        let reviewer =
            service_account_token(kube, STACK.get("VAULT_SYNC_SA_NAMESPACE"), "token-reviewer")
                .await;
        let ca = std::fs::read_to_string(STACK.get("KUBE_CA_FILE")).expect("KUBE_CA_FILE");
        root.must(
            Method::POST,
            "auth/kubernetes/config",
            Some(&json!({
                "kubernetes_host": STACK.get("KUBE_API_URL"),
                "kubernetes_ca_cert": ca,
                "token_reviewer_jwt": reviewer,
                "disable_local_ca_jwt": true,
            })),
        )
        .await;
        self.write_vault_sync_policy().await;
        root.must(
            Method::POST,
            &format!("auth/kubernetes/role/{}", STACK.get("VAULT_SYNC_K8S_ROLE")),
            Some(&json!({
                "bound_service_account_names": [STACK.get("VAULT_SYNC_SA_NAME")],
                "bound_service_account_namespaces": [STACK.get("VAULT_SYNC_SA_NAMESPACE")],
                "token_policies": ["vault-sync"],
                "token_ttl": ttl,
                "token_max_ttl": ttl,
            })),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// Deployments of any shape, and a bounded CLI run
// ---------------------------------------------------------------------------

/// A pod template whose container takes `envFrom` each Secret.
pub fn pod(env_from: &[&str]) -> Value {
    let env_from: Vec<Value> = env_from
        .iter()
        .map(|name| json!({"secretRef": {"name": name}}))
        .collect();
    json!({"containers": [{
        "name": "app",
        "image": "busybox",
        "command": ["sleep", "3600"],
        "envFrom": env_from,
    }]})
}

/// A Deployment with any pod template and labels (the harness's has neither).
pub async fn deploy(
    ns: &TestNs,
    name: &str,
    annotations: &[(String, String)],
    labels: &[(String, String)],
    pod: &Value,
) {
    let annotations: BTreeMap<&str, &str> = annotations
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let labels: BTreeMap<&str, &str> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns.name, "annotations": annotations, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        }
    }))
    .expect("deployment");
    ns.deployments_api()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap_or_else(|e| panic!("create Deployment {}/{name}: {e}", ns.name));
}

/// Wall-clock bound on one CLI run, however hostile its input (the harness
/// kills a run only after two minutes).
pub const RUN_BUDGET: Duration = Duration::from_secs(60);

/// One CLI run, checked for what every run must satisfy: it exits (no
/// panic, no signal), within the budget, and leaks nothing (`TestNs::cli`).
pub async fn cli_bounded(ns: &TestNs, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let started = Instant::now();
    let out = ns.cli_env(args, env).await;
    let took = started.elapsed();
    assert!(
        !out.stderr.contains("panicked") && !out.stdout.contains("panicked"),
        "vault-sync panicked:\n{out}"
    );
    assert!(
        took < RUN_BUDGET,
        "vault-sync {args:?} took {took:?}, over the {RUN_BUDGET:?} budget"
    );
    out
}

// ---------------------------------------------------------------------------
// Seeded paths and what Vault holds
// ---------------------------------------------------------------------------

/// One Deployment `app` auto-discovering Secret `db` (two keys) at
/// `secret/it/<ns>/app/db`; returns the expected content.
pub async fn one_path(ns: &TestNs) -> BTreeMap<String, String> {
    let data = BTreeMap::from([
        ("password".to_owned(), ns.value("password")),
        ("user".to_owned(), ns.value("user")),
    ]);
    let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ns.secret("db", &pairs).await;
    ns.deployment(
        "app",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("db"),
    )
    .await;
    data
}

/// `deployments` Deployments `d<i>`, each auto-discovering `per` Secrets
/// of two keys: `deployments * per` paths under `secret/it/<ns>/`.
/// Returns rel path (inside `secret/`) → expected content.
pub async fn many_paths(
    ns: &TestNs,
    deployments: usize,
    per: usize,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut expected = BTreeMap::new();
    let mut secrets = Vec::new();
    for d in 0..deployments {
        let mut refs = PodRefs::new();
        for i in 0..per {
            let name = format!("s{d}-{i:03}");
            let data = BTreeMap::from([
                ("a".to_owned(), ns.value(&format!("{name}-a"))),
                ("b".to_owned(), ns.value(&format!("{name}-b"))),
            ]);
            refs = refs.env_from(&name);
            expected.insert(ns.rel(&format!("d{d}/{name}")), data.clone());
            secrets.push((name, data));
        }
        ns.deployment(
            &format!("d{d}"),
            &[(PATH, &ns.path("secret", &format!("d{d}")))],
            &refs,
        )
        .await;
    }
    futures::stream::iter(secrets)
        .map(|(name, data)| async move {
            let pairs: Vec<(&str, &str)> =
                data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            ns.secret(&name, &pairs).await;
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    expected
}

/// The rel path's Deployment (`.../d<i>/<secret>` → `d<i>`).
pub fn deployment_of(rel: &str) -> &str {
    rel.rsplit('/').nth(1).unwrap_or_default()
}

/// Every path is whole or not there: full desired content with the
/// marker, or absent, or full content at version 1 without the marker (a
/// create interrupted between its content and its marker: vault-sync writes
/// content first and completes the marker on the next run, through its
/// index). Never partial keys, never a marker without content. Returns the
/// whole paths and the content-only ones.
pub async fn assert_whole_or_absent(
    bao: &VaultHttp,
    ns: &TestNs,
    expected: &BTreeMap<String, BTreeMap<String, String>>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut whole, mut marker_only) = (BTreeSet::new(), BTreeSet::new());
    for (rel, data) in expected {
        let owner = format!("default/{}/{}", ns.name, deployment_of(rel));
        match bao.state("secret", rel).await {
            PathState::Absent => {}
            PathState::MarkerOnly(md) => {
                panic!("{rel}: a marker without content: {md:?}");
            }
            PathState::Written(Kv2Secret {
                data: got,
                version,
                custom_metadata: md,
            }) => {
                assert_eq!(&got, data, "{rel}: half-written content");
                assert_eq!(version, 1, "{rel}");
                if md.is_empty() {
                    marker_only.insert(rel.clone());
                } else {
                    assert_marker(&md, &owner, rel);
                    whole.insert(rel.clone());
                }
            }
            PathState::SoftDeleted { .. } => {
                panic!("{rel}: soft-deleted");
            }
        }
    }
    (whole, marker_only)
}

/// Every path holds exactly its desired content, once, with the marker.
pub async fn assert_all_written(
    bao: &VaultHttp,
    ns: &TestNs,
    expected: &BTreeMap<String, BTreeMap<String, String>>,
) {
    for (rel, data) in expected {
        let owner = format!("default/{}/{}", ns.name, deployment_of(rel));
        match bao.state("secret", rel).await {
            PathState::Written(Kv2Secret {
                data: got,
                custom_metadata: md,
                ..
            }) => {
                assert_eq!(&got, data, "{rel}");
                assert_marker(&md, &owner, rel);
            }
            other => panic!("{rel} not written: {other:?}"),
        }
    }
}

/// vault-sync's ownership marker naming `owner` (`<cluster>/<namespace>/
/// <deployment>`); `what` names the path in the failure message.
pub fn assert_marker(md: &Data, owner: &str, what: &str) {
    assert_eq!(
        md.get("managed-by").map(String::as_str),
        Some("vault-sync"),
        "{what}: {md:?}"
    );
    assert_eq!(
        md.get("vault-sync.io/owner").map(String::as_str),
        Some(owner),
        "{what}: {md:?}"
    );
}

/// Metrics file lines of a run (`--metrics-file`).
pub fn metrics_file(dir: &Path) -> (String, String) {
    let path = dir.join("metrics.prom");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    (path.display().to_string(), text)
}

// ---------------------------------------------------------------------------
// A namespace that is also the run's cluster
// ---------------------------------------------------------------------------

/// A namespace whose name is also the runs' `--cluster-name`, so their
/// paths land under `<mount>/clusters/<ns>/` (which the harness cleans up)
/// and their index is `vault-sync/index/<ns>` in the test's index mount.
pub struct ClusterNs {
    pub ns: TestNs,
    pub cluster: String,
    /// Vault API paths to DELETE on drop (beyond what the harness cleans).
    extra_cleanup: Mutex<Vec<String>>,
    /// Policies this case wrote (deleted on drop).
    policies: Mutex<Vec<String>>,
}

impl ClusterNs {
    pub async fn new(label: &str) -> Self {
        let ns = TestNs::new(label).await;
        let cluster = ns.name.clone();
        Self {
            ns,
            cluster,
            extra_cleanup: Default::default(),
            policies: Default::default(),
        }
    }

    /// `vault-sync <args> --cluster-name <c> -n <ns>` (leak-checked).
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_env(args, &[]).await
    }

    pub async fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--cluster-name", &self.cluster]);
        self.ns.cli_env(&full, env).await
    }

    /// `<cmd> -o json <args> --cluster-name <c>`.
    pub async fn json(&self, cmd: &str, args: &[&str]) -> CliOutput {
        let mut full = vec![cmd, "-o", "json"];
        full.extend_from_slice(args);
        self.cli(&full).await
    }

    /// `clusters/<c>/<rest>`: the path inside its mount.
    pub fn rel(&self, rest: &str) -> String {
        format!("clusters/{}/{rest}", self.cluster)
    }

    /// `<mount>/clusters/<c>/<rest>`: the display path.
    pub fn display(&self, mount: &str, rest: &str) -> String {
        format!("{mount}/{}", self.rel(rest))
    }

    pub fn owner(&self, deployment: &str) -> String {
        format!("{}/{}/{deployment}", self.cluster, self.ns.name)
    }

    /// A Secret with one distinctive value per key; returns key → value.
    pub async fn secret(&self, name: &str, keys: &[&str]) -> BTreeMap<String, String> {
        self.ns.secret_of_keys(name, keys).await
    }

    /// Deployment `name` auto-discovering `secrets` (envFrom) under
    /// `<mount>/<path>`, plus `extra` annotations.
    pub async fn auto(&self, name: &str, path: &str, secrets: &[&str], extra: &[(&str, &str)]) {
        let refs = secrets.iter().fold(PodRefs::new(), |r, s| r.env_from(s));
        let mut annotations = vec![(PATH, path)];
        annotations.extend_from_slice(extra);
        self.ns.deployment(name, &annotations, &refs).await;
    }

    pub async fn delete_deployment(&self, name: &str) {
        self.ns.delete_deployment(name).await;
    }

    pub async fn label_deployment(&self, name: &str, key: &str, value: &str) {
        self.ns
            .deployments_api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("label Deployment {}/{name}: {e}", self.ns.name));
    }

    /// A token with only this policy (HCL); the policy is deleted on drop.
    pub async fn token_with_policy(&self, label: &str, hcl: &str) -> String {
        let name = format!("{}-{label}", self.cluster);
        self.ns.vault.write_policy(&name, hcl).await;
        self.policies.lock().expect("policies").push(name.clone());
        let (token, _) = self
            .ns
            .vault
            .create_token(&json!({"policies": [name], "display_name": name, "ttl": "10m"}))
            .await;
        token
    }

    pub fn cleanup_later(&self, api_path: String) {
        self.extra_cleanup.lock().expect("cleanup").push(api_path);
    }
}

impl Drop for ClusterNs {
    fn drop(&mut self) {
        if std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
            return;
        }
        let paths = std::mem::take(&mut *self.extra_cleanup.lock().expect("cleanup"));
        let policies = std::mem::take(&mut *self.policies.lock().expect("policies"));
        block_on_own_runtime(async move {
            let vault = VaultHttp::root();
            for p in paths {
                vault.delete(&p).await;
            }
            for p in policies {
                vault.delete(&format!("sys/policies/acl/{p}")).await;
            }
        });
    }
}

// ---------------------------------------------------------------------------
// A TCP proxy with faults tripped by traffic
// ---------------------------------------------------------------------------

/// What a tripped [`TcpProxy`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection carrying the tripping request is reset; new
    /// connections work (one lost connection).
    Drop,
    /// Every connection is reset and new ones are refused until
    /// [`TcpProxy::restore`] (the server is gone).
    Down,
    /// Nothing is forwarded any more, but connections stay open (a server
    /// or network path that hangs).
    Stall,
}

/// When an armed fault trips.
enum Trigger {
    /// On the first chunk from the client once `from_upstream` reaches this.
    Bytes(usize),
    /// On the `n`-th chunk from the client starting with this prefix.
    Request(Vec<u8>, usize),
}

/// Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream> byte for byte, with an
/// optional delay before each chunk sent upstream. [`TcpProxy::cut`] drops
/// every open connection and every new one (the server "gone");
/// [`TcpProxy::restore`] lets connections through again. A fault can be
/// armed to trip on a chosen request ([`TcpProxy::trip_at`]), or on the
/// first chunk the client sends once the upstream has sent `n` more bytes
/// ([`TcpProxy::trip_after`]; with a large answer, such as a Deployment
/// listing, that is the next request). TLS passes through. Plain threads,
/// so it works while the test's runtime waits.
pub struct TcpProxy {
    pub port: u16,
    state: Arc<TcpState>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TcpState {
    down: AtomicBool,
    stalled: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    /// Bytes the upstream has sent, over every connection.
    from_upstream: AtomicUsize,
    trip: Mutex<Option<(Trigger, Fault)>>,
    tripped: AtomicUsize,
    /// The request line of the last chunk that tripped a fault.
    tripped_line: Mutex<Option<String>>,
}

impl TcpState {
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// The armed fault, if this chunk from the client trips it.
    fn take_trip(&self, chunk: &[u8]) -> Option<Fault> {
        let mut trip = self.trip.lock().expect("trip");
        let fault = match trip.as_mut() {
            Some((Trigger::Bytes(threshold), fault))
                if self.from_upstream.load(Ordering::SeqCst) >= *threshold =>
            {
                *fault
            }
            Some((Trigger::Request(prefix, remaining), fault)) if chunk.starts_with(prefix) => {
                *remaining -= 1;
                if *remaining > 0 {
                    return None;
                }
                *fault
            }
            _ => return None,
        };
        *trip = None;
        self.tripped.fetch_add(1, Ordering::SeqCst);
        let line = chunk.split(|b| *b == b'\r').next().unwrap_or_default();
        *self.tripped_line.lock().expect("tripped") =
            Some(String::from_utf8_lossy(line).into_owned());
        Some(fault)
    }
}

impl TcpProxy {
    /// `delay`: added before each chunk sent from the client upstream.
    pub fn start(upstream_port: u16, delay: Duration) -> Self {
        let state = Arc::new(TcpState::default());
        let stopped = {
            let state = state.clone();
            move || state.stop.load(Ordering::SeqCst)
        };
        let serving = state.clone();
        let (port, acceptor) = spawn_acceptor(stopped, move |client| {
            let state = &serving;
            if state.down.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            {
                let mut conns = state.conns.lock().expect("conns");
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        conns.push(c);
                    }
                }
            }
            // A cut that raced with this accept.
            if state.down.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            let up = state.clone();
            std::thread::spawn(move || pump_up(client, server, delay, &up));
            let down = state.clone();
            std::thread::spawn(move || pump_down(server2, client2, &down));
        });
        Self {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server goes away: every connection is dropped, new ones too.
    pub fn cut(&self) {
        self.state.cut();
    }

    /// Arms `fault` for the first chunk from the client once the upstream
    /// has sent `bytes` more bytes than so far.
    pub fn trip_after(&self, bytes: usize, fault: Fault) {
        let threshold = self.state.from_upstream.load(Ordering::SeqCst) + bytes;
        *self.state.trip.lock().expect("trip") = Some((Trigger::Bytes(threshold), fault));
    }

    /// Arms `fault` for the `n`-th request whose first bytes are `prefix`
    /// (e.g. `POST /v1/secret/data/...`); it is not forwarded.
    pub fn trip_at(&self, prefix: &str, n: usize, fault: Fault) {
        *self.state.trip.lock().expect("trip") =
            Some((Trigger::Request(prefix.as_bytes().to_vec(), n), fault));
    }

    /// How many armed faults have tripped.
    pub fn tripped(&self) -> usize {
        self.state.tripped.load(Ordering::SeqCst)
    }

    /// The request line the last tripped fault stopped, once one has.
    pub fn tripped_line(&self) -> Option<String> {
        self.state.tripped_line.lock().expect("tripped").clone()
    }

    /// Disarms, un-stalls and lets connections through again.
    pub fn restore(&self) {
        *self.state.trip.lock().expect("trip") = None;
        self.state.stalled.store(false, Ordering::SeqCst);
        self.state.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.cut();
        join_acceptor(self.port, self.acceptor.take());
    }
}

/// Listens on a free port of 127.0.0.1 and, on a thread of its own (the
/// acceptor), hands each connection to `serve` until `stopped()`, which it
/// checks as each connection comes in (see [`join_acceptor`]). Returns the
/// port and the acceptor.
pub fn spawn_acceptor(
    stopped: impl Fn() -> bool + Send + 'static,
    mut serve: impl FnMut(TcpStream) + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("proxy addr").port();
    let acceptor = std::thread::spawn(move || {
        for client in listener.incoming() {
            if stopped() {
                break;
            }
            let Ok(client) = client else { continue };
            serve(client);
        }
    });
    (port, acceptor)
}

/// Once its `stopped()` is true, wakes the acceptor of [`spawn_acceptor`]
/// on `port` (a connection, so that it sees it) and waits for it.
pub fn join_acceptor(port: u16, acceptor: Option<JoinHandle<()>>) {
    let _ = TcpStream::connect(("127.0.0.1", port));
    if let Some(acceptor) = acceptor {
        let _ = acceptor.join();
    }
}

/// Client → upstream, where armed faults trip.
fn pump_up(mut from: TcpStream, mut to: TcpStream, delay: Duration, state: &TcpState) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match state.take_trip(&buf[..n]) {
            Some(Fault::Drop) => {
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Some(Fault::Down) => {
                state.cut();
                return;
            }
            Some(Fault::Stall) => state.stalled.store(true, Ordering::SeqCst),
            None => {}
        }
        if state.stalled.load(Ordering::SeqCst) {
            // Swallowed: the client waits for an answer that never comes.
            continue;
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Upstream → client, counting bytes.
fn pump_down(mut from: TcpStream, mut to: TcpStream, state: &TcpState) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        state.from_upstream.fetch_add(n, Ordering::SeqCst);
        if state.stalled.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------
// ServiceAccount tokens
// ---------------------------------------------------------------------------

/// ServiceAccount `restricted` in `home`, which may list/get Deployments
/// and get Secrets there and nowhere else; returns its token.
pub async fn restricted_service_account(home: &TestNs) -> String {
    let ns = &home.name;
    let kube = &home.kube;
    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "restricted"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(kube.clone(), ns)
        .create(&pp, &sa)
        .await
        .expect("create ServiceAccount");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "restricted"},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "list"]},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        ],
    }))
    .expect("role");
    Api::<Role>::namespaced(kube.clone(), ns)
        .create(&pp, &role)
        .await
        .expect("create Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "restricted"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "restricted"},
        "subjects": [{"kind": "ServiceAccount", "name": "restricted", "namespace": ns}],
    }))
    .expect("rolebinding");
    Api::<RoleBinding>::namespaced(kube.clone(), ns)
        .create(&pp, &binding)
        .await
        .expect("create RoleBinding");
    crate::stack::service_account_token(kube, ns, "restricted").await
}

/// A kubeconfig (the stack's CA, this token) whose server is
/// `https://127.0.0.1:<port>` (the API server, or a proxy in front of it:
/// the serving certificate names 127.0.0.1), written in `dir`; returns its
/// path.
pub fn kubeconfig_via(dir: &Path, port: u16, token: &str) -> String {
    let file = dir.join(format!("kubeconfig-{port}"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: it\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: it\n  user:\n    token: {token}\ncontexts:\n- name: it\n  context:\n    cluster: it\n    user: it\ncurrent-context: it\n",
        STACK.get("KUBE_CA_FILE"),
    );
    std::fs::write(&file, text).expect("write kubeconfig");
    file.display().to_string()
}

/// The [`restricted_service_account`] of `home` in a kubeconfig written in
/// `dir`, once RBAC lets it list Deployments in `home` (the authorizer
/// learns of a new Role through an informer) and still forbids it in
/// `default`. Returns the kubeconfig's path and the token.
pub async fn restricted_kubeconfig(home: &TestNs, dir: &Path) -> (String, String) {
    let ns = &home.name;
    let token = restricted_service_account(home).await;
    let file = kubeconfig_via(dir, port_of(STACK.get("KUBE_API_URL")), &token);
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&file).expect("read kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
        {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the restricted token cannot list {ns}: {e}"),
        }
    }
    let denied = Api::<Deployment>::namespaced(client, "default")
        .list(&Default::default())
        .await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "the restricted token must be forbidden in default: {denied:?}"
    );
    (file, token)
}

/// A TokenRequest token of vault-sync's own ServiceAccount
/// (`VAULT_SYNC_SA_NAMESPACE`/`VAULT_SYNC_SA_NAME`) in a temp file, for
/// `--vault-jwt-file`.
pub struct JwtFile {
    _dir: tempfile::TempDir,
    /// The file.
    pub path: String,
    /// The token, for the leak guard.
    pub jwt: String,
}

pub async fn tool_jwt_file(ns: &TestNs) -> JwtFile {
    let jwt = crate::stack::service_account_token(
        &ns.kube,
        STACK.get("VAULT_SYNC_SA_NAMESPACE"),
        STACK.get("VAULT_SYNC_SA_NAME"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, &jwt).expect("write jwt");
    JwtFile {
        path: path.display().to_string(),
        _dir: dir,
        jwt,
    }
}

// ---------------------------------------------------------------------------
// `-o json` output
// ---------------------------------------------------------------------------

pub fn changes(out: &CliOutput) -> Vec<Value> {
    let json = out.json();
    assert_eq!(json["format_version"], 1, "{out}");
    json["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes array:\n{out}"))
        .clone()
}

/// display path → action, for every change.
pub fn actions(out: &CliOutput) -> BTreeMap<String, String> {
    changes(out)
        .iter()
        .map(|c| (text(&c["path"]), text(&c["action"])))
        .collect()
}

/// display path → action, for every change but `unchanged` ones.
pub fn pending_actions(out: &CliOutput) -> BTreeMap<String, String> {
    let mut all = actions(out);
    all.retain(|_, action| action != "unchanged");
    all
}

/// (workload, display path) → action, for the changes of namespace `ns`
/// in a `-o json` document (a path may be wanted by several workloads).
pub fn actions_by_workload(json: &Value, ns: &str) -> BTreeMap<(String, String), String> {
    json["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["namespace"] == ns)
        .map(|c| {
            (
                (text(&c["deployment"]), text(&c["path"])),
                text(&c["action"]),
            )
        })
        .collect()
}

/// The `result` of the first change for `path` (display spelling).
pub fn result_of(out: &CliOutput, path: &str) -> Value {
    changes(out)
        .into_iter()
        .find(|c| c["path"] == path)
        .map(|c| c["result"].clone())
        .unwrap_or_else(|| panic!("no change for {path}:\n{out}"))
}

/// A JSON string's text ("" if not a string).
fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The one change for `path` (display spelling, `mount/rel`).
pub fn change(out: &CliOutput, path: &str) -> Value {
    let found: Vec<Value> = changes(out)
        .into_iter()
        .filter(|c| c["path"] == path)
        .collect();
    assert_eq!(found.len(), 1, "expected one change for {path}:\n{out}");
    found.into_iter().next().unwrap_or_default()
}

/// The one change of Deployment `deployment`.
pub fn change_of(out: &CliOutput, deployment: &str) -> Value {
    let found: Vec<Value> = changes(out)
        .into_iter()
        .filter(|c| c["deployment"] == deployment)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one change of Deployment {deployment}:\n{out}"
    );
    found.into_iter().next().unwrap_or_default()
}

/// (path, error_type, message) of failed changes and error actions, then
/// ("", type, message) of run-wide errors.
pub fn failures(out: &CliOutput) -> Vec<(String, String, String)> {
    let json = out.json();
    let mut found: Vec<(String, String, String)> = json["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["result"] == "failed" || c["action"] == "error")
        .map(|c| {
            (
                text(&c["path"]),
                text(&c["error_type"]),
                text(&c["message"]),
            )
        })
        .collect();
    found.extend(
        json["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (String::new(), text(&e["error_type"]), text(&e["message"]))),
    );
    found
}

pub fn assert_no_panic(out: &CliOutput) {
    assert!(
        !out.stderr.contains("panicked"),
        "vault-sync panicked:\n{out}"
    );
}
