//! Least privilege, end to end: vault-sync runs as the ServiceAccount
//! vault-sync/vault-sync with nothing but what it ships with — the RBAC of
//! `cronjob/rbac.yaml` on the Kubernetes side, and on the Vault side the
//! Kubernetes-auth role vault-sync-operator (policy examples/vault-policy.hcl)
//! logged in to with a token of that same ServiceAccount. No admin kubeconfig
//! and no Vault token reach the binary.
//!
//! The policy grants `secret/` only, so the index lives there too
//! (`VAULT_SYNC_INDEX_MOUNT=secret`, not the harness's per-test mount). To
//! keep that index from being shared with other tests, the run uses a
//! cluster name of its own (`VAULT_SYNC_CLUSTER_NAME`, as the CronJob's
//! ConfigMap does): the index is `secret/vault-sync/index/<cluster>` and the
//! paths are written under `secret/clusters/<cluster>/`; [`ClusterPaths`]
//! removes both afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::harness::{
    CliOutput, PodRefs, STACK, TestNs, VaultHttp, assert_no_leak, block_on_own_runtime,
    delete_cluster_paths, init_crypto,
};
use crate::stack::service_account_token;

/// Every workload kind vault-sync reads: `list` and `get` on each, no more.
const WORKLOADS: &[(&str, &str)] = &[
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
];

