//! Test fixtures shared by the fault suites (`faults`, `vault_connect`) and
//! the output helpers several suites use:
//!
//! - [`BaoHttp`]: the raw HTTP API of any Vault (the harness's `VaultHttp`
//!   is bound to the shared server), and [`PathState`], what a KV v2 path
//!   holds;
//! - [`BaoProcess`]: a private `bao server` process in a temp dir, with its
//!   own file audit log, killed (SIGKILL) on drop;
//! - [`TcpProxy`]: bytes between vault-sync and a server, with delays and
//!   faults tripped by traffic;
//! - a restricted ServiceAccount, vault-sync's own ServiceAccount token in a
//!   file, and helpers reading `-o json` output.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    CliOutput, STACK, TestNs, index_lines, init_crypto, leaves_under, status_and_body, string_map,
};

type Data = BTreeMap<String, String>;

// ---------------------------------------------------------------------------
// Raw Vault HTTP
// ---------------------------------------------------------------------------

/// Raw HTTP API of one Vault with one token (none if empty), optionally in
/// a Vault namespace.
#[derive(Clone)]
pub struct BaoHttp {
    http: reqwest::Client,
    addr: String,
    token: String,
    namespace: Option<String>,
}

/// What a KV v2 path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Absent,
    /// custom_metadata but no version: a create interrupted between the
    /// marker and the content (vault-sync writes content before the marker,
    /// so it never leaves a path like this).
    MarkerOnly(Data),
    Written {
        data: Data,
        version: u64,
        md: Data,
    },
    /// The current version carries a deletion_time.
    SoftDeleted {
        version: u64,
        md: Data,
    },
}

impl BaoHttp {
    /// `ca`: trust only this CA (PEM file); `timeout`: per request.
    pub fn new(addr: &str, token: &str, ca: Option<&Path>, timeout: Duration) -> Self {
        init_crypto();
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
            let cert = reqwest::Certificate::from_pem(&pem).expect("CA PEM");
            builder = builder.tls_certs_only([cert]);
        }
        Self {
            http: builder.build().expect("reqwest client"),
            addr: addr.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            namespace: None,
        }
    }

    /// The shared OpenBao with its root token.
    pub fn shared() -> Self {
        Self::new(
            STACK.vault_addr(),
            STACK.vault_token(),
            None,
            Duration::from_secs(15),
        )
    }

    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self {
            namespace: Some(namespace.to_owned()),
            ..self.clone()
        }
    }

    /// One request; `(0, error text)` when the server cannot be reached.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self.http.request(method, &url);
        if !self.token.is_empty() {
            req = req.header("X-Vault-Token", &self.token);
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        match req.send().await {
            Err(e) => (0, Value::String(e.to_string())),
            Ok(resp) => status_and_body(resp).await,
        }
    }

    /// A request that must succeed (2xx); returns the body.
    pub async fn must(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let (status, reply) = self.request(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} on {}: {status} {reply}",
            self.addr
        );
        reply
    }

    pub async fn state(&self, mount: &str, rel: &str) -> PathState {
        let (status, body) = self
            .request(Method::GET, &format!("{mount}/metadata/{rel}"), None)
            .await;
        match status {
            404 => return PathState::Absent,
            200 => {}
            s => panic!("metadata {mount}/{rel}: {s} {body}"),
        }
        let md = string_map(&body["data"]["custom_metadata"]);
        let current = body["data"]["current_version"].as_u64().unwrap_or(0);
        if current == 0 {
            return PathState::MarkerOnly(md);
        }
        let deleted = body["data"]["versions"][current.to_string()]["deletion_time"]
            .as_str()
            .is_some_and(|t| !t.is_empty());
        if deleted {
            return PathState::SoftDeleted {
                version: current,
                md,
            };
        }
        let (status, body) = self
            .request(Method::GET, &format!("{mount}/data/{rel}"), None)
            .await;
        assert_eq!(status, 200, "data {mount}/{rel}: {body}");
        PathState::Written {
            data: string_map(&body["data"]["data"]),
            version: body["data"]["metadata"]["version"].as_u64().unwrap_or(0),
            md: string_map(&body["data"]["metadata"]["custom_metadata"]),
        }
    }

    /// A new version without check-and-set (a foreign writer); returns it.
    pub async fn write(&self, mount: &str, rel: &str, data: &Data) -> u64 {
        let body = self
            .must(
                Method::POST,
                &format!("{mount}/data/{rel}"),
                Some(&json!({ "data": data })),
            )
            .await;
        body["data"]["version"].as_u64().expect("version")
    }

    /// The display paths the index `<mount>/vault-sync/index/<cluster>`
    /// lists, in stored order, duplicates kept; empty if there is none.
    pub async fn index(&self, mount: &str, cluster: &str) -> Vec<String> {
        let (status, body) = self
            .request(
                Method::GET,
                &format!("{mount}/data/vault-sync/index/{cluster}"),
                None,
            )
            .await;
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "index {mount} {cluster}: {body}");
        let data = string_map(&body["data"]["data"]);
        assert_eq!(
            data.get("format").map(String::as_str),
            Some("vault-sync-index/v1"),
            "{data:?}"
        );
        index_lines(&data)
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    /// `LIST <path>`: the keys (sub-folders end with '/'); empty if none.
    async fn list(&self, path: &str) -> Vec<String> {
        let list = Method::from_bytes(b"LIST").expect("LIST");
        let (status, body) = self.request(list, path, None).await;
        if status != 200 {
            return Vec::new();
        }
        body["data"]["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every leaf under `<mount>/metadata/<folder>`.
    pub async fn leaves(&self, mount: &str, folder: &str) -> Vec<String> {
        leaves_under(folder, |dir| {
            let path = format!("{mount}/metadata/{dir}");
            async move { self.list(&path).await }
        })
        .await
    }
}

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

    /// Every complete entry of the audit log (a line cut by SIGKILL is
    /// skipped).
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path("audit.log")).unwrap_or_default();
        let end = text.rfind('\n').map_or(0, |i| i + 1);
        text[..end]
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
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

/// Request entries with one of `ops` on paths containing `needle`, as
/// (operation, path).
pub fn audit_requests(entries: &[Value], ops: &[&str], needle: &str) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|e| e["type"] == "request")
        .map(|e| {
            (
                e["request"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["request"]["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(op, path)| ops.contains(&op.as_str()) && path.contains(needle))
        .collect()
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
        .map(|c| {
            (
                c["path"].as_str().unwrap_or_default().to_owned(),
                c["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
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

/// (path, error_type, message) of failed changes and error actions, then
/// ("", type, message) of run-wide errors.
pub fn failures(out: &CliOutput) -> Vec<(String, String, String)> {
    let json = out.json();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
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
