//! Faults, through the built binary against the real stack: whatever
//! breaks mid-run, vault-sync deletes nothing it cannot justify, leaves no
//! path half-written, says what happened, and the next run converges.
//!
//! 1. The Kubernetes API server lost (gone for good, one connection dropped,
//!    or stalled) while vault-sync lists Deployments.
//! 2. OpenBao killed (SIGKILL) or sealed in the middle of `run`, and sealed
//!    before it.
//! 3. Transient 503s within the retry window, and a 503 that hides a write
//!    which did reach Vault.
//! 4. Two concurrent runs on the same data, plus a foreign writer between a
//!    run's read and its write.
//! 5. Deletion safety: a namespace the token cannot list, a failed
//!    ownership re-check, a lost index, `prune --rebuild-index`.
//! 6. Vault gone before a run, or cut off mid-run (also between a create's
//!    content and its marker), within a bound.
//! 7. SIGTERM mid-run: the run stops, prints its summary, pushes its
//!    metrics as a failed run, deletes nothing and exits 143.
//!
//! Every fault case asserts the exact outcome: exit 1, no deletion, no
//! partially written path (a path holds its old or its new content, never a
//! mix of keys), and the next run converges (exit 0, then `plan` exits 0).
//!
//! The shared OpenBao and API server are never stopped or sealed:
//! - [`DurableBao`]: a private OpenBao (not `-dev`: raft storage, one unseal
//!   key) that survives SIGKILL and can be sealed, with its own audit log;
//! - [`PrivateBao`]: a private dev-mode OpenBao, for Vault taken away;
//! - [`TcpProxy`]: bytes between vault-sync and a server, with delays and
//!   faults tripped by traffic (TLS to the API server passes through; its
//!   certificate names 127.0.0.1, so a kubeconfig pointing at the proxy
//!   verifies);
//! - [`HttpFaultProxy`]: one HTTP/1.1 request per connection in front of the
//!   shared OpenBao, answering 503 instead of (or after) forwarding chosen
//!   requests, and holding chosen requests at a gate.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt as _;
use kube::api::{Patch, PatchParams};
use reqwest::Method;
use serde_json::json;

use crate::audit::{AuditEntries, AuditMark, audit_mark, only_deletes};
use crate::fixtures::{
    BaoProcess, ClusterNs, Fault, PrivateBao, TcpProxy, assert_all_written, assert_marker,
    assert_no_panic, assert_whole_or_absent, changes, deref_to_server, failures, free_port,
    join_acceptor, kubeconfig_via, many_paths, metrics_file, one_path, pending_actions, port_of,
    private_env, restricted_kubeconfig, result_of, spawn_acceptor,
};
use crate::harness::annotation::PATH;
use crate::harness::{
    CliOutput, PodRefs, STACK, TestNs, assert_no_leak, now_secs, random_hex, run_cli,
    run_cli_within,
};
use crate::metrics::PushGroup;
use crate::vault::{Data, Kv2Secret, PathState, VaultHttp};

// ---------------------------------------------------------------------------
// A private OpenBao that survives SIGKILL and can be sealed
// ---------------------------------------------------------------------------

/// Per-request timeout of the raw HTTP clients here.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// `bao server` (not `-dev`) with raft storage in a temp dir, initialised
/// with one unseal key, KV v2 at `secret/`, and a file audit log. Killing it
/// and starting it again on the same storage keeps every committed write.
/// Killed (SIGKILL) on drop.
struct DurableBao {
    server: BaoProcess,
    root_token: String,
    unseal_key: String,
}

deref_to_server!(DurableBao);