/// The manifests under test, as shipped.
const MANIFESTS: &[&str] = &["cronjob/base/serviceaccount.yaml", "cronjob/rbac.yaml"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_run_check_prune_with_the_shipped_rbac_and_policy_only() {
    apply_manifests(MANIFESTS);
    let ns = TestNs::new("leastpriv").await;
    let value = ns.value("leastpriv");
    ns.secret("db", &[("password", &value)]).await;
    let path = ns.path("secret", "app");
    let cluster = ClusterPaths::new(&ns.name);
    // Auto-discovery: one path per referenced Secret, `<path>/<secret>`.
    let written_rel = cluster.rel(&ns.rel("app/db"));
    ns.deployment(
        "api",
        &[("vault-sync.io/path", &path)],
        &PodRefs::new().env_from("db"),
    )
    .await;

    let sa = SaCredentials::issue(&ns.kube).await;
    let as_sa = |args: &'static [&'static str]| sa.cli(&ns, &cluster.name, args);

    // check: every step green, RBAC probes included.
    let check = as_sa(&["check", "-o", "json"]).await;
    check.assert_code(0);
    let report = check.json();
    assert_eq!(report["ok"], true, "{check}");
    let checks = report["checks"].as_array().expect("checks array");
    let failed: Vec<_> = checks.iter().filter(|c| c["ok"] != true).collect();
    assert!(failed.is_empty(), "failed checks: {failed:?}\n{check}");
    let mut expected: Vec<String> = WORKLOADS
        .iter()
        .flat_map(|(_, resource)| {
            ["list", "get"]
                .map(|verb| format!("kubernetes: may {verb} {resource} in namespace {}", ns.name))
        })
        .collect();
    expected.extend([
        format!("kubernetes: may get secrets in namespace {}", ns.name),
        "vault: login (kubernetes)".to_owned(),
        "vault: policy capabilities".to_owned(),
    ]);
    for name in expected {
        assert!(
            checks.iter().any(|c| c["name"] == name.as_str()),
            "no check named {name:?}\n{check}"
        );
    }

    // plan before anything is written: changes pending, no errors.
    as_sa(&["plan"]).await.assert_code(2);

    // run: writes the path.
    let run = as_sa(&["run", "-o", "json"]).await;
    run.assert_code(0);
    let written = ns
        .vault
        .kv2_read("secret", &written_rel)
        .await
        .unwrap_or_else(|| panic!("{path} not written at secret/{written_rel}:\n{run}"));
    assert_eq!(written.data.get("password"), Some(&value));

    // plan after run: nothing to do.
    as_sa(&["plan"]).await.assert_code(0);
    // `--read-secrets list` needs `list`, which the shipped RBAC does not
    // grant: the run falls back to GETs, says so, and plans the same.
    let listed = as_sa(&["plan", "--read-secrets", "list"]).await;
    listed.assert_code(0);
    assert!(
        listed.stderr.contains("forbids list secrets")
            && listed.stderr.contains("one GET at a time"),
        "no fallback warning:\n{listed}"
    );
    // `check` probes that grant when the mode asks for it, and says how.
    let check = as_sa(&["check", "-o", "json", "--read-secrets", "list"]).await;
    check.assert_code(1);
    let report = check.json();
    let probe = format!("kubernetes: may list secrets in namespace {}", ns.name);
    let failed = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == probe.as_str()))
        .unwrap_or_else(|| panic!("no check {probe:?}\n{check}"));
    assert_eq!(failed["ok"], false, "{check}");
    assert!(
        failed.to_string().contains("--read-secrets list"),
        "the fix should name the option: {failed}"
    );

    // The owner goes away: confirming that needs `get deployments` (a 404,
    // not a 403), deleting needs the policy's delete grants.
    ns.deployments_api()
        .delete("api", &DeleteParams::default())
        .await
        .expect("delete Deployment");
    let plan = as_sa(&["plan", "-o", "json"]).await;
    plan.assert_code(2);
    assert_eq!(plan.json()["summary"]["delete"], 1, "{plan}");
    as_sa(&["prune", "--yes"]).await.assert_code(0);
    assert!(
        ns.vault.kv2_read("secret", &written_rel).await.is_none(),
        "{path} still readable after prune"
    );
    as_sa(&["plan"]).await.assert_code(0);

    // And nothing more: the ServiceAccount can write nothing in Kubernetes
    // and cannot enumerate Secrets.
    let reviewer = sa.kube_client().await;
    let mut denied = Vec::new();
    for (group, resource) in WORKLOADS
        .iter()
        .copied()
        .chain([("", "secrets"), ("", "configmaps")])
    {
        for verb in ["create", "update", "patch", "delete"] {
            denied.push((verb, group, resource, Some(ns.name.as_str())));
        }
    }
    denied.push(("list", "", "secrets", Some(ns.name.as_str())));
    denied.push(("watch", "", "secrets", Some(ns.name.as_str())));
    denied.push(("list", "", "secrets", None));
    for (verb, group, resource, namespace) in denied {
        assert!(
            !allowed(&reviewer, verb, group, resource, namespace).await,
            "ServiceAccount vault-sync/vault-sync may {verb} {resource} in {}: more than least privilege",
            namespace.unwrap_or("all namespaces")
        );
    }
    // Sanity: the reviews do answer `true` for what it needs.
    for (verb, group, resource) in WORKLOADS
        .iter()
        .flat_map(|&(group, resource)| [("list", group, resource), ("get", group, resource)])
        .chain([("get", "", "secrets")])
    {
        assert!(
            allowed(&reviewer, verb, group, resource, Some(&ns.name)).await,
            "ServiceAccount vault-sync/vault-sync may not {verb} {resource}"
        );
    }
}

