//! The cluster as the tests drive it: kubectl (the commands the README
//! shows), Jobs from the CronJob, fixtures of annotated Deployments, the raw
//! audit log, and a watcher of a Pod's cgroup and process.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::NOT_RUNNING;
use crate::harness::{STACK, block_on_own_runtime, kube_client, random_hex};

/// Where the CronJob runs (cronjob/base).
pub const NS: &str = "vault-sync";
/// `VAULT_SYNC_CLUSTER_NAME` of cronjob/base/configmap.yaml: every path is
/// written under `<mount>/clusters/<name>/`.
pub const CLUSTER_NAME: &str = "my-cluster";
/// The base's memory limit (cronjob/base/cronjob.yaml).
pub const MEMORY_LIMIT: u64 = 128 * 1024 * 1024;
/// The base's schedule, restored after the schedule test.
pub const BASE_SCHEDULE: &str = "*/5 * * * *";
/// How long one Job may take, from creation to Complete or Failed.
const JOB_TIMEOUT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------
// Taking turns
// ---------------------------------------------------------------------------

static TURN: LazyLock<tokio::sync::Mutex<bool>> = LazyLock::new(|| tokio::sync::Mutex::new(false));

/// Exclusive use of the CronJob and Vault for one test. The first turn
/// checks that this process is in the cluster's network namespace and
/// applies the overlay, as a user applies cronjob/.
pub async fn turn() -> tokio::sync::MutexGuard<'static, bool> {
    let mut applied = TURN.lock().await;
    if !*applied {
        assert_in_cluster_netns();
        apply_overlay().await;
        *applied = true;
    }
    applied
}

fn assert_in_cluster_netns() {
    let netns = STACK.get("VS_NETNS");
    let theirs = std::fs::metadata(format!("/run/netns/{netns}"))
        .unwrap_or_else(|e| panic!("/run/netns/{netns}: {e}; {NOT_RUNNING}"));
    let ours = std::fs::metadata("/proc/self/ns/net").expect("/proc/self/ns/net");
    assert!(
        theirs.ino() == ours.ino() && theirs.dev() == ours.dev(),
        "this test process is not in network namespace {netns}; {NOT_RUNNING}"
    );
}