impl DurableBao {
    async fn start() -> Self {
        let server = BaoProcess::new("http");
        let port = server.port;
        let cluster_port = free_port();
        let raft = server.path("raft");
        std::fs::create_dir_all(&raft).expect("raft dir");
        let audit = server.path("audit.log");
        // performance_multiplier = 1: a one-node cluster elects itself in
        // about a second instead of five.
        let config = format!(
            "storage \"raft\" {{\n  path = {raft:?}\n  node_id = \"n1\"\n  performance_multiplier = 1\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
             audit \"file\" \"to-file\" {{\n  options {{\n    file_path = {audit:?}\n  }}\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster_port}\"\n",
            raft = raft.display().to_string(),
            audit = audit.display().to_string(),
        );
        std::fs::write(server.path("bao.hcl"), config).expect("write bao.hcl");
        let mut bao = Self {
            server,
            root_token: String::new(),
            unseal_key: String::new(),
        };
        bao.spawn_server();
        bao.wait_listening().await;
        let init = bao
            .anon()
            .must(
                Method::PUT,
                "sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await;
        bao.unseal_key = init["keys"][0].as_str().expect("unseal key").to_owned();
        bao.root_token = init["root_token"].as_str().expect("root token").to_owned();
        bao.unseal().await;
        bao.root()
            .must(
                Method::POST,
                "sys/mounts/secret",
                Some(&json!({"type": "kv", "options": {"version": "2"}})),
            )
            .await;
        bao
    }

    fn spawn_server(&mut self) {
        let config = format!("-config={}", self.path("bao.hcl").display());
        self.spawn(&[config]);
    }

    /// Until the listener answers at all (sealed or not).
    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let anon = self.anon();
        loop {
            self.check_alive("");
            if anon.request(Method::GET, "sys/health", None).await.0 != 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private bao not listening after 30s:\n{}",
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Unseals and waits until this node is the active one.
    async fn unseal(&mut self) {
        let anon = self.anon();
        anon.must(
            Method::PUT,
            "sys/unseal",
            Some(&json!({ "key": self.unseal_key })),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.check_alive("");
            if anon.request(Method::GET, "sys/health", None).await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private bao not active 60s after unseal:\n{}",
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn seal(&self) {
        self.root().must(Method::PUT, "sys/seal", None).await;
    }

    /// The same server again, on the same storage, unsealed.
    async fn restart(&mut self) {
        self.kill();
        self.spawn_server();
        self.wait_listening().await;
        self.unseal().await;
    }

    fn anon(&self) -> VaultHttp {
        VaultHttp::new(&self.addr, "", None, HTTP_TIMEOUT)
    }

    fn root(&self) -> VaultHttp {
        VaultHttp::new(&self.addr, &self.root_token, None, HTTP_TIMEOUT)
    }
}

// ---------------------------------------------------------------------------
// An HTTP/1.1 proxy that answers 503 and holds requests at a gate
// ---------------------------------------------------------------------------

/// What an [`HttpFaultProxy`] rule does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpFault {
    /// Answer `503 {"errors":["injected"]}` without forwarding.
    Refuse,
    /// Forward, then answer 503 instead of Vault's answer (a load balancer
    /// timing out after the write reached Vault).
    LoseAnswer,
    /// Close the connection without an answer (not forwarded).
    Reset,
    /// Forward as usual (to let the first `n` matching requests through
    /// before a later rule applies).
    Pass,
}

struct Rule {
    /// Start of the request line, e.g. `POST /v1/secret/data/`.
    prefix: String,
    remaining: usize,
    fault: HttpFault,
}

#[derive(Default)]
struct Gate {
    prefix: Option<String>,
    held: usize,
    open: bool,
}

#[derive(Default)]
struct HttpState {
    stop: AtomicBool,
    rules: Mutex<Vec<Rule>>,
    gate: Mutex<Gate>,
    gate_cv: Condvar,
    /// (request line, what happened).
    log: Mutex<Vec<(String, &'static str)>>,
}

/// One request per connection: reads it, and answers 503 (rules), holds it
/// (gate), or forwards it with `Connection: close` so that Vault closes the
/// connection after its answer and the next request comes on a new one.
struct HttpFaultProxy {
    port: u16,
    state: Arc<HttpState>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpFaultProxy {
    /// In front of the shared OpenBao.
    fn shared() -> Self {
        Self::start(port_of(STACK.vault_addr()))
    }

    fn start(upstream_port: u16) -> Self {
        let state = Arc::new(HttpState::default());
        let stopped = {
            let state = state.clone();
            move || state.stop.load(Ordering::SeqCst)
        };
        let serving = state.clone();
        let (port, acceptor) = spawn_acceptor(stopped, move |client| {
            let state = serving.clone();
            std::thread::spawn(move || serve_one(client, upstream_port, &state));
        });
        Self {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `n` requests whose line starts with `prefix` get `fault`
    /// (rules are tried in the order they were added).
    fn rule(&self, prefix: &str, n: usize, fault: HttpFault) {
        self.state.rules.lock().expect("rules").push(Rule {
            prefix: prefix.to_owned(),
            remaining: n,
            fault,
        });
    }

    /// Requests whose line starts with `prefix` wait until [`Self::open`].
    fn gate(&self, prefix: &str) {
        let mut gate = self.state.gate.lock().expect("gate");
        gate.prefix = Some(prefix.to_owned());
        gate.open = false;
    }

    fn held(&self) -> usize {
        self.state.gate.lock().expect("gate").held
    }

    fn open(&self) {
        self.state.gate.lock().expect("gate").open = true;
        self.state.gate_cv.notify_all();
    }

    /// Request lines that got an injected 503 (refused or answer lost).
    fn injected(&self) -> Vec<(String, &'static str)> {
        self.state
            .log
            .lock()
            .expect("log")
            .iter()
            .filter(|(_, what)| *what != "forwarded")
            .cloned()
            .collect()
    }

    fn rules_left(&self) -> usize {
        self.state
            .rules
            .lock()
            .expect("rules")
            .iter()
            .map(|r| r.remaining)
            .sum()
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.open();
        join_acceptor(self.port, self.acceptor.take());
    }
}

/// Reads one request (headers and a Content-Length body).
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let headers = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}

fn answer_503(client: &mut TcpStream) {
    let body = r#"{"errors":["injected"]}"#;
    let _ = write!(
        client,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
}

fn serve_one(mut client: TcpStream, upstream_port: u16, state: &HttpState) {
    let Some(request) = read_request(&mut client) else {
        return;
    };
    let line_end = request
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(request.len());
    let line = String::from_utf8_lossy(&request[..line_end]).into_owned();

    {
        let mut gate = state.gate.lock().expect("gate");
        if gate.prefix.as_deref().is_some_and(|p| line.starts_with(p)) {
            gate.held += 1;
            while !gate.open && !state.stop.load(Ordering::SeqCst) {
                gate = state
                    .gate_cv
                    .wait_timeout(gate, Duration::from_millis(200))
                    .expect("gate wait")
                    .0;
            }
        }
    }
    let fault = {
        let mut rules = state.rules.lock().expect("rules");
        rules
            .iter_mut()
            .find(|r| r.remaining > 0 && line.starts_with(&r.prefix))
            .map(|r| {
                r.remaining -= 1;
                r.fault
            })
    };
    let what = match fault {
        Some(HttpFault::Refuse) => "refused",
        Some(HttpFault::LoseAnswer) => "answer lost",
        Some(HttpFault::Reset) => "reset",
        Some(HttpFault::Pass) | None => "forwarded",
    };
    state.log.lock().expect("log").push((line, what));
    match fault {
        Some(HttpFault::Refuse) => {
            answer_503(&mut client);
            return;
        }
        Some(HttpFault::Reset) => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        _ => {}
    }

    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut forwarded = request[..line_end + 2].to_vec();
    forwarded.extend_from_slice(b"Connection: close\r\n");
    forwarded.extend_from_slice(&request[line_end + 2..]);
    if upstream.write_all(&forwarded).is_err() {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if fault == Some(HttpFault::LoseAnswer) {
        let mut sink = Vec::new();
        let _ = upstream.read_to_end(&mut sink);
        answer_503(&mut client);
        return;
    }
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Where a test's Deployments write: under `secret/it/<ns>/` (cluster
/// "default"), or with `--cluster-name <ns>` under `secret/clusters/<ns>/`.
#[derive(Clone)]
struct Layout {
    ns: String,
    cluster: Option<String>,
}

impl Layout {
    /// The folder of every path, `it/<ns>` or `clusters/<ns>`.
    fn prefix(&self) -> String {
        self.rel("", "").trim_end_matches('/').to_owned()
    }

    fn plain(ns: &TestNs) -> Self {
        Self {
            ns: ns.name.clone(),
            cluster: None,
        }
    }

    fn clustered(ns: &TestNs) -> Self {
        Self {
            ns: ns.name.clone(),
            cluster: Some(ns.name.clone()),
        }
    }

    /// The `vault-sync.io/path` annotation of a Deployment.
    fn annotation(&self, deployment: &str) -> String {
        match &self.cluster {
            None => format!("secret/it/{}/{deployment}", self.ns),
            Some(_) => format!("secret/{deployment}"),
        }
    }

    /// Path inside `secret/` where vault-sync writes a Secret of it.
    fn rel(&self, deployment: &str, secret: &str) -> String {
        match &self.cluster {
            None => format!("it/{}/{deployment}/{secret}", self.ns),
            Some(c) => format!("clusters/{c}/{deployment}/{secret}"),
        }
    }

    fn display(&self, deployment: &str, secret: &str) -> String {
        format!("secret/{}", self.rel(deployment, secret))
    }

    fn owner(&self, deployment: &str) -> String {
        format!(
            "{}/{}/{deployment}",
            self.cluster.as_deref().unwrap_or("default"),
            self.ns
        )
    }

    /// What every Vault API path of this test contains.
    fn needle(&self) -> String {
        format!("secret/data/{}", self.rel("", "").trim_end_matches('/'))
    }
}

/// One seeded path: its Deployment and Secret, and the content it must hold.
#[derive(Debug, Clone)]
struct Seeded {
    deployment: String,
    secret: String,
    data: Data,
}

/// Each of `deployments` auto-discovering `per` Secrets `<deployment>-<j>`
/// with keys `a` and `b`. Returns rel path → seeded.
async fn seed(
    ns: &TestNs,
    layout: &Layout,
    deployments: &[&str],
    per: usize,
) -> BTreeMap<String, Seeded> {
    let mut out = BTreeMap::new();
    let mut refs_of = Vec::new();
    for deployment in deployments {
        let mut refs = PodRefs::new();
        for j in 0..per {
            let secret = format!("{deployment}-{j:02}");
            refs = refs.env_from(&secret);
            let data = Data::from([
                ("a".to_owned(), ns.value(&format!("{secret}-a"))),
                ("b".to_owned(), ns.value(&format!("{secret}-b"))),
            ]);
            out.insert(
                layout.rel(deployment, &secret),
                Seeded {
                    deployment: (*deployment).to_owned(),
                    secret,
                    data,
                },
            );
        }
        refs_of.push((*deployment, refs));
    }
    futures::stream::iter(out.values())
        .map(|s| async move {
            let pairs: Vec<(&str, &str)> = s
                .data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            ns.secret(&s.secret, &pairs).await;
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    for (deployment, refs) in refs_of {
        ns.deployment(deployment, &[(PATH, &layout.annotation(deployment))], &refs)
            .await;
    }
    out
}

/// Replaces a Secret's content `{a, b}` by `{a', c}`: a different key set,
/// so that a path merged from old and new content cannot go unnoticed.
/// Returns the new content.
async fn rotate(ns: &TestNs, secret: &str) -> Data {
    let new = Data::from([
        ("a".to_owned(), ns.value(&format!("{secret}-a2"))),
        ("c".to_owned(), ns.value(&format!("{secret}-c2"))),
    ]);
    let b64 = base64::engine::general_purpose::STANDARD;
    ns.secrets_api()
        .patch(
            secret,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {
                "a": b64.encode(&new["a"]),
                "b": null,
                "c": b64.encode(&new["c"]),
            }})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch Secret {}/{secret}: {e}", ns.name));
    new
}

/// Rotates every seeded Secret; returns rel path → new content.
async fn rotate_all(ns: &TestNs, seeded: &BTreeMap<String, Seeded>) -> BTreeMap<String, Data> {
    futures::stream::iter(seeded)
        .map(|(rel, s)| async move { (rel.clone(), rotate(ns, &s.secret).await) })
        .buffer_unordered(8)
        .collect()
        .await
}

async fn delete_deployment(ns: &TestNs, name: &str) {
    ns.delete_deployment(name).await;
}

/// Exactly this content at this version, with the marker of `owner`.
async fn assert_holds(bao: &VaultHttp, rel: &str, data: &Data, version: u64, owner: &str) {
    match bao.state("secret", rel).await {
        PathState::Written(Kv2Secret {
            data: got,
            version: v,
            custom_metadata: md,
        }) => {
            assert_eq!(&got, data, "{rel}: content");
            assert_eq!(v, version, "{rel}: version");
            assert_marker(&md, owner, rel);
        }
        other => panic!("{rel}: expected version {version} with content, found {other:?}"),
    }
}

/// Every seeded path holds its seeded content at version 1, with the
/// marker of its Deployment.
async fn assert_all_hold(bao: &VaultHttp, layout: &Layout, seeded: &BTreeMap<String, Seeded>) {
    for (rel, s) in seeded {
        assert_holds(bao, rel, &s.data, 1, &layout.owner(&s.deployment)).await;
    }
}

/// `rel` holds one version, soft-deleted.
async fn assert_soft_deleted(bao: &VaultHttp, rel: &str) {
    let state = bao.state("secret", rel).await;
    assert!(
        matches!(state, PathState::SoftDeleted { version: 1, .. }),
        "{rel}: expected version 1 soft-deleted, found {state:?}"
    );
}

/// The paths the index `<mount>/vault-sync/index/<cluster>` lists, sorted
/// (duplicates kept).
async fn sorted_index(bao: &VaultHttp, mount: &str, cluster: &str) -> Vec<String> {
    let mut paths = bao.index_paths(mount, cluster).await;
    paths.sort();
    paths
}

/// How the paths of an interrupted run ended up.
#[derive(Debug, Default)]
struct Outcome {
    old: usize,
    new: usize,
    /// Creates whose content is in but whose marker is not (the content is
    /// written first, then the marker).
    unmarked: usize,
    /// Creates not begun (absent).
    absent: usize,
}

/// Each path holds its old content (version 1) or its new content (one
/// version later), whole; a path with no old content (a create) may also
/// be absent, or hold its new content at version 1 without the marker yet
/// (interrupted between its two writes). Never a mix of keys, never a
/// marker without content, never someone else's marker.
async fn assert_old_or_new(
    bao: &VaultHttp,
    layout: &Layout,
    seeded: &BTreeMap<String, Seeded>,
    old: &BTreeMap<String, Data>,
    new: &BTreeMap<String, Data>,
) -> Outcome {
    let mut outcome = Outcome::default();
    for (rel, s) in seeded {
        let owner = layout.owner(&s.deployment);
        let before = old.get(rel);
        match bao.state("secret", rel).await {
            PathState::Written(Kv2Secret {
                data,
                version,
                custom_metadata: md,
            }) => {
                if Some(&data) == new.get(rel) {
                    let expected = if before.is_some() { 2 } else { 1 };
                    assert_eq!(version, expected, "{rel}: new content at version {version}");
                    if before.is_none() && md.is_empty() {
                        outcome.unmarked += 1;
                        continue;
                    }
                    outcome.new += 1;
                } else if Some(&data) == before {
                    assert_eq!(version, 1, "{rel}: old content at version {version}");
                    outcome.old += 1;
                } else {
                    panic!(
                        "{rel}: partially merged content: keys {:?}, neither the old nor the new content",
                        data.keys().collect::<Vec<_>>()
                    );
                }
                assert_marker(&md, &owner, rel);
            }
            PathState::Absent if before.is_none() => outcome.absent += 1,
            other => panic!("{rel}: {other:?}"),
        }
    }
    outcome
}

// ---------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------

/// The run-wide errors that say the Deployment listing was incomplete.
fn listing_errors(out: &CliOutput) -> Vec<(String, String)> {
    failures(out)
        .into_iter()
        .filter(|(path, _, m)| path.is_empty() && m.starts_with("listing incomplete"))
        .map(|(_, kind, m)| (kind, m))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. The API server lost while listing
// ---------------------------------------------------------------------------

/// Namespaces A and B. In A: Deployment `api` (Secret `db`), a Deployment
/// `old` whose path becomes an orphan, and `filler`, unannotated, whose
/// 48 KB annotation makes A's listing answer large: the first request after
/// that answer is B's listing, and that is where the proxy's fault trips.
/// In B: Deployment `web`. Runs list `-n A -n B`, index in B's index mount.
struct ListingCase {
    a: TestNs,
    b: TestNs,
    la: Layout,
    lb: Layout,
    db_old: Data,
    db_new: Data,
    x: Data,
    web: Data,
    dir: tempfile::TempDir,
}

impl ListingCase {
    async fn new(label: &str) -> Self {
        let a = TestNs::new(&format!("{label}-a")).await;
        let b = TestNs::new(&format!("{label}-b")).await;
        let (la, lb) = (Layout::plain(&a), Layout::plain(&b));
        let db_old = Data::from([("password".to_owned(), a.value("db"))]);
        a.secret("db", &[("password", &db_old["password"])]).await;
        let x = Data::from([("token".to_owned(), a.value("x"))]);
        a.secret("x", &[("token", &x["token"])]).await;
        let web = Data::from([("key".to_owned(), b.value("web"))]);
        b.secret("web", &[("key", &web["key"])]).await;
        a.deployment(
            "api",
            &[(PATH, &la.annotation("api"))],
            &PodRefs::new().env_from("db"),
        )
        .await;
        a.deployment(
            "old",
            &[(PATH, &la.annotation("old"))],
            &PodRefs::new().env_from("x"),
        )
        .await;
        a.deployment(
            "filler",
            &[("filler", &random_hex(48 * 1024))],
            &PodRefs::new(),
        )
        .await;
        b.deployment(
            "web",
            &[(PATH, &lb.annotation("web"))],
            &PodRefs::new().env_from("web"),
        )
        .await;
        let mut case = Self {
            a,
            b,
            la,
            lb,
            db_new: Data::new(),
            db_old,
            x,
            web,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let first = case.run(&[]).await;
        first.assert_code(0);
        assert_eq!(
            pending_actions(&first),
            BTreeMap::from([
                (case.la.display("api", "db"), "create".to_owned()),
                (case.la.display("old", "x"), "create".to_owned()),
                (case.lb.display("web", "web"), "create".to_owned()),
            ]),
            "{first}"
        );
        // `old` goes: its path is an orphan. `db` changes: an update pends.
        delete_deployment(&case.a, "old").await;
        case.db_new = Data::from([("password".to_owned(), case.a.value("db2"))]);
        case.a
            .patch_secret("db", &[("password", &case.db_new["password"])])
            .await;
        case
    }

    /// `<cmd> -o json <args> -n A -n B`.
    async fn cli(&self, cmd: &str, args: &[&str]) -> CliOutput {
        let mut full = vec![cmd, "-o", "json"];
        full.extend_from_slice(args);
        full.extend(["-n", &self.a.name]);
        let out = self.b.cli(&full).await;
        self.a.assert_no_leak(&[&out.stdout, &out.stderr]);
        out
    }

    async fn run(&self, args: &[&str]) -> CliOutput {
        self.cli("run", args).await
    }

    /// A proxy in front of the API server, and an admin kubeconfig through it.
    fn api_proxy(&self) -> (TcpProxy, String) {
        let proxy = TcpProxy::start(port_of(STACK.get("KUBE_API_URL")), Duration::ZERO);
        let kubeconfig = kubeconfig_via(self.dir.path(), proxy.port, STACK.get("KUBE_ADMIN_TOKEN"));
        (proxy, kubeconfig)
    }

    async fn index(&self) -> Vec<String> {
        sorted_index(&VaultHttp::root(), &self.b.index_mount, "default").await
    }

    /// Nothing deleted: `old/x`, `web` as first written, still indexed.
    async fn assert_nothing_deleted(&self) {
        let vault = VaultHttp::root();
        assert_holds(
            &vault,
            &self.la.rel("old", "x"),
            &self.x,
            1,
            &self.la.owner("old"),
        )
        .await;
        assert_holds(
            &vault,
            &self.lb.rel("web", "web"),
            &self.web,
            1,
            &self.lb.owner("web"),
        )
        .await;
        assert_eq!(
            self.index().await,
            [
                self.la.display("api", "db"),
                self.la.display("old", "x"),
                self.lb.display("web", "web"),
            ],
        );
    }

    fn writes(&self, audit: &AuditEntries) -> Vec<(String, String)> {
        audit.writes_by(&self.b.audit_client())
    }
}

/// The API server goes away for good right after answering A's listing
/// (B's listing request is reset, every later connection refused): exit 1
/// with the listing failure reported, nothing written, nothing deleted.
/// Then only B's listing connection is reset and the server answers again
/// at once: A's update is written (A was listed in full), but nothing is
/// deleted, the orphan in A included, because the listing as a whole is
/// incomplete. With the proxy restored the next run deletes the orphan and
/// converges; `plan` then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_lost_while_listing_deletes_nothing_and_next_run_converges() {
    let case = ListingCase::new("flt-list").await;
    let (proxy, kubeconfig) = case.api_proxy();
    let via_proxy = ["--kubeconfig", kubeconfig.as_str()];

    // 1. Gone for good after A's listing.
    proxy.trip_after(32 * 1024, Fault::Down);
    let mark = audit_mark();
    let started = Instant::now();
    let gone = case.run(&via_proxy).await;
    let took_gone = started.elapsed();
    assert_no_panic(&gone);
    assert_eq!(proxy.tripped(), 1, "the fault never tripped:\n{gone}");
    gone.assert_code(1);
    let listing = listing_errors(&gone);
    assert_eq!(listing.len(), 1, "{gone}");
    assert_eq!(listing[0].0, "unreachable", "{gone}");
    assert!(
        listing[0].1.contains("nothing will be deleted")
            && listing[0]
                .1
                .contains("cannot reach the Kubernetes API server"),
        "{gone}"
    );
    // A was listed, but its Secret could not be read: its path is an error.
    assert_eq!(
        pending_actions(&gone),
        BTreeMap::from([(case.la.display("api", "db"), "error".to_owned())]),
        "{gone}"
    );
    assert_eq!(case.writes(&mark.entries()), [], "nothing written");
    assert_holds(
        &VaultHttp::root(),
        &case.la.rel("api", "db"),
        &case.db_old,
        1,
        &case.la.owner("api"),
    )
    .await;
    case.assert_nothing_deleted().await;
    proxy.restore();

    // 2. One lost connection: B's listing.
    proxy.trip_after(32 * 1024, Fault::Drop);
    let mark = audit_mark();
    let dropped = case.run(&via_proxy).await;
    assert_no_panic(&dropped);
    assert_eq!(proxy.tripped(), 2, "the fault never tripped:\n{dropped}");
    dropped.assert_code(1);
    let listing = listing_errors(&dropped);
    assert_eq!(listing.len(), 1, "{dropped}");
    assert_eq!(listing[0].0, "unreachable", "{dropped}");
    assert_eq!(
        pending_actions(&dropped),
        BTreeMap::from([(case.la.display("api", "db"), "update".to_owned())]),
        "only A's update, no delete:\n{dropped}"
    );
    assert_eq!(
        result_of(&dropped, &case.la.display("api", "db")),
        "applied",
        "{dropped}"
    );
    assert_eq!(
        case.writes(&mark.entries()),
        [(
            "update".to_owned(),
            format!("secret/data/{}", case.la.rel("api", "db"))
        )],
        "the update alone"
    );
    assert_holds(
        &VaultHttp::root(),
        &case.la.rel("api", "db"),
        &case.db_new,
        2,
        &case.la.owner("api"),
    )
    .await;
    case.assert_nothing_deleted().await;

    // 3. Restored: the orphan goes, the rest stays.
    proxy.restore();
    let mark = audit_mark();
    let again = case.run(&via_proxy).await;
    again.assert_code(0);
    assert_eq!(
        pending_actions(&again),
        BTreeMap::from([(case.la.display("old", "x"), "delete".to_owned())]),
        "{again}"
    );
    assert_eq!(
        result_of(&again, &case.la.display("old", "x")),
        "applied",
        "{again}"
    );
    assert_eq!(again.json()["summary"]["unchanged"], 2, "{again}");
    assert_eq!(
        case.writes(&mark.entries()),
        [
            (
                "delete".to_owned(),
                format!("secret/data/{}", case.la.rel("old", "x"))
            ),
            (
                "update".to_owned(),
                format!("{}/data/vault-sync/index/default", case.b.index_mount)
            ),
        ]
    );
    assert_soft_deleted(&VaultHttp::root(), &case.la.rel("old", "x")).await;
    assert_eq!(
        case.index().await,
        [case.la.display("api", "db"), case.lb.display("web", "web")]
    );
    let plan = case.cli("plan", &via_proxy).await;
    plan.assert_code(0);
    assert_eq!(proxy.tripped(), 2);
    eprintln!("API server gone after A's listing: the run took {took_gone:?}");
}

/// A listing lost on the network says which namespace's listing failed, as
/// a forbidden one does ("in namespace <ns>"): with `-n A -n B` the user
/// must know that B, not A, is unjudged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_listing_names_its_namespace() {
    let case = ListingCase::new("flt-listns").await;
    let (proxy, kubeconfig) = case.api_proxy();
    proxy.trip_after(32 * 1024, Fault::Drop);
    let out = case.run(&["--kubeconfig", &kubeconfig]).await;
    assert_eq!(proxy.tripped(), 1, "the fault never tripped:\n{out}");
    out.assert_code(1);
    let listing = listing_errors(&out);
    assert_eq!(listing.len(), 1, "{out}");
    assert!(
        listing[0].1.contains(&format!("namespace {}", case.b.name)),
        "{}",
        listing[0].1
    );
}

/// The API server stops answering (connections stay open, nothing comes
/// back) while B is being listed. vault-sync must give up within a bound,
/// exit 1 and delete nothing, not hang: a CronJob run that hangs blocks
/// every later run (`concurrencyPolicy: Forbid`) until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_stalled_while_listing_fails_within_a_bound() {
    let case = ListingCase::new("flt-stall").await;
    let (proxy, kubeconfig) = case.api_proxy();
    proxy.trip_after(32 * 1024, Fault::Stall);
    let args: Vec<String> = [
        "run",
        "-o",
        "json",
        "--kubeconfig",
        kubeconfig.as_str(),
        "-n",
        case.a.name.as_str(),
        "-n",
        case.b.name.as_str(),
        "--kube-timeout",
        "5s",
    ]
    .map(str::to_owned)
    .to_vec();
    let env = [
        ("VAULT_TOKEN".to_owned(), case.b.cli_token.clone()),
        (
            "VAULT_SYNC_INDEX_MOUNT".to_owned(),
            case.b.index_mount.clone(),
        ),
    ];
    let limit = Duration::from_secs(45);
    let mark = audit_mark();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli_within(&args, &env, limit)
    })
    .await
    .expect("runner");
    let took = started.elapsed();
    assert_eq!(proxy.tripped(), 1, "the stall never tripped");
    let out = out.unwrap_or_else(|stderr| {
        panic!("vault-sync still listing {limit:?} after the API server stalled; stderr:\n{stderr}")
    });
    out.assert_code(1);
    assert_eq!(listing_errors(&out).len(), 1, "{out}");
    assert_eq!(
        only_deletes(case.writes(&mark.entries())),
        [],
        "nothing deleted"
    );
    case.assert_nothing_deleted().await;
    proxy.restore();
    eprintln!("API server stalled: the run ended after {took:?}");
}

// ---------------------------------------------------------------------------
// 2. OpenBao killed or sealed during apply
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VaultFault {
    Kill,
    Seal,
}

/// 45 paths written, then every Secret rotated (45 updates, each to a new
/// key set) and 10 new paths added (creates), plus an orphan. `run` goes
/// through a proxy that slows each request a little; once OpenBao's audit
/// log shows 18 content writes of the run, OpenBao is killed (SIGKILL) or
/// sealed. The run exits 1 with connection errors, within a bound; after a
/// restart (same storage) or an unseal, every path holds its old or its new
/// content, never a mix, and the orphan is still there; the next run
/// converges and deletes the orphan; `plan` exits 0.
async fn vault_fault_mid_apply(label: &str, fault: VaultFault) {
    let ns = TestNs::new(label).await;
    let layout = Layout::plain(&ns);
    let mut bao = DurableBao::start().await;
    let proxy = TcpProxy::start(bao.port, Duration::from_millis(10));
    // Owned: the saboteur below needs `bao` mutably while the run uses `env`.
    let (addr, token) = (proxy.addr(), bao.root_token.clone());
    let env = private_env(&addr, &token);
    let timeout = "2s";

    let mut seeded = seed(&ns, &layout, &["d0", "d1", "d2"], 15).await;
    let orphan = Data::from([("k".to_owned(), ns.value("orphan"))]);
    ns.secret("orphan", &[("k", &orphan["k"])]).await;
    ns.deployment(
        "gone",
        &[(PATH, &layout.annotation("gone"))],
        &PodRefs::new().env_from("orphan"),
    )
    .await;
    let first = ns.cli_env(&["run", "-o", "json"], &env).await;
    first.assert_code(0);
    assert_eq!(first.json()["summary"]["create"], 46, "{first}");
    delete_deployment(&ns, "gone").await;
    let old: BTreeMap<String, Data> = seeded
        .iter()
        .map(|(rel, s)| (rel.clone(), s.data.clone()))
        .collect();
    let mut new = rotate_all(&ns, &seeded).await;
    let added = seed(&ns, &layout, &["d0z"], 10).await;
    new.extend(added.iter().map(|(rel, s)| (rel.clone(), s.data.clone())));
    seeded.extend(added);

    // Writes go in path order, four at a time: d0's 15 updates, d0z's 10
    // creates, then d1's and d2's updates. The fault comes once 18 content
    // writes reached OpenBao, among the creates; at most four were in
    // flight, so at least 14 paths were done.
    const TRIGGER: usize = 18;
    let needle = layout.needle();
    let mark = bao.audit_log().mark();
    let (out, after_fault) = {
        // The saboteur needs `bao` mutably (kill) while the run only reads `ns`.
        let bao = &mut bao;
        let saboteur = async || match fault {
            VaultFault::Kill => bao.kill(),
            VaultFault::Seal => bao.seal().await,
        };
        run_until_writes(
            &ns,
            &env,
            ["4", timeout],
            &mark,
            (&needle, TRIGGER),
            5,
            saboteur,
        )
        .await
    };
    assert_no_panic(&out);
    out.assert_code(1);
    let failed = failures(&out);
    assert!(!failed.is_empty(), "{out}");
    let orphan_path = layout.display("gone", "orphan");
    for (path, kind, message) in &failed {
        // The orphan's delete fails at its ownership re-check, reported
        // today as invalid_path: see
        // failed_ownership_recheck_is_reported_as_the_vault_error.
        if *path != orphan_path {
            assert_eq!(kind, "connection_failed", "{path}: {message}\n{out}");
        }
        match fault {
            VaultFault::Kill => assert!(message.contains("cannot reach Vault"), "{message}"),
            VaultFault::Seal => assert!(
                message.contains("cannot reach Vault") || message.contains("sealed"),
                "{message}"
            ),
        }
    }
    if fault == VaultFault::Seal {
        assert!(
            failed.iter().any(|(_, _, m)| m.contains("Vault is sealed")),
            "no failure says the Vault is sealed:\n{out}"
        );
    }
    assert!(
        after_fault < Duration::from_secs(20),
        "the run went on for {after_fault:?} after the {fault:?}"
    );

    match fault {
        VaultFault::Kill => bao.restart().await,
        VaultFault::Seal => bao.unseal().await,
    }
    let root = bao.root();
    let outcome = assert_old_or_new(&root, &layout, &seeded, &old, &new).await;
    let done = outcome.new + outcome.unmarked;
    assert!(
        done > TRIGGER - 4 - 1 && done < seeded.len(),
        "{outcome:?}: the {fault:?} was not mid-run"
    );
    assert_holds(
        &root,
        &layout.rel("gone", "orphan"),
        &orphan,
        1,
        &layout.owner("gone"),
    )
    .await;
    assert_eq!(
        mark.entries().requests_of(&["delete"], &ns.name),
        [],
        "nothing deleted"
    );

    // Converge.
    let mark = bao.audit_log().mark();
    let again = ns.cli_env(&["run", "-o", "json"], &env).await;
    again.assert_code(0);
    let summary = &again.json()["summary"];
    assert_eq!(summary["delete"], 1, "{again}");
    // Old content: updated; absent: created; content without its marker:
    // completed by a metadata-only update (the index knew the create).
    assert_eq!(
        (&summary["update"], &summary["create"]),
        (
            &json!(outcome.old + outcome.unmarked),
            &json!(outcome.absent)
        ),
        "exactly the paths not done yet ({outcome:?}):\n{again}"
    );
    for (rel, s) in &seeded {
        let version = if old.contains_key(rel) { 2 } else { 1 };
        assert_holds(&root, rel, &new[rel], version, &layout.owner(&s.deployment)).await;
    }
    assert_soft_deleted(&root, &layout.rel("gone", "orphan")).await;
    // One content write per path not done before, none for the others.
    let content_writes = mark.entries().requests_of(&["create", "update"], &needle);
    assert_eq!(
        content_writes.len(),
        outcome.old + outcome.absent,
        "{content_writes:?}"
    );
    let plan = ns.cli_env(&["plan", "-o", "json"], &env).await;
    plan.assert_code(0);
    eprintln!(
        "OpenBao {fault:?} mid-run: {outcome:?} of {} paths; the run ended {after_fault:?} after it",
        seeded.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_killed_during_apply_leaves_old_or_new_content_and_next_run_converges() {
    vault_fault_mid_apply("flt-kill", VaultFault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_sealed_during_apply_leaves_old_or_new_content_and_next_run_converges() {
    vault_fault_mid_apply("flt-sealmid", VaultFault::Seal).await;
}

/// OpenBao sealed before the run: exit 1 within about --vault-timeout, every
/// failure says Vault is sealed, nothing written or deleted (the pending
/// update and the orphan are untouched); unsealed, the next run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_sealed_before_the_run_fails_fast_and_next_run_converges() {
    let ns = TestNs::new("flt-sealed").await;
    let layout = Layout::plain(&ns);
    let mut bao = DurableBao::start().await;
    // Owned: unsealing needs `bao` mutably while `env` lives.
    let (addr, token) = (bao.addr.clone(), bao.root_token.clone());
    let env = private_env(&addr, &token);
    let seeded = seed(&ns, &layout, &["d0", "d1"], 2).await;
    let first = ns.cli_env(&["run", "-o", "json"], &env).await;
    first.assert_code(0);
    assert_eq!(first.json()["summary"]["create"], 4, "{first}");
    // d1 goes (two orphans); d0's Secrets change (two updates).
    delete_deployment(&ns, "d1").await;
    let mut new = BTreeMap::new();
    for (rel, s) in seeded.iter().filter(|(_, s)| s.deployment == "d0") {
        new.insert(rel.clone(), rotate(&ns, &s.secret).await);
    }

    bao.seal().await;
    let mark = bao.audit_log().mark();
    let started = Instant::now();
    let out = ns
        .cli_env(&["run", "-o", "json", "--vault-timeout", "3s"], &env)
        .await;
    let took = started.elapsed();
    assert_no_panic(&out);
    out.assert_code(1);
    let failed = failures(&out);
    // d0's two paths (the mount lookup) and the index read.
    assert_eq!(failed.len(), 3, "{out}");
    for (path, kind, message) in &failed {
        assert_eq!(kind, "connection_failed", "{path}: {message}");
        assert!(message.contains("Vault is sealed"), "{path}: {message}");
    }
    assert!(
        failed[2].0.is_empty() && failed[2].2.starts_with("cannot read the vault-sync index"),
        "{out}"
    );
    assert!(out.stderr.contains("sealed"), "the log says sealed:\n{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{out}");

    bao.unseal().await;
    let root = bao.root();
    assert_eq!(
        mark.entries()
            .requests_of(&["create", "update", "delete"], &ns.name),
        [],
        "nothing written"
    );
    for (rel, s) in &seeded {
        assert_holds(&root, rel, &s.data, 1, &layout.owner(&s.deployment)).await;
    }

    let again = ns.cli_env(&["run", "-o", "json"], &env).await;
    again.assert_code(0);
    let summary = &again.json()["summary"];
    assert_eq!(
        (&summary["update"], &summary["delete"]),
        (&json!(2), &json!(2)),
        "{again}"
    );
    for (rel, s) in &seeded {
        match new.get(rel) {
            Some(data) => assert_holds(&root, rel, data, 2, &layout.owner(&s.deployment)).await,
            None => assert_soft_deleted(&root, rel).await,
        }
    }
    let plan = ns.cli_env(&["plan", "-o", "json"], &env).await;
    plan.assert_code(0);
    eprintln!("OpenBao sealed before the run: exit 1 after {took:?}");
}

// ---------------------------------------------------------------------------
// 3. 503 then recovery
// ---------------------------------------------------------------------------

/// 503s within the retry window: the first two requests of the run, the
/// first three marker writes, the first five content writes and the first
/// index write are answered 503 by a proxy (never reaching Vault). The run
/// exits 0, every path holds its content, and Vault's audit log shows each
/// path's content and marker written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_503s_are_retried_and_each_path_is_written_once() {
    let ns = TestNs::new("flt-503").await;
    let layout = Layout::plain(&ns);
    let seeded = seed(&ns, &layout, &["d0", "d1", "d2"], 5).await;
    let proxy = HttpFaultProxy::shared();
    let prefix = layout.prefix();
    proxy.rule("", 2, HttpFault::Refuse);
    proxy.rule(
        &format!("POST /v1/secret/metadata/{prefix}/"),
        3,
        HttpFault::Refuse,
    );
    proxy.rule(
        &format!("POST /v1/secret/data/{prefix}/"),
        5,
        HttpFault::Refuse,
    );
    proxy.rule(
        &format!("POST /v1/{}/data/vault-sync/index/", ns.index_mount),
        1,
        HttpFault::Refuse,
    );
    let addr = proxy.addr();
    let env = [("VAULT_ADDR", addr.as_str())];

    let mark = audit_mark();
    let started = Instant::now();
    let run = ns
        .cli_env(&["run", "-o", "json", "--concurrency", "4"], &env)
        .await;
    let took = started.elapsed();
    assert_no_panic(&run);
    run.assert_code(0);
    assert_eq!(run.json()["summary"]["create"], 15, "{run}");
    assert_eq!(proxy.rules_left(), 0, "every 503 was served");
    assert_eq!(proxy.injected().len(), 11, "{:?}", proxy.injected());

    let vault = VaultHttp::root();
    let audit = mark.entries();
    let writes = audit.writes_by(&ns.audit_client());
    for (rel, s) in &seeded {
        assert_holds(&vault, rel, &s.data, 1, &layout.owner(&s.deployment)).await;
        for kind in ["data", "metadata"] {
            let path = format!("secret/{kind}/{rel}");
            let n = writes.iter().filter(|(_, p)| *p == path).count();
            assert_eq!(n, 1, "{path} written {n} times: {writes:?}");
        }
    }
    assert_eq!(
        audit.failed_writes(&ns.name),
        [],
        "no write failed in Vault"
    );
    let index_writes = writes
        .iter()
        .filter(|(_, p)| p.contains("vault-sync/index/"))
        .count();
    assert_eq!(
        index_writes, 2,
        "index content and marker once each: {writes:?}"
    );
    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(0);
    eprintln!("11 injected 503s: the run took {took:?}");
}

/// A 503 that hides a create which did reach Vault (the proxy forwards the
/// first two content writes, then answers 503 instead of Vault): the retry
/// meets check-and-set and finds its own content. The run exits 0, so each
/// path must be complete, content and marker, and `plan` must exit 0; when
/// the Deployment goes, the next run deletes all of its paths.
///
/// Guards against taking the mismatch for a lost race against a twin run
/// and leaving the marker to it: this run *is* the winner, and without its
/// marker the path would be refused deletion ("no vault-sync owner marker")
/// and left in Vault for good once the Deployment is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_to_a_create_still_marks_the_path() {
    let ns = TestNs::new("flt-lost").await;
    let layout = Layout::plain(&ns);
    let seeded = seed(&ns, &layout, &["d0"], 4).await;
    let proxy = HttpFaultProxy::shared();
    let prefix = layout.prefix();
    // The first content write: applied, answer lost; so is its first retry.
    proxy.rule(
        &format!("POST /v1/secret/data/{prefix}/"),
        2,
        HttpFault::LoseAnswer,
    );
    let addr = proxy.addr();
    let run = ns
        .cli_env(
            &["run", "-o", "json", "--concurrency", "1"],
            &[("VAULT_ADDR", &addr)],
        )
        .await;
    assert_no_panic(&run);
    assert_eq!(proxy.rules_left(), 0, "every lost answer was served");
    run.assert_code(0);
    let vault = VaultHttp::root();
    assert_all_hold(&vault, &layout, &seeded).await;
    let plan = ns.cli(&["plan", "-o", "json"]).await;
    plan.assert_code(0);

    delete_deployment(&ns, "d0").await;
    let again = ns.cli(&["run", "-o", "json"]).await;
    again.assert_code(0);
    assert_eq!(again.json()["summary"]["delete"], 4, "{again}");
    for rel in seeded.keys() {
        assert_soft_deleted(&vault, rel).await;
    }
}

/// A 503 that hides the index's first write (applied; the proxy answers
/// 503 instead of Vault): the run exits 0 and the index carries its
/// `managed-by: vault-sync-index` marker, which keeps every Deployment
/// (even with `--adopt`) from claiming the index path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_to_the_index_create_still_marks_the_index() {
    let ns = TestNs::new("flt-lostidx").await;
    let layout = Layout::plain(&ns);
    let seeded = seed(&ns, &layout, &["d0"], 2).await;
    let proxy = HttpFaultProxy::shared();
    proxy.rule(
        &format!("POST /v1/{}/data/vault-sync/index/", ns.index_mount),
        1,
        HttpFault::LoseAnswer,
    );
    let addr = proxy.addr();
    let run = ns
        .cli_env(&["run", "-o", "json"], &[("VAULT_ADDR", &addr)])
        .await;
    assert_no_panic(&run);
    assert_eq!(proxy.rules_left(), 0, "the lost answer was served");
    run.assert_code(0);
    let vault = VaultHttp::root();
    assert_all_hold(&vault, &layout, &seeded).await;
    let index = sorted_index(&vault, &ns.index_mount, "default").await;
    let expected: Vec<String> = seeded.keys().map(|r| format!("secret/{r}")).collect();
    assert_eq!(index, expected);
    let md = ns
        .vault
        .kv2_metadata(&ns.index_mount, "vault-sync/index/default")
        .await
        .expect("index metadata");
    assert_eq!(
        md["custom_metadata"]["managed-by"], "vault-sync-index",
        "the index has no marker: {md}"
    );
}

// ---------------------------------------------------------------------------
// 4. Concurrency
// ---------------------------------------------------------------------------

/// The exit code is 0, or 1 with nothing but check-and-set refusals.
fn assert_ok_or_only_cas(out: &CliOutput) -> Vec<String> {
    assert_no_panic(out);
    let failed = failures(out);
    match out.code {
        0 => assert!(failed.is_empty(), "{out}"),
        1 => assert!(
            !failed.is_empty() && failed.iter().all(|(_, kind, _)| kind == "cas_mismatch"),
            "{out}"
        ),
        c => panic!("exit {c}:\n{out}"),
    }
    failed.into_iter().map(|(p, _, _)| p).collect()
}

/// Successful content writes per API path since the mark (audit response
/// entries without an error).
fn successful_writes(audit: &AuditEntries, client: &str, needle: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in &audit.0 {
        if e.kind == "response"
            && e.client == client
            && ["create", "update"].contains(&e.operation.as_str())
            && e.error.is_empty()
            && e.path.contains(needle)
        {
            *out.entry(e.path.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// Two `run`s at once on the same namespace and `--cluster-name` (36 paths):
/// first creating every path, then updating every path while a third writer
/// changes one of them between the runs' reads and their writes (a proxy
/// holds both runs' writes of that path until the foreign version is in).
/// No update is lost: each path gets exactly one new version, the foreign
/// content is not overwritten by the stale runs (both report cas_mismatch
/// for that path and nothing else), the index lists every path exactly once;
/// the next run re-plans and converges with one write, and a further run
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_and_a_foreign_writer_lose_no_update() {
    let ns = TestNs::new("flt-conc").await;
    let layout = Layout::clustered(&ns);
    let cluster = ns.name.clone();
    let seeded = seed(&ns, &layout, &["d0", "d1", "d2"], 12).await;
    let all: Vec<String> = seeded.keys().map(|r| format!("secret/{r}")).collect();
    let vault = VaultHttp::root();
    let client = ns.audit_client();
    let needle = format!("secret/data/clusters/{cluster}/");
    let run_args = ["run", "-o", "json", "--cluster-name", cluster.as_str()];

    // 1. Two runs at once create everything.
    let mark = audit_mark();
    let (r1, r2) = tokio::join!(ns.cli(&run_args), ns.cli(&run_args));
    let failed1 = assert_ok_or_only_cas(&r1);
    let failed2 = assert_ok_or_only_cas(&r2);
    let created = |out: &CliOutput| out.json()["summary"]["create"].as_u64().unwrap_or(0);
    eprintln!(
        "concurrent creates: exits {} and {}, planned creates {} and {}, cas failures {failed1:?} {failed2:?}",
        r1.code,
        r2.code,
        created(&r1),
        created(&r2)
    );
    assert_all_hold(&vault, &layout, &seeded).await;
    let per_path = successful_writes(&mark.entries(), &client, &needle);
    assert_eq!(per_path.len(), seeded.len(), "{per_path:?}");
    assert!(per_path.values().all(|n| *n == 1), "{per_path:?}");
    assert_eq!(
        vault.index_paths(&ns.index_mount, &cluster).await.len(),
        all.len()
    );
    let index = sorted_index(&vault, &ns.index_mount, &cluster).await;
    assert_eq!(index, all, "every path indexed exactly once");

    // 2. Every Secret changes; two runs at once, and a foreign write to X
    //    between their reads and their writes.
    let new = rotate_all(&ns, &seeded).await;
    let x = seeded.keys().next().expect("a path").clone();
    let proxy = HttpFaultProxy::shared();
    proxy.gate(&format!("POST /v1/secret/data/{x} "));
    let addr = proxy.addr();
    let env = [("VAULT_ADDR", addr.as_str())];
    let foreign = Data::from([("foreign".to_owned(), ns.value("foreign"))]);
    let mark = audit_mark();
    let third_writer = async {
        wait_held(&proxy, 2, &format!("both runs' writes of {x}")).await;
        let version = vault
            .kv2_write("secret", &x, &[("foreign", &foreign["foreign"])])
            .await;
        proxy.open();
        version
    };
    let (r1, r2, foreign_version) = tokio::join!(
        ns.cli_env(&run_args, &env),
        ns.cli_env(&run_args, &env),
        third_writer
    );
    assert_eq!(foreign_version, 2);
    for out in [&r1, &r2] {
        assert_no_panic(out);
        out.assert_code(1);
        assert_eq!(
            failures(out)
                .into_iter()
                .map(|(p, kind, _)| (p, kind))
                .collect::<Vec<_>>(),
            [(format!("secret/{x}"), "cas_mismatch".to_owned())],
            "{out}"
        );
        // Each run read X before the foreign write; the other paths it may
        // have found already updated by its twin.
        let summary = &out.json()["summary"];
        let updates = summary["update"].as_u64().unwrap_or(0);
        assert!(updates >= 1, "{out}");
        assert_eq!(
            updates + summary["unchanged"].as_u64().unwrap_or(0),
            36,
            "{out}"
        );
    }
    eprintln!(
        "concurrent updates: planned updates {} and {} (of 36), both exit 1 with one cas_mismatch ({x})",
        r1.json()["summary"]["update"],
        r2.json()["summary"]["update"]
    );
    match vault.state("secret", &x).await {
        PathState::Written(Kv2Secret {
            data,
            version,
            custom_metadata: md,
        }) => {
            assert_eq!(data, foreign, "the foreign write was overwritten");
            assert_eq!(version, 2);
            assert_marker(&md, &layout.owner(&seeded[&x].deployment), &x);
        }
        other => panic!("{x}: {other:?}"),
    }
    for (rel, s) in seeded.iter().filter(|(rel, _)| **rel != x) {
        assert_holds(&vault, rel, &new[rel], 2, &layout.owner(&s.deployment)).await;
    }
    let audit = mark.entries();
    let per_path = successful_writes(&audit, &client, &needle);
    assert_eq!(per_path.len(), seeded.len() - 1, "{per_path:?}");
    assert!(per_path.values().all(|n| *n == 1), "{per_path:?}");
    let refused_x = audit.failed_writes(&format!("secret/data/{x}")).len();
    assert_eq!(refused_x, 2, "both stale writes of {x} refused by CAS");
    let index = sorted_index(&vault, &ns.index_mount, &cluster).await;
    assert_eq!(index, all, "every path indexed exactly once");

    // 3. The next run re-plans: X is ours and differs, so it is updated.
    let mark = audit_mark();
    let again = ns.cli(&run_args).await;
    again.assert_code(0);
    assert_eq!(
        pending_actions(&again),
        BTreeMap::from([(format!("secret/{x}"), "update".to_owned())]),
        "{again}"
    );
    assert_eq!(
        mark.entries().writes_by(&client),
        [("update".to_owned(), format!("secret/data/{x}"))]
    );
    assert_holds(
        &vault,
        &x,
        &new[&x],
        3,
        &layout.owner(&seeded[&x].deployment),
    )
    .await;
    let plan = ns
        .cli(&["plan", "-o", "json", "--cluster-name", cluster.as_str()])
        .await;
    plan.assert_code(0);

    // 4. A further run writes nothing.
    let mark = audit_mark();
    let noop = ns.cli(&run_args).await;
    noop.assert_code(0);
    assert_eq!(mark.entries().writes_by(&client), [], "a no-op run wrote");
    let index = sorted_index(&vault, &ns.index_mount, &cluster).await;
    assert_eq!(index, all);
}

/// Waits until `proxy` holds `n` requests at its gate.
async fn wait_held(proxy: &HttpFaultProxy, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.held() < n {
        assert!(
            Instant::now() < deadline,
            "{what} never arrived ({} held)",
            proxy.held()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second run reads a path another run has just created, between its
/// content and its marker, judged on an index read before that run
/// recorded the path. The order is forced with two proxies: the plan's
/// read of X waits until the run has written X's content and holds its
/// marker write. The plan re-reads the index, finds X recorded for the
/// same Deployment, and plans the marker (an update), not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_caught_before_its_marker_is_no_conflict_for_a_concurrent_run() {
    let ns = TestNs::new("flt-unmarked").await;
    let layout = Layout::clustered(&ns);
    let cluster = ns.name.clone();
    let seeded = seed(&ns, &layout, &["d0"], 3).await;
    let x = seeded.keys().next().expect("a path").clone();

    let plan_proxy = HttpFaultProxy::shared();
    plan_proxy.gate(&format!("GET /v1/secret/data/{x} "));
    let run_proxy = HttpFaultProxy::shared();
    run_proxy.gate(&format!("POST /v1/secret/metadata/{x} "));
    let plan_env = [("VAULT_ADDR", plan_proxy.addr())];
    let run_env = [("VAULT_ADDR", run_proxy.addr())];
    let (plan_env, run_env) = (
        plan_env.each_ref().map(|(k, v)| (*k, v.as_str())),
        run_env.each_ref().map(|(k, v)| (*k, v.as_str())),
    );
    let (plan_args, run_args) = (
        ["plan", "-o", "json", "--cluster-name", cluster.as_str()],
        ["run", "-o", "json", "--cluster-name", cluster.as_str()],
    );

    // The plan reads the index, then waits at X; once it has its answer,
    // the run may write X's marker.
    let plan = async {
        let out = ns.cli_env(&plan_args, &plan_env).await;
        run_proxy.open();
        out
    };
    let run = async {
        wait_held(&plan_proxy, 1, "the plan's read of X").await;
        let run = ns.cli_env(&run_args, &run_env);
        let release_plan = async {
            wait_held(&run_proxy, 1, "the run's marker write of X").await;
            plan_proxy.open();
        };
        tokio::join!(run, release_plan).0
    };
    let (plan, run) = tokio::join!(plan, run);

    assert_no_panic(&plan);
    assert_eq!(failures(&plan), [], "{plan}");
    plan.assert_code(2);
    assert_eq!(
        pending_actions(&plan)
            .get(&format!("secret/{x}"))
            .map(String::as_str),
        Some("update"),
        "X has the run's content and no marker yet: only the marker is pending\n{plan}"
    );
    assert_no_panic(&run);
    run.assert_code(0);

    let vault = VaultHttp::root();
    assert_all_hold(&vault, &layout, &seeded).await;
    let after = ns.cli(&plan_args).await;
    after.assert_code(0);
}

// ---------------------------------------------------------------------------
// 5. Deletion safety
// ---------------------------------------------------------------------------

/// Paths owned by Deployments of namespace `owned`, one of them an orphan;
/// the run's token may list Deployments in `home` only. `-n owned`, no `-n`
/// (all namespaces) and `-n home -n owned`: each listing of `owned` is
/// forbidden, so vault-sync sees an empty (or partial) Deployment list for
/// it, and must delete nothing: exit 1, "listing incomplete" (forbidden),
/// zero writes. With a token that can list `owned`, the orphan goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_namespace_with_owned_paths_deletes_nothing() {
    let home = TestNs::new("flt-403-home").await;
    let owned = TestNs::new("flt-403-owned").await;
    let layout = Layout::plain(&owned);
    let seeded = seed(&owned, &layout, &["d0", "d1"], 2).await;
    let first = owned.cli(&["run", "-o", "json"]).await;
    first.assert_code(0);
    assert_eq!(first.json()["summary"]["create"], 4, "{first}");
    delete_deployment(&owned, "d1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (kubeconfig, token) = restricted_kubeconfig(&home, dir.path()).await;
    let vault = VaultHttp::root();
    let all: Vec<String> = seeded.keys().map(|r| format!("secret/{r}")).collect();
    let env = [
        ("VAULT_TOKEN", owned.cli_token.as_str()),
        ("VAULT_SYNC_INDEX_MOUNT", owned.index_mount.as_str()),
    ];

    let cases: [(&str, Vec<&str>); 3] = [
        (
            "-n owned",
            vec![
                "run",
                "-o",
                "json",
                "--kubeconfig",
                &kubeconfig,
                "-n",
                &owned.name,
            ],
        ),
        (
            "all namespaces",
            vec!["run", "-o", "json", "--kubeconfig", &kubeconfig],
        ),
        (
            "-n home -n owned",
            vec![
                "run",
                "-o",
                "json",
                "--kubeconfig",
                &kubeconfig,
                "-n",
                &home.name,
                "-n",
                &owned.name,
            ],
        ),
    ];
    for (label, args) in &cases {
        let mark = audit_mark();
        let out = run_cli(args, &env);
        crate::harness::assert_no_leak(&[&out.stdout, &out.stderr], &[&token, &owned.cli_token]);
        owned.assert_no_leak(&[&out.stdout, &out.stderr]);
        assert_no_panic(&out);
        out.assert_code(1);
        assert!(changes(&out).is_empty(), "{label}: {out}");
        let listing = listing_errors(&out);
        assert_eq!(listing.len(), 1, "{label}: {out}");
        assert_eq!(listing[0].0, "forbidden", "{label}: {out}");
        let scope = if *label == "all namespaces" {
            "in all namespaces".to_owned()
        } else {
            format!("in namespace {}", owned.name)
        };
        assert!(listing[0].1.contains(&scope), "{label}: {out}");
        assert_eq!(
            mark.entries().writes_by(&owned.audit_client()),
            [],
            "{label}: nothing written or deleted"
        );
        assert_all_hold(&vault, &layout, &seeded).await;
        let index = sorted_index(&vault, &owned.index_mount, "default").await;
        assert_eq!(index, all, "{label}: index unchanged");
    }

    // Control: with the admin kubeconfig the orphans go.
    let run = owned.cli(&["run", "-o", "json"]).await;
    run.assert_code(0);
    assert_eq!(run.json()["summary"]["delete"], 2, "{run}");
    for (rel, s) in &seeded {
        if s.deployment == "d1" {
            assert_soft_deleted(&vault, rel).await;
        } else {
            assert_holds(&vault, rel, &s.data, 1, &layout.owner(&s.deployment)).await;
        }
    }
}

/// The ownership re-check right before a delete cannot reach Vault (a
/// proxy lets the plan's metadata read of the orphan through, then resets
/// the connection of every later one): nothing is deleted, the run exits 1,
/// and the failure says what happened (connection_failed, "cannot reach
/// Vault"), not that the path's ownership changed. The next run deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_ownership_recheck_is_reported_as_the_vault_error() {
    let ns = TestNs::new("flt-recheck").await;
    let layout = Layout::plain(&ns);
    let seeded = seed(&ns, &layout, &["d0"], 1).await;
    let (rel, s) = seeded.iter().next().expect("one path");
    let first = ns.cli(&["run", "-o", "json"]).await;
    first.assert_code(0);
    delete_deployment(&ns, "d0").await;

    let proxy = HttpFaultProxy::shared();
    let md_read = format!("GET /v1/secret/metadata/{rel} ");
    proxy.rule(&md_read, 1, HttpFault::Pass);
    proxy.rule(&md_read, 1000, HttpFault::Reset);
    let addr = proxy.addr();
    let mark = audit_mark();
    let out = ns
        .cli_env(
            &["run", "-o", "json", "--vault-timeout", "1s"],
            &[("VAULT_ADDR", &addr)],
        )
        .await;
    assert_no_panic(&out);
    out.assert_code(1);
    let display = format!("secret/{rel}");
    assert_eq!(
        pending_actions(&out),
        BTreeMap::from([(display.clone(), "delete".to_owned())]),
        "{out}"
    );
    assert_eq!(result_of(&out, &display), "failed", "{out}");
    assert_eq!(
        mark.entries().writes_by(&ns.audit_client()),
        [],
        "nothing deleted"
    );
    assert_holds(&VaultHttp::root(), rel, &s.data, 1, &layout.owner("d0")).await;
    let failed = failures(&out);
    assert_eq!(failed.len(), 1, "{out}");
    let (_, kind, message) = &failed[0];
    assert!(
        message.contains("cannot reach Vault") && !message.contains("ownership changed"),
        "{message}"
    );
    assert_eq!(kind, "connection_failed", "{message}");

    let again = ns.cli(&["run", "-o", "json"]).await;
    again.assert_code(0);
    assert_soft_deleted(&VaultHttp::root(), rel).await;
}

/// The index is lost (its metadata deleted, every version with it) while
/// a Deployment's path has become an orphan. The next run sees desired
/// paths that carry their own Deployment's marker but are missing from a
/// non-existent index: the index was lost. It says so (`index_missing`,
/// naming `prune --rebuild-index`), exits 1, still writes the update of an
/// existing path, creates nothing, deletes nothing and does not recreate
/// the index. `prune --rebuild-index --scan secret/clusters/<cluster>`
/// finds the orphan again from its ownership metadata (refused without
/// `--yes`, but the index is rebuilt); `plan` shows its deletion and the
/// pending create, `prune --yes` deletes it and `run` creates the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_index_deletes_nothing_and_rebuild_index_restores_orphan_tracking() {
    let ns = TestNs::new("flt-noindex").await;
    let layout = Layout::clustered(&ns);
    let cluster = ns.name.clone();
    let vault = VaultHttp::root();
    let mut secrets = BTreeMap::new();
    for name in ["db", "cache", "x", "y"] {
        let data = Data::from([("k".to_owned(), ns.value(name))]);
        ns.secret(name, &[("k", &data["k"])]).await;
        secrets.insert(name, data);
    }
    ns.deployment(
        "app",
        &[(PATH, &layout.annotation("app"))],
        &PodRefs::new().env_from("db").env_from("cache"),
    )
    .await;
    ns.deployment(
        "old",
        &[(PATH, &layout.annotation("old"))],
        &PodRefs::new().env_from("x"),
    )
    .await;
    let cli = |cmd: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![cmd, "-o", "json", "--cluster-name", cluster.as_str()];
        args.extend_from_slice(extra);
        let ns = &ns;
        async move { ns.cli(&args).await }
    };
    let index = || sorted_index(&vault, &ns.index_mount, &cluster);
    let first = cli("run", &[]).await;
    first.assert_code(0);
    assert_eq!(
        index().await,
        [
            layout.display("app", "cache"),
            layout.display("app", "db"),
            layout.display("old", "x"),
        ]
    );

    // The index goes, with every version; `old` goes; `db` changes; `fresh` comes.
    let status = vault
        .request(
            Method::DELETE,
            &format!("{}/metadata/vault-sync/index/{cluster}", ns.index_mount),
            None,
        )
        .await
        .0;
    assert_eq!(status, 204);
    assert_eq!(index().await, Vec::<String>::new());
    delete_deployment(&ns, "old").await;
    let db_new = Data::from([("k".to_owned(), ns.value("db2"))]);
    ns.patch_secret("db", &[("k", &db_new["k"])]).await;
    ns.deployment(
        "fresh",
        &[(PATH, &layout.annotation("fresh"))],
        &PodRefs::new().env_from("y"),
    )
    .await;

    let mark = audit_mark();
    let run = cli("run", &[]).await;
    run.assert_code(1);
    let errors = run.json()["errors"].clone();
    assert!(
        errors
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["error_type"] == "index_missing"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("prune --rebuild-index")))),
        "{run}"
    );
    assert_eq!(
        pending_actions(&run),
        BTreeMap::from([
            (layout.display("app", "db"), "update".to_owned()),
            (layout.display("fresh", "y"), "create".to_owned()),
        ]),
        "{run}"
    );
    let writes = mark.entries().writes_by(&ns.audit_client());
    let written: Vec<&str> = writes.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        written,
        [format!("secret/data/{}", layout.rel("app", "db"))],
        "only the update of an existing path; no create, no delete, no index: {writes:?}"
    );
    assert_holds(
        &vault,
        &layout.rel("old", "x"),
        &secrets["x"],
        1,
        &layout.owner("old"),
    )
    .await;
    assert_holds(
        &vault,
        &layout.rel("app", "db"),
        &db_new,
        2,
        &layout.owner("app"),
    )
    .await;
    assert_eq!(
        index().await,
        Vec::<String>::new(),
        "the index is not recreated"
    );
    let plan = cli("plan", &[]).await;
    plan.assert_code(1);

    // Rebuild: the orphan is found from its marker.
    let scan = format!("secret/clusters/{cluster}");
    let mark = audit_mark();
    let rebuild = ns
        .cli(&[
            "prune",
            "--cluster-name",
            &cluster,
            "--rebuild-index",
            "--scan",
            &scan,
        ])
        .await;
    rebuild.assert_code(1);
    assert!(rebuild.stderr.contains("--yes"), "{rebuild}");
    assert!(
        mark.entries()
            .writes_by(&ns.audit_client())
            .iter()
            .all(|(op, p)| op != "delete" && p.contains("vault-sync/index/")),
        "only the index written"
    );
    assert_eq!(
        index().await,
        [
            layout.display("app", "cache"),
            layout.display("app", "db"),
            layout.display("old", "x"),
        ]
    );
    let plan = cli("plan", &[]).await;
    plan.assert_code(2);
    assert_eq!(
        pending_actions(&plan),
        BTreeMap::from([
            (layout.display("fresh", "y"), "create".to_owned()),
            (layout.display("old", "x"), "delete".to_owned()),
        ]),
        "{plan}"
    );
    let prune = cli("prune", &["--yes"]).await;
    prune.assert_code(0);
    assert_eq!(
        pending_actions(&prune),
        BTreeMap::from([(layout.display("old", "x"), "delete".to_owned())]),
        "{prune}"
    );
    assert_soft_deleted(&vault, &layout.rel("old", "x")).await;
    cli("run", &[]).await.assert_code(0);
    assert_eq!(
        index().await,
        [
            layout.display("app", "cache"),
            layout.display("app", "db"),
            layout.display("fresh", "y"),
        ]
    );
    let plan = cli("plan", &[]).await;
    plan.assert_code(0);
}

// ---------------------------------------------------------------------------
// 6. Vault gone before and during a run
// ---------------------------------------------------------------------------

/// OpenBao stopped before the run (killed: its port refuses), and OpenBao
/// unreachable behind a cut proxy: exit 1 within the bound, "cannot reach
/// Vault", and nothing written (checked on the server behind the proxy once
/// it is restored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_before_the_run_fails_fast_and_writes_nothing() {
    let ns = TestNs::new("vc-down").await;
    one_path(&ns).await;
    let mut dead = PrivateBao::start().await;
    dead.kill();
    let dir = tempfile::tempdir().expect("tempdir");
    let (metrics_path, _) = metrics_file(dir.path());

    let mark = audit_mark();
    let started = Instant::now();
    let run = ns
        .cli_env(
            &[
                "run",
                "-o",
                "json",
                "--vault-timeout",
                "3s",
                "--metrics-file",
                &metrics_path,
            ],
            &[("VAULT_ADDR", &dead.addr)],
        )
        .await;
    let took = started.elapsed();
    assert_no_panic(&run);
    run.assert_code(1);
    // The Deployment's path (its mount lookup) and the index read, nothing else.
    let failed = failures(&run);
    assert_eq!(failed.len(), 2, "{run}");
    assert_eq!(failed[0].0, ns.path("secret", "app/db"), "{run}");
    assert!(
        failed[1].0.is_empty() && failed[1].2.starts_with("cannot read the vault-sync index"),
        "{run}"
    );
    for (path, kind, message) in &failed {
        assert_eq!(kind, "connection_failed", "{path}: {message}");
        assert!(
            message.contains(&format!("cannot reach Vault at {}", dead.addr)),
            "{message}"
        );
    }
    assert_eq!(run.json()["summary"]["error"], 1, "{run}");
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{run}");
    assert!(mark.entries().writes(&ns.audit_needle()).is_empty());
    let (_, metrics) = metrics_file(dir.path());
    assert!(
        metrics
            .contains("vault_sync_last_run_vault_requests{method=\"GET\",status_class=\"error\"}"),
        "{metrics}"
    );
    eprintln!("vault down before the run: {took:?}");

    // Behind a proxy that drops every connection: same outcome, and the
    // server behind it has received nothing.
    let bao = PrivateBao::start().await;
    let proxy = TcpProxy::start(bao.port, Duration::ZERO);
    proxy.cut();
    let started = Instant::now();
    let run = ns
        .cli_env(
            &["run", "-o", "json", "--vault-timeout", "3s"],
            &private_env(&proxy.addr(), "root"),
        )
        .await;
    let took = started.elapsed();
    assert_no_panic(&run);
    run.assert_code(1);
    let failed = failures(&run);
    assert_eq!(failed.len(), 2, "{run}");
    assert!(
        failed
            .iter()
            .all(|(_, kind, m)| kind == "connection_failed" && m.contains("cannot reach Vault")),
        "{run}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{run}");
    proxy.restore();
    assert!(
        bao.root()
            .list_recursive("secret/metadata", "it")
            .await
            .is_empty()
    );
    assert!(
        bao.audit_log()
            .entries()
            .requests_of(&["create", "update", "patch", "delete"], "secret/")
            .is_empty(),
        "nothing written"
    );
}

/// Vault cut off in the middle of a run (a proxy drops every connection
/// once some writes went through): exit 1 with connection errors, no path
/// half-written (each is whole, absent, or marker-only), and once Vault is
/// back a second run converges to exactly the desired content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_cut_mid_run_leaves_nothing_half_written_and_next_run_converges() {
    let ns = TestNs::new("vc-cut").await;
    let bao = PrivateBao::start().await;
    let proxy = TcpProxy::start(bao.port, Duration::from_millis(10));
    let expected = many_paths(&ns, 3, 20).await;
    let addr = proxy.addr();
    let env = private_env(&addr, "root");

    // Cut once ten contents are written: mid-way through 60 paths.
    let (run, after_cut) = run_and_cut(&ns, &bao, &proxy, &env, ["4", "1s"], 10, 5).await;
    assert_no_panic(&run);
    run.assert_code(1);
    let failed = failures(&run);
    assert!(!failed.is_empty(), "{run}");
    for (path, kind, message) in &failed {
        assert_eq!(kind, "connection_failed", "{path}: {message}");
        assert!(message.contains("cannot reach Vault"), "{message}");
    }

    proxy.restore();
    let root = bao.root();
    let (whole, marker_only) = assert_whole_or_absent(&root, &ns, &expected).await;
    let (whole, marker_only) = (whole.len(), marker_only.len());
    // Ten contents had reached Vault's audit log when the cut came; at most
    // four writes were in flight, so at least six completed.
    assert!(
        whole >= 6 && whole < expected.len(),
        "{whole} of {} whole: the cut was not mid-run",
        expected.len()
    );
    let stray: Vec<String> = root
        .list_recursive("secret/metadata", &ns.rel(""))
        .await
        .into_iter()
        .filter(|p| !expected.contains_key(p))
        .collect();
    assert!(stray.is_empty(), "unexpected paths: {stray:?}");

    let again = ns.cli_env(&["run", "-o", "json"], &env).await;
    again.assert_code(0);
    assert_all_written(&root, &ns, &expected).await;
    // Exactly one content version each: nothing was written twice.
    let (converged, _) = assert_whole_or_absent(&root, &ns, &expected).await;
    assert_eq!(converged.len(), expected.len());
    eprintln!(
        "cut mid-run: {whole}/{} whole and {marker_only} marker-only after the cut, the run ended {after_cut:?} after it, {} failures",
        expected.len(),
        failed.len()
    );
}

/// Vault gone exactly between a create's two writes (the proxy cuts instead
/// of forwarding the 8th marker write): that path holds its whole content
/// without the marker, the 7 paths before it are whole, the 10 after it
/// untouched; the next run recognises the unmarked path as its own
/// interrupted create (the index recorded it first) and only adds the
/// marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_cut_between_content_and_marker_is_completed_by_the_next_run() {
    let ns = TestNs::new("vc-marker").await;
    let bao = PrivateBao::start().await;
    let proxy = TcpProxy::start(bao.port, Duration::ZERO);
    let expected = many_paths(&ns, 3, 6).await;
    let addr = proxy.addr();
    let env = private_env(&addr, "root");
    let metadata_prefix = format!("POST /v1/secret/metadata/{}", ns.rel(""));
    proxy.trip_at(&metadata_prefix, 8, Fault::Down);

    let started = Instant::now();
    let run = ns
        .cli_env(
            &[
                "run",
                "-o",
                "json",
                "--concurrency",
                "1",
                "--vault-timeout",
                "1s",
            ],
            &env,
        )
        .await;
    let took = started.elapsed();
    assert_no_panic(&run);
    run.assert_code(1);
    let tripped = proxy
        .tripped_line()
        .unwrap_or_else(|| panic!("the 8th marker write never came:\n{run}"));
    let cut_rel = tripped
        .strip_prefix("POST /v1/secret/metadata/")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("request line {tripped:?}"))
        .to_owned();
    assert!(expected.contains_key(&cut_rel), "{cut_rel}");

    let failed = failures(&run);
    assert_eq!(failed.len(), 11, "the cut path and the 10 after it:\n{run}");
    for (path, kind, message) in &failed {
        assert_eq!(kind, "connection_failed", "{path}: {message}");
        assert!(message.contains("cannot reach Vault"), "{message}");
    }
    assert!(
        failed
            .iter()
            .any(|(p, _, _)| p == &format!("secret/{cut_rel}")),
        "{run}"
    );

    proxy.restore();
    let root = bao.root();
    let (whole, marker_only) = assert_whole_or_absent(&root, &ns, &expected).await;
    assert_eq!(whole.len(), 7, "{whole:?}");
    assert_eq!(marker_only, BTreeSet::from([cut_rel.clone()]));

    let again = ns.cli_env(&["run", "-o", "json"], &env).await;
    again.assert_code(0);
    let summary = &again.json()["summary"];
    assert_eq!(summary["create"], 10, "{again}");
    assert_eq!(
        summary["update"], 1,
        "the interrupted create: marker only\n{again}"
    );
    assert_eq!(summary["unchanged"], 7, "{again}");
    assert_all_written(&root, &ns, &expected).await;
    let (whole, _) = assert_whole_or_absent(&root, &ns, &expected).await;
    assert_eq!(whole.len(), expected.len());
    eprintln!("cut between content and marker at {cut_rel}: run took {took:?}");
}

/// Vault gone mid-run should end the run within a bound close to
/// --vault-timeout, not one --vault-timeout per remaining path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_cut_mid_run_ends_the_run_within_a_bound() {
    let ns = TestNs::new("vc-bound").await;
    let bao = PrivateBao::start().await;
    let proxy = TcpProxy::start(bao.port, Duration::ZERO);
    let expected = many_paths(&ns, 4, 50).await;
    let addr = proxy.addr();
    let env = private_env(&addr, "root");
    let (run, after_cut) = run_and_cut(&ns, &bao, &proxy, &env, ["1", "3s"], 1, 2).await;
    assert_no_panic(&run);
    run.assert_code(1);
    assert!(
        after_cut < Duration::from_secs(30),
        "the run went on for {after_cut:?} after Vault went away"
    );
    proxy.restore();
    assert_whole_or_absent(&bao.root(), &ns, &expected).await;
}

/// `run -o json --concurrency <c> --vault-timeout <t>` (`[c, t]`) with
/// `env`; once the audit log shows `writes` content writes (create or
/// update) since `mark` on paths containing `needle` (polled every
/// `poll_ms`), `fault` strikes. Returns the run and how long it went on
/// after the fault; fails if the run ended before it.
async fn run_until_writes(
    ns: &TestNs,
    env: &[(&str, &str)],
    [concurrency, timeout]: [&str; 2],
    mark: &AuditMark,
    (needle, writes): (&str, usize),
    poll_ms: u64,
    fault: impl AsyncFnOnce(),
) -> (CliOutput, Duration) {
    let done = AtomicBool::new(false);
    let run = async {
        let out = ns
            .cli_env(
                &[
                    "run",
                    "-o",
                    "json",
                    "--concurrency",
                    concurrency,
                    "--vault-timeout",
                    timeout,
                ],
                env,
            )
            .await;
        done.store(true, Ordering::SeqCst);
        out
    };
    let saboteur = async {
        while !done.load(Ordering::SeqCst) {
            let sent = mark.entries().requests_of(&["create", "update"], needle);
            if sent.len() >= writes {
                let at = Instant::now();
                fault().await;
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(poll_ms)).await;
        }
        None
    };
    let (run, fault_at) = tokio::join!(run, saboteur);
    let fault_at = fault_at.unwrap_or_else(|| panic!("the run ended before the fault:\n{run}"));
    (run, fault_at.elapsed())
}

/// [`run_until_writes`] with the proxy in front of `bao` cutting Vault off
/// once `writes` content writes of the test's paths are in its audit log.
async fn run_and_cut(
    ns: &TestNs,
    bao: &PrivateBao,
    proxy: &TcpProxy,
    env: &[(&str, &str)],
    flags: [&str; 2],
    writes: usize,
    poll_ms: u64,
) -> (CliOutput, Duration) {
    let needle = format!("secret/data/{}", ns.rel(""));
    let mark = bao.audit_log().mark();
    let cut = async || proxy.cut();
    run_until_writes(ns, env, flags, &mark, (&needle, writes), poll_ms, cut).await
}

// ---------------------------------------------------------------------------
// 7. SIGTERM mid-run
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_prints_the_summary_pushes_a_failed_run_and_exits_143() {
    let case = ClusterNs::new("int-sigterm").await;
    let ns = &case.ns;
    // An orphan the interrupted run must not delete.
    case.secret("old-sec", &["k"]).await;
    case.auto("old", "secret/old", &["old-sec"], &[]).await;
    case.json("run", &[]).await.assert_code(0);
    case.delete_deployment("old").await;
    let old_before = ns.vault.kv2_read("secret", &case.rel("old/old-sec")).await;
    assert!(old_before.is_some());
    // Twenty new paths, written one request at a time through a slow proxy.
    let names: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for n in &names {
        case.secret(n, &["k"]).await;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    case.auto("app", "secret/app", &refs, &[]).await;

    let proxy = TcpProxy::start(port_of(STACK.vault_addr()), Duration::from_millis(100));
    let group = PushGroup::in_cluster("sigterm", &case.cluster);
    let push_label = group.push_label();
    let started = now_secs();
    let mark = audit_mark();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vault-sync"))
        .env_clear()
        .envs(
            ["PATH", "HOME", "TMPDIR"]
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
        )
        .env("VAULT_ADDR", proxy.addr())
        .env("VAULT_TOKEN", &ns.cli_token)
        .env("VAULT_SYNC_INDEX_MOUNT", &ns.index_mount)
        .env("KUBECONFIG", STACK.kubeconfig())
        .env("NO_COLOR", "1")
        .args([
            "run",
            "--cluster-name",
            &case.cluster,
            "-n",
            &ns.name,
            "--concurrency",
            "1",
            "--pushgateway-url",
            STACK.pushgateway_url(),
            "--push-label",
            &push_label,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vault-sync");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // SIGTERM once the first content write has reached Vault.
    let data_prefix = format!("secret/data/{}", case.rel("app/"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let writing = mark
            .entries()
            .writes_by(&ns.audit_client())
            .iter()
            .any(|(_, p)| p.starts_with(&data_prefix));
        if writing {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before it was interrupted; make it slower");
        }
        assert!(Instant::now() < deadline, "no content write within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(kill.success(), "kill -TERM {pid}");
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vault-sync did not exit within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = signalled.elapsed();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let mut secrets = ns.values();
    secrets.push(ns.cli_token.clone());
    assert_no_leak(&[&stdout, &stderr], &secrets);
    let shown = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert_eq!(
        status.code(),
        Some(143),
        "exit status {status} {elapsed:?} after SIGTERM:\n{shown}"
    );
    assert!(
        stdout.contains("Apply:") || stderr.contains("Apply:"),
        "no summary line:\n{shown}"
    );
    let pushed = group
        .fetch()
        .await
        .0
        .unwrap_or_else(|| panic!("no metrics pushed for test={}:\n{shown}", group.test));
    let last_run = pushed["vault_sync_last_run_timestamp_seconds"]["metrics"][0]["value"]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no last_run_timestamp pushed: {pushed}"));
    assert!(last_run >= started.floor(), "{last_run} < {started}");
    assert!(
        pushed
            .get("vault_sync_last_success_timestamp_seconds")
            .is_none(),
        "an interrupted run pushed a last success: {pushed}"
    );
    assert_eq!(
        only_deletes(mark.entries().writes_by(&ns.audit_client())),
        [],
        "the interrupted run deleted something"
    );
    assert_eq!(
        ns.vault.kv2_read("secret", &case.rel("old/old-sec")).await,
        old_before
    );
    drop(proxy);
}