/// `kubectl apply -f` with the stack's admin kubeconfig (idempotent).
fn apply_manifests(files: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bundled = Path::new(STACK.get("STACK_BIN_DIR")).join("kubectl");
    let kubectl = if bundled.exists() {
        bundled
    } else {
        PathBuf::from("kubectl")
    };
    let mut cmd = Command::new(&kubectl);
    cmd.arg("--kubeconfig").arg(STACK.kubeconfig()).arg("apply");
    for f in files {
        cmd.arg("-f").arg(root.join(f));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kubectl.display()));
    assert!(
        out.status.success(),
        "kubectl apply {files:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What vault-sync gets in the pod, as files: a kubeconfig with a
/// TokenRequest token of vault-sync/vault-sync (the stack's CA), and another
/// token of the same ServiceAccount as the JWT for Vault's Kubernetes auth.
struct SaCredentials {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    jwt_file: PathBuf,
    /// Both tokens, for the leak guard.
    tokens: [String; 2],
}

impl SaCredentials {
    async fn issue(admin: &kube::Client) -> Self {
        let sa_ns = STACK.get("VAULT_SYNC_SA_NAMESPACE");
        let sa_name = STACK.get("VAULT_SYNC_SA_NAME");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let token = service_account_token(admin, sa_ns, sa_name).await;
        // JSON is YAML: a kubeconfig needs no YAML writer.
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stack", "cluster": {
                "server": STACK.get("KUBE_API_URL"),
                "certificate-authority": STACK.get("KUBE_CA_FILE"),
            }}],
            "users": [{"name": format!("{sa_ns}-{sa_name}"), "user": {"token": &token}}],
            "contexts": [{"name": "vault-sync", "context": {
                "cluster": "stack",
                "user": format!("{sa_ns}-{sa_name}"),
            }}],
            "current-context": "vault-sync",
        });
        std::fs::write(&kubeconfig, config.to_string()).expect("write kubeconfig");
        let jwt_file = dir.path().join("vault.jwt");
        let jwt = service_account_token(admin, sa_ns, sa_name).await;
        std::fs::write(&jwt_file, &jwt).expect("write JWT");
        Self {
            _dir: dir,
            kubeconfig,
            jwt_file,
            tokens: [token, jwt],
        }
    }

    /// Runs the binary in `ns` (`-n`) as the ServiceAccount on both sides.
    /// `VAULT_TOKEN=""` hides the harness's root token: the binary has only
    /// the ServiceAccount's JWT to log in to Vault with. Neither token may
    /// appear in the output.
    async fn cli(&self, ns: &TestNs, cluster: &str, args: &[&str]) -> CliOutput {
        let jwt = self.jwt_file.display().to_string();
        let mut full = args.to_vec();
        full.extend([
            "--vault-auth",
            "kubernetes",
            "--vault-role",
            STACK.get("VAULT_SYNC_K8S_ROLE"),
            "--vault-jwt-file",
            &jwt,
        ]);
        let kubeconfig = self.kubeconfig.display().to_string();
        let out = ns
            .cli_env(
                &full,
                &[
                    ("KUBECONFIG", &kubeconfig),
                    ("VAULT_TOKEN", ""),
                    ("VAULT_SYNC_INDEX_MOUNT", "secret"),
                    ("VAULT_SYNC_CLUSTER_NAME", cluster),
                ],
            )
            .await;
        assert_no_leak(&[&out.stdout, &out.stderr], &self.tokens);
        out
    }

    /// A client with the ServiceAccount's kubeconfig.
    async fn kube_client(&self) -> kube::Client {
        init_crypto();
        let file = Kubeconfig::read_from(&self.kubeconfig).expect("read SA kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .expect("config from SA kubeconfig");
        kube::Client::try_from(config).expect("SA kube client")
    }
}

/// SelfSubjectAccessReview: may the client's identity do this?
async fn allowed(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.map(str::to_owned),
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SelfSubjectAccessReview {verb} {resource}: {e}"));
    answer.status.expect("review status").allowed
}

/// A cluster name of the test's own and what vault-sync writes for it in
/// `secret/`: `clusters/<name>/...` and `vault-sync/index/<name>`. Deleted
/// (all versions and metadata) on drop, unless `IT_KEEP=1`.
struct ClusterPaths {
    name: String,
}

impl ClusterPaths {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// Where a path inside the mount is written for this cluster.
    fn rel(&self, rel: &str) -> String {
        format!("clusters/{}/{rel}", self.name)
    }
}

impl Drop for ClusterPaths {
    fn drop(&mut self) {
        if std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
            return;
        }
        let name = self.name.clone();
        block_on_own_runtime(async move {
            delete_cluster_paths(&VaultHttp::root(), "secret", &name).await;
        });
    }
}