/// `kubectl apply -k tests/cluster`, then the CronJob suspended: the tests
/// create its Jobs themselves, and the schedule test lets it fire.
async fn apply_overlay() {
    kubectl(&["apply", "-k", "tests/cluster"]);
    suspend(true);
    // The Pod's projected token volume needs the namespace's root CA
    // ConfigMap, published by the controller manager.
    let deadline = Instant::now() + Duration::from_secs(60);
    while kubectl_try(&["-n", NS, "get", "configmap", "kube-root-ca.crt"]).is_err() {
        assert!(
            Instant::now() < deadline,
            "no kube-root-ca.crt in {NS} after 60s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn suspend(on: bool) {
    patch_cronjob(&json!({"spec": {"suspend": on}}));
}

/// Merge-patches the CronJob under test.
pub fn patch_cronjob(patch: &serde_json::Value) {
    kubectl(&[
        "-n",
        NS,
        "patch",
        "cronjob",
        "vault-sync",
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
}

// ---------------------------------------------------------------------------
// kubectl
// ---------------------------------------------------------------------------

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs kubectl (the cluster's admin kubeconfig) from the repository root.
pub fn kubectl_try(args: &[&str]) -> Result<String, String> {
    tool_try("KUBECTL", args, None)
}

/// Runs helm (the cluster's admin kubeconfig) from the repository root.
pub fn helm_try(args: &[&str]) -> Result<String, String> {
    tool_try("HELM", args, None)
}

pub fn helm(args: &[&str]) -> String {
    helm_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the tool the cluster's env file names (`KUBECTL`, `HELM`) with the
/// admin kubeconfig, `input` on its standard input if any; its stdout, or
/// what it said when it failed.
fn tool_try(tool: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(STACK.get(tool))
        .args(args)
        .env("KUBECONFIG", STACK.kubeconfig())
        .current_dir(repo_root())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} {args:?}: {e}"));
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{tool} {args:?}: writing its stdin: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{tool} {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} {}: {}\n{}{}",
            tool.to_lowercase(),
            args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn kubectl(args: &[&str]) -> String {
    kubectl_try(args).unwrap_or_else(|e| panic!("{e}"))
}

pub fn kubectl_json(args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    let text = kubectl(&full);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON ({e})"))
}

// ---------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------

/// A finished Job and its one Pod.
pub struct JobRun {
    pub name: String,
    pub succeeded: bool,
    pub pod: Value,
    /// `kubectl logs` of the Pod (vault-sync's stdout and stderr).
    pub logs: String,
    /// Seconds since the epoch when the Job was created.
    pub created: f64,
}

impl JobRun {
    /// The vault-sync container's exit code.
    pub fn exit_code(&self) -> i64 {
        self.pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no exit code in {}", self.name, self.pod["status"]))
    }

    /// The log lines that are JSON objects (vault-sync's `--log-format json`).
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }
}

impl std::fmt::Display for JobRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Job {} ({}), pod status {}\n--- logs ---\n{}",
            self.name,
            if self.succeeded { "Complete" } else { "Failed" },
            self.pod["status"],
            self.logs
        )
    }
}

pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// `kubectl create job --from=cronjob/vault-sync <label>-<rand>`, waited for.
pub async fn create_job(label: &str) -> JobRun {
    create_job_from(NS, "vault-sync", label).await
}

/// A Job `<label>-<rand>` from CronJob `cronjob` in namespace `ns` (a Helm
/// release's, say), waited for.
pub async fn create_job_from(ns: &str, cronjob: &str, label: &str) -> JobRun {
    let name = format!("{label}-{}", random_hex(5));
    let created = now_secs();
    kubectl(&[
        "-n",
        ns,
        "create",
        "job",
        &name,
        &format!("--from=cronjob/{cronjob}"),
    ]);
    wait_job_in(ns, &name, created).await
}

/// Like [`create_job`], with `extra` appended to the container's args (a
/// one-off run with other flags, from the CronJob's template).
pub async fn create_job_with_args(label: &str, extra: &[&str]) -> JobRun {
    let name = format!("{label}-{}", random_hex(5));
    let created = now_secs();
    let mut job = kubectl_json(&[
        "-n",
        NS,
        "create",
        "job",
        &name,
        "--from=cronjob/vault-sync",
        "--dry-run=client",
    ]);
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array_mut()
        .expect("container args");
    args.extend(extra.iter().map(|a| json!(a)));
    kubectl_stdin(&["create", "-f", "-"], &job.to_string());
    wait_job(&name, created).await
}

/// kubectl with `input` on its standard input; fails unless it succeeds.
pub fn kubectl_stdin(args: &[&str], input: &str) -> String {
    tool_try("KUBECTL", args, Some(input)).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until Job `name` is Complete or Failed; returns it with its Pod.
pub async fn wait_job(name: &str, created: f64) -> JobRun {
    wait_job_in(NS, name, created).await
}

/// [`wait_job`] for a Job in namespace `ns`.
pub async fn wait_job_in(ns: &str, name: &str, created: f64) -> JobRun {
    let deadline = Instant::now() + JOB_TIMEOUT;
    let succeeded = loop {
        let job = kubectl_json(&["-n", ns, "get", "job", name]);
        let done = job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "True")
            .find_map(|c| match c["type"].as_str() {
                Some("Complete") => Some(true),
                Some("Failed") => Some(false),
                _ => None,
            });
        if let Some(done) = done {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "Job {name} not finished after {JOB_TIMEOUT:?}: {}\npods: {}",
            job["status"],
            kubectl(&[
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                &format!("job-name={name}"),
                "-o",
                "wide"
            ])
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let pods = kubectl_json(&["-n", ns, "get", "pods", "-l", &format!("job-name={name}")]);
    let items = pods["items"].as_array().expect("pod list");
    assert_eq!(
        items.len(),
        1,
        "Job {name}: one Pod expected (backoffLimit 0)"
    );
    let pod = items[0].clone();
    let logs = kubectl(&["-n", ns, "logs", &format!("job/{name}")]);
    JobRun {
        name: name.to_owned(),
        succeeded,
        pod,
        logs,
        created,
    }
}

// ---------------------------------------------------------------------------
// Fixtures: a namespace of annotated Deployments
// ---------------------------------------------------------------------------

/// A namespace of its own (`e2e-<label>-<rand>`) with annotated
/// Deployments, each referencing one Secret (auto-discovery). Deleted on
/// drop (its Vault paths are then the next Job's orphans).
pub struct Apps {
    pub ns: String,
    kube: kube::Client,
    values: Mutex<Vec<String>>,
}

impl Apps {
    pub async fn new(label: &str) -> Self {
        Self::named(format!("e2e-{label}-{}", random_hex(6))).await
    }

    /// In namespace `ns` exactly (a manifest names it), which must not
    /// exist yet.
    pub async fn named(ns: String) -> Self {
        let kube = kube_client().await;
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        Api::<Namespace>::all(kube.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {ns}: {e}"));
        Self {
            ns,
            kube,
            values: Mutex::new(Vec::new()),
        }
    }

    /// The annotation value of Deployment `name`.
    pub fn annotation_path(&self, name: &str) -> String {
        format!("secret/e2e/{}/{name}", self.ns)
    }

    /// The KV v2 path (inside mount `secret`) where Deployment `name`'s
    /// Secret lands: auto-discovery writes `<annotation>/<secret>`, under
    /// the cluster's prefix.
    pub fn rel(&self, name: &str) -> String {
        format!(
            "clusters/{CLUSTER_NAME}/e2e/{}/{name}/{name}-creds",
            self.ns
        )
    }

    pub fn owner(&self, name: &str) -> String {
        format!("{CLUSTER_NAME}/{}/{name}", self.ns)
    }

    /// Every secret value of these fixtures (for the leak guard).
    pub fn values(&self) -> Vec<String> {
        self.values.lock().expect("values").clone()
    }

    /// Deployment `name` annotated for vault-sync (plus `annotations`),
    /// referencing Secret `<name>-creds` whose `password` is a fresh value,
    /// which it returns.
    pub async fn app(&self, name: &str, annotations: &[(&str, &str)]) -> String {
        let value = format!("SeCrEt-{}-{name}", random_hex(12));
        self.values.lock().expect("values").push(value.clone());
        let mut ann: BTreeMap<&str, String> = annotations
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        ann.insert("vault-sync.io/path", self.annotation_path(name));
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-creds"), "namespace": self.ns},
            "type": "Opaque",
            "stringData": {"password": value},
        }))
        .expect("secret");
        // No Deployment controller runs here (up.sh): a Deployment is only
        // vault-sync's input, and no Pod of it is ever started.
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": self.ns, "annotations": ann},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{
                        "name": "app",
                        "image": "busybox",
                        "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                            "name": format!("{name}-creds"), "key": "password"}}}],
                    }]},
                },
            },
        }))
        .expect("deployment");
        Api::<Secret>::namespaced(self.kube.clone(), &self.ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("create Secret {}/{name}-creds: {e}", self.ns));
        Api::<Deployment>::namespaced(self.kube.clone(), &self.ns)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap_or_else(|e| panic!("create Deployment {}/{name}: {e}", self.ns));
        value
    }

    /// `count` Deployments `app-00000`… (8 API requests in flight).
    pub async fn many(&self, count: usize) {
        futures::stream::iter(0..count)
            .map(|i| async move {
                self.app(&format!("app-{i:05}"), &[]).await;
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
    }

    /// Deletes every Deployment of the namespace (their paths become orphans).
    pub async fn delete_all_deployments(&self) {
        Api::<Deployment>::namespaced(self.kube.clone(), &self.ns)
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await
            .unwrap_or_else(|e| panic!("delete Deployments of {}: {e}", self.ns));
    }

    pub async fn delete_deployment(&self, name: &str) {
        Api::<Deployment>::namespaced(self.kube.clone(), &self.ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete Deployment {}/{name}: {e}", self.ns));
    }
}

impl Drop for Apps {
    fn drop(&mut self) {
        if std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
            eprintln!("IT_KEEP=1: keeping namespace {}", self.ns);
            return;
        }
        let ns = self.ns.clone();
        block_on_own_runtime(async move {
            let kube = kube_client().await;
            let _ = Api::<Namespace>::all(kube)
                .delete(&ns, &DeleteParams::default())
                .await;
        });
    }
}

// ---------------------------------------------------------------------------
// Watching a Pod from the node: its cgroup and its process
// ---------------------------------------------------------------------------

/// What the node saw of the vault-sync process of a Pod.
#[derive(Debug, Default, Clone)]
pub struct PodObservation {
    /// `memory.max_usage_in_bytes` of the Pod's cgroup (the container and
    /// the sandbox), last read before it was removed.
    pub pod_peak: u64,
    /// The same of the vault-sync container's own cgroup.
    pub container_peak: u64,
    /// `Uid:` and `Gid:` lines of /proc/PID/status.
    pub uid_line: String,
    pub gid_line: String,
    /// The mount options of the process's root (`/`) mount.
    pub root_mount_options: String,
    pub pod_cgroup: Option<PathBuf>,
}

const MEMORY_CGROUP: &str = "/sys/fs/cgroup/memory/kubepods";

/// Polls the node's memory cgroups (every 5 ms) for a process named
/// `vault-sync` in a Pod's container, and records its identity, root mount
/// and its cgroups' peak memory until told to stop.
pub struct PodWatcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<PodObservation>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodWatcher {
    pub fn start() -> Self {
        assert!(
            Path::new(MEMORY_CGROUP).is_dir(),
            "{MEMORY_CGROUP} missing: the kubelet makes it (cgroup v1, cgroupfs driver)"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(PodObservation::default()));
        let (s, o) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || watch(&s, &o));
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Stops watching (after a last read) and returns what was seen.
    pub fn finish(mut self) -> PodObservation {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("pod watcher");
        }
        self.seen.lock().expect("observation").clone()
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn watch(stop: &AtomicBool, seen: &Mutex<PodObservation>) {
    // (pod cgroup, container cgroup) once the process is found.
    let mut found: Option<(PathBuf, PathBuf)> = None;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if found.is_none() {
            found = find_vault_sync(seen);
        }
        if let Some((pod, container)) = &found {
            let mut o = seen.lock().expect("observation");
            if let Some(v) = read_u64(&pod.join("memory.max_usage_in_bytes")) {
                o.pod_peak = o.pod_peak.max(v);
            }
            if let Some(v) = read_u64(&container.join("memory.max_usage_in_bytes")) {
                o.container_peak = o.container_peak.max(v);
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Looks through kubepods/<qos>/pod*/<container>/cgroup.procs for a process
/// whose comm is `vault-sync`; records what /proc says of it.
fn find_vault_sync(seen: &Mutex<PodObservation>) -> Option<(PathBuf, PathBuf)> {
    let mut pod_dirs = Vec::new();
    for entry in std::fs::read_dir(MEMORY_CGROUP).ok()?.flatten() {
        let p = entry.path();
        if p.file_name()?.to_str()?.starts_with("pod") {
            pod_dirs.push(p);
        } else if p.is_dir() {
            for sub in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if sub
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("pod"))
                {
                    pod_dirs.push(sub.path());
                }
            }
        }
    }
    for pod in pod_dirs {
        for c in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
            let container = c.path();
            if !container.is_dir() {
                continue;
            }
            let procs = std::fs::read_to_string(container.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() != "vault-sync" {
                    continue;
                }
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let line = |key: &str| {
                    status
                        .lines()
                        .find(|l| l.starts_with(key))
                        .unwrap_or_default()
                        .to_owned()
                };
                let mountinfo =
                    std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
                // Fields: id parent major:minor root mount-point options ...
                let root_opts = mountinfo
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .rfind(|f| f.len() > 5 && f[4] == "/")
                    .map(|f| f[5].to_owned())
                    .unwrap_or_default();
                let mut o = seen.lock().expect("observation");
                o.uid_line = line("Uid:");
                o.gid_line = line("Gid:");
                o.root_mount_options = root_opts;
                o.pod_cgroup = Some(pod.clone());
                return Some((pod, container));
            }
        }
    }
    None
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
