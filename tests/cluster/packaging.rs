//! The install paths a user picks from: the Helm chart (`cronjob/chart`)
//! and the kustomize overlays (`cronjob/`, its `overlays/`, and the
//! user-side overlays of `examples/kustomize/`), rendered by the real tools
//! and judged by the real API server; the chart installed, run and
//! uninstalled.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{
    Apps, create_job, create_job_from, kubectl, kubectl_json, kubectl_stdin, kubectl_try, suspend,
    turn,
};
use crate::harness::random_hex;
use crate::vault::VaultHttp;

const CHART: &str = "cronjob/chart";

/// The chart's values for CI, one per RBAC mode and one that sets every
/// option (their Roles go to `default` and `kube-public`, which exist in
/// every cluster).
const CI_VALUES: &[&str] = &[
    "cronjob/chart/ci/cluster-wide-values.yaml",
    "cronjob/chart/ci/namespaces-values.yaml",
    "cronjob/chart/ci/everything-values.yaml",
];

/// `helm template` of the chart as release `vault-sync` in namespace
/// `default` (which exists in every cluster, so that the API server can
/// validate the release's objects without a namespace being created).
fn template(args: &[&str]) -> String {
    let mut full = vec!["template", "vault-sync", CHART, "-n", "default"];
    full.extend(args);
    crate::cluster::helm(&full)
}

/// `kubectl apply --dry-run=server`: the API server validates and admits
/// every object (schema, RBAC escalation checks, defaults) without storing
/// it. Fails with kubectl's words unless every object is accepted.
fn server_accepts(manifests: &str, what: &str) {
    assert!(!manifests.trim().is_empty(), "{what}: rendered nothing");
    let out = kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], manifests);
    assert!(
        out.lines().all(|l| l.contains("(server dry run)")),
        "{what}: {out}"
    );
}

/// The objects of a multi-document YAML stream, as JSON (kubectl prints one
/// JSON document per object).
fn objects(manifests: &str) -> Vec<Value> {
    let out = kubectl_stdin(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        manifests,
    );
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|o| o.expect("kubectl create -o json: a JSON object"))
        .collect()
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["namespace"].as_str().unwrap_or("-")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(objects)))
}

/// `helm lint --strict` passes for every CI values file, and what `helm
/// template` renders from each is accepted by the API server; the chart's
/// own checks refuse what would give a CronJob whose every run fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_and_each_rbac_mode_is_accepted_by_the_api_server() {
    let _turn = turn().await;
    for values in CI_VALUES {
        crate::cluster::helm(&["lint", "--strict", CHART, "-f", values]);
        let rendered = template(&["-f", values]);
        server_accepts(&rendered, values);
    }

    // Each RBAC mode grants exactly what it says, where it says.
    let cluster_wide = objects(&template(&["-f", CI_VALUES[0]]));
    assert_eq!(
        kinds(&cluster_wide),
        [
            "ClusterRole -",
            "ClusterRoleBinding -",
            "CronJob default",
            "ServiceAccount default"
        ]
    );
    let namespaced = objects(&template(&["-f", CI_VALUES[1]]));
    assert_eq!(
        kinds(&namespaced),
        [
            "CronJob default",
            "Role default",
            "Role kube-public",
            "RoleBinding default",
            "RoleBinding kube-public",
            "ServiceAccount default"
        ]
    );
    let secrets_verbs = |objects: &[Value], kind: &str| -> Value {
        find(objects, kind)["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["resources"] == json!(["secrets"]))
            .map(|r| r["verbs"].clone())
            .unwrap_or_default()
    };
    assert_eq!(secrets_verbs(&cluster_wide, "ClusterRole"), json!(["get"]));
    assert_eq!(secrets_verbs(&namespaced, "Role"), json!(["get"]));
    let everything = objects(&template(&["-f", CI_VALUES[2]]));
    assert_eq!(
        secrets_verbs(&everything, "Role"),
        json!(["get", "list"]),
        "readSecrets=list adds list, and only then"
    );
    let env = &find(&everything, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        [0]["env"];
    assert!(
        env.as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "VAULT_SYNC_NAMESPACES" && e["value"] == "default"),
        "the Role's namespaces are the run's scope: {env}"
    );

    // Mistakes that would fail every run fail the install instead, saying
    // what to set.
    for (set, says) in [
        ("vault.address=https://v:8200", "clusterName is required"),
        ("clusterName=prod", "vault.address is required"),
        (
            "clusterName=prod,vault.address=https://v:8200,rbac.clusterWide=false",
            "rbac.clusterWide=false needs scope.namespaces",
        ),
        (
            "clusterName=default,vault.address=https://v:8200",
            "/clusterName",
        ),
        (
            "clusterName=prod,vault.address=https://v:8200,readSecrets=watch",
            "/readSecrets",
        ),
        (
            "clusterName=prod,vault.address=https://v:8200,vault.auth.method=approle",
            "needs vault.auth.secretName",
        ),
    ] {
        let err = crate::cluster::helm_try(&["template", "x", CHART, "--set", set]).expect_err(set);
        assert!(err.contains(says), "--set {set}: {err}");
    }
}

/// The chart's defaults render the kustomize base's hardened CronJob:
/// every setting of the schedule, the Job and the Pod that is not a name or
/// a label is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_defaults_render_the_same_cronjob_as_the_kustomize_base() {
    let _turn = turn().await;
    let chart = objects(&crate::cluster::helm(&[
        "template",
        "vault-sync",
        CHART,
        "-n",
        "vault-sync",
        "--set",
        "clusterName=my-cluster,vault.address=https://vault.vault.svc:8200",
    ]));
    let base = objects(&kubectl(&["kustomize", "cronjob"]));
    let (chart, base) = (find(&chart, "CronJob"), find(&base, "CronJob"));
    for field in [
        "/spec/schedule",
        "/spec/concurrencyPolicy",
        "/spec/startingDeadlineSeconds",
        "/spec/successfulJobsHistoryLimit",
        "/spec/failedJobsHistoryLimit",
        "/spec/jobTemplate/spec/backoffLimit",
        "/spec/jobTemplate/spec/activeDeadlineSeconds",
        "/spec/jobTemplate/spec/template/spec/restartPolicy",
        "/spec/jobTemplate/spec/template/spec/serviceAccountName",
        "/spec/jobTemplate/spec/template/spec/automountServiceAccountToken",
        "/spec/jobTemplate/spec/template/spec/securityContext",
        "/spec/jobTemplate/spec/template/spec/containers/0/image",
        "/spec/jobTemplate/spec/template/spec/containers/0/securityContext",
        "/spec/jobTemplate/spec/template/spec/containers/0/resources",
    ] {
        assert!(
            chart.pointer(field).is_some(),
            "{field} missing from the chart's CronJob"
        );
        assert_eq!(chart.pointer(field), base.pointer(field), "{field}");
    }
    assert_eq!(
        chart.pointer("/spec/suspend"),
        Some(&json!(false)),
        "the chart's CronJob runs on its schedule"
    );
}

/// Every kustomize overlay builds with `kubectl kustomize` (the one in
/// kubectl, as users run it) and the API server accepts all of it; the
/// namespaced ones put the Role where their settings say, and grant nothing
/// cluster-wide. (tests/cluster, the overlay the other tests really apply
/// and run, is one of them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kustomize_overlay_builds_and_is_accepted_by_the_api_server() {
    let _turn = turn().await;
    // The namespaced overlays' target namespaces must exist (they do not
    // create them, by design).
    for ns in ["apps", "payments", NAMESPACED_TARGET] {
        if kubectl_try(&["get", "namespace", ns]).is_err() {
            kubectl(&["create", "namespace", ns]);
        }
    }
    for (dir, role_ns) in [
        ("cronjob", None),
        ("cronjob/overlays/namespaced", Some("apps")),
        ("examples/kustomize/cluster-wide", None),
        ("examples/kustomize/namespaced", Some("payments")),
        ("tests/cluster", None),
        ("tests/cluster/namespaced", Some(NAMESPACED_TARGET)),
    ] {
        let rendered = kubectl(&["kustomize", dir]);
        server_accepts(&rendered, dir);
        let objects = objects(&rendered);
        let settings = find(&objects, "ConfigMap");
        let cronjob = find(&objects, "CronJob");
        let env_from = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            ["envFrom"][0]["configMapRef"]["name"];
        assert_eq!(
            env_from, &settings["metadata"]["name"],
            "{dir}: the CronJob reads the generated settings"
        );
        match role_ns {
            None => {
                find(&objects, "ClusterRole");
                assert!(!objects.iter().any(|o| o["kind"] == "Role"), "{dir}");
            }
            Some(ns) => {
                assert_eq!(find(&objects, "Role")["metadata"]["namespace"], ns, "{dir}");
                assert_eq!(
                    find(&objects, "RoleBinding")["metadata"]["namespace"],
                    ns,
                    "{dir}"
                );
                assert_eq!(settings["data"]["VAULT_SYNC_NAMESPACES"], ns, "{dir}");
                assert!(
                    !objects
                        .iter()
                        .any(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding"),
                    "{dir}: {:?}",
                    kinds(&objects)
                );
            }
        }
    }
}

/// The namespace tests/cluster/namespaced names once (its settings).
const NAMESPACED_TARGET: &str = "e2e-namespaced";

/// The namespaced kustomize variant, built as a user builds it (base,
/// `components/namespaced`, the namespace named once) and really applied:
/// with the cluster-wide binding gone, a Job from it syncs its namespace
/// and cannot see another. The test overlay is applied again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_overlay_applied_confines_a_real_run_to_its_namespace() {
    let _turn = turn().await;
    // A namespace left by an interrupted run of this test goes first.
    if kubectl_try(&["get", "namespace", NAMESPACED_TARGET]).is_ok() {
        kubectl(&["delete", "namespace", NAMESPACED_TARGET, "--wait=true"]);
    }
    let inside = Apps::named(NAMESPACED_TARGET.to_owned()).await;
    let value = inside.app("api", &[]).await;
    let outside = Apps::new("not-namespaced").await;
    let other = outside.app("web", &[]).await;

    // Back to the cluster-wide test overlay, whatever happens below.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            for kind in ["rolebinding", "role"] {
                let _ = kubectl_try(&[
                    "-n",
                    NAMESPACED_TARGET,
                    "delete",
                    kind,
                    "vault-sync",
                    "--ignore-not-found",
                ]);
            }
            kubectl(&["apply", "-k", "tests/cluster"]);
            suspend(true);
        }
    }
    let restore = Restore;
    kubectl(&["delete", "clusterrolebinding", "vault-sync"]);
    kubectl(&["apply", "-k", "tests/cluster/namespaced"]);
    suspend(true);
    let role = kubectl_json(&["-n", NAMESPACED_TARGET, "get", "role", "vault-sync"]);
    assert_eq!(role["metadata"]["namespace"], NAMESPACED_TARGET);

    let run = create_job("namespaced").await;
    assert!(
        !run.logs.contains(&value) && !run.logs.contains(&other),
        "the Pod's log holds a secret value"
    );
    assert!(run.succeeded, "{run}");
    let vault = VaultHttp::root();
    let synced = vault
        .kv2_read("secret", &inside.rel("api"))
        .await
        .unwrap_or_else(|| panic!("{} not written: {run}", inside.rel("api")));
    assert!(synced.data.get("password") == Some(&value), "wrong content");
    assert!(
        vault
            .kv2_read("secret", &outside.rel("web"))
            .await
            .is_none(),
        "a namespaced run wrote {} outside its namespace",
        outside.rel("web")
    );
    // Its RBAC really is confined: the ServiceAccount cannot list
    // Deployments elsewhere.
    // (`kubectl auth can-i` answers "no" with exit code 1.)
    let can = kubectl_try(&[
        "auth",
        "can-i",
        "list",
        "deployments",
        "-n",
        &outside.ns,
        "--as",
        "system:serviceaccount:vault-sync:vault-sync",
    ]);
    assert!(
        can.as_ref().is_err_and(|e| e.lines().any(|l| l == "no")),
        "{can:?}"
    );
    drop(restore);
    let binding = kubectl_json(&["get", "clusterrolebinding", "vault-sync"]);
    assert_eq!(binding["subjects"][0]["name"], "vault-sync");
}

/// `helm install` as the README shows it (the chart's Role-per-namespace
/// mode, Secrets read by LIST), a Job from its CronJob syncs the namespace
/// as the chart's ServiceAccount; `helm uninstall` leaves nothing of it in
/// Kubernetes and Vault as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_syncs_and_helm_uninstall_leaves_nothing() {
    let _turn = turn().await;
    let apps = Apps::new("helm").await;
    let value = apps.app("api", &[]).await;
    let release = "vs-helm";
    let ns = format!("vault-sync-helm-{}", random_hex(4));
    let fullname = format!("{release}-vault-sync");
    let cluster = "helm-e2e";

    // The Vault side, as for the kustomize install (README step 1): a role
    // for this release's ServiceAccount, with vault-sync's policy.
    let vault = VaultHttp::root();
    vault
        .must_post(
            "auth/kubernetes/role/vault-sync-helm",
            &json!({
                "bound_service_account_names": [fullname],
                "bound_service_account_namespaces": [ns],
                "token_policies": ["vault-sync"],
                "token_ttl": "10m",
            }),
            "create the chart's Vault role",
        )
        .await;

    kubectl(&["create", "namespace", &ns]);
    let scope = format!("scope.namespaces={{{}}}", apps.ns);
    crate::cluster::helm(&[
        "install",
        release,
        CHART,
        "-n",
        &ns,
        "--wait",
        "--set",
        &format!("clusterName={cluster}"),
        "--set",
        &format!("vault.address={}", crate::harness::STACK.vault_addr()),
        "--set",
        "vault.auth.role=vault-sync-helm",
        "--set",
        &format!(
            "pushgateway.url={}",
            crate::harness::STACK.pushgateway_url()
        ),
        "--set",
        "rbac.clusterWide=false",
        "--set",
        &scope,
        "--set",
        "readSecrets=list",
        "--set",
        "suspend=true",
        // What the loopback test cluster needs, as tests/cluster's overlay
        // (no registry, no kube-proxy).
        "--set",
        "image.repository=localhost/vault-sync,image.tag=e2e,image.pullPolicy=Never",
        "--set",
        "hostNetwork=true",
        "--set-json",
        r#"extraEnv=[{"name":"KUBERNETES_SERVICE_HOST","value":"127.0.0.1"},{"name":"KUBERNETES_SERVICE_PORT","value":"6443"}]"#,
    ]);
    let role = kubectl_json(&["-n", &apps.ns, "get", "role", &fullname]);
    assert!(
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["resources"] == json!(["secrets"]) && r["verbs"] == json!(["get", "list"])),
        "readSecrets=list grants list: {role}"
    );

    let run = create_job_from(&ns, &fullname, "now").await;
    assert!(
        !run.logs.contains(&value),
        "the Pod's log holds a secret value"
    );
    assert!(run.succeeded, "{run}");
    let rel = format!("clusters/{cluster}/e2e/{}/api/api-creds", apps.ns);
    let synced = vault
        .kv2_read("secret", &rel)
        .await
        .unwrap_or_else(|| panic!("secret/{rel} not written: {run}"));
    assert!(
        synced.data.get("password") == Some(&value),
        "secret/{rel}: wrong content"
    );
    assert_eq!(
        synced
            .custom_metadata
            .get("vault-sync.io/owner")
            .map(String::as_str),
        Some(format!("{cluster}/{}/api", apps.ns).as_str())
    );

    crate::cluster::helm(&["uninstall", release, "-n", &ns, "--wait"]);
    // The Job and its Pod go with the CronJob (owner references, removed by
    // the garbage collector); nothing else of the release may stay.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = kubectl(&[
            "get",
            "cronjobs,jobs,pods,serviceaccounts,configmaps,secrets,roles,rolebindings",
            "-A",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "name",
        ]);
        let jobs = kubectl(&["-n", &ns, "get", "jobs,pods", "-o", "name"]);
        if left.trim().is_empty() && jobs.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after helm uninstall: {left}{jobs}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (kind, name, in_ns) in [
        ("clusterrole", fullname.as_str(), None),
        ("clusterrolebinding", fullname.as_str(), None),
        ("serviceaccount", fullname.as_str(), Some(ns.as_str())),
        ("role", fullname.as_str(), Some(apps.ns.as_str())),
        ("rolebinding", fullname.as_str(), Some(apps.ns.as_str())),
    ] {
        let mut args = vec!["get", kind, name];
        if let Some(n) = in_ns {
            args.extend(["-n", n]);
        }
        let err = kubectl_try(&args).expect_err("still there after helm uninstall");
        assert!(err.contains("NotFound"), "{err}");
    }
    let secrets = kubectl(&["-n", &ns, "get", "secrets", "-o", "name"]);
    assert!(
        secrets.trim().is_empty(),
        "helm's release records stay after uninstall: {secrets}"
    );
    // Vault is the user's: uninstalling the tool deletes nothing there.
    let after = vault
        .kv2_read("secret", &rel)
        .await
        .unwrap_or_else(|| panic!("secret/{rel} gone after helm uninstall"));
    assert_eq!(after.version, synced.version);
    kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// The chart's optional PrometheusRule holds the alerts of
/// `cronjob/monitoring/alerts.yaml`: its rules pass `promtool check rules`
/// and the same promtool unit tests (`alerts_test.yaml`), and its threshold
/// follows the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_prometheus_rule_is_the_tested_alerts() {
    // Only the PrometheusRule, with `set` on top of the required values.
    let render = |set: &str| {
        crate::cluster::helm_try(&[
            "template",
            "vault-sync",
            CHART,
            "-s",
            "templates/prometheusrule.yaml",
            "--set",
            &format!("clusterName=ci,vault.address=https://v:8200{set}"),
        ])
    };
    let enabled = |extra: &str| {
        render(&format!(",monitoring.prometheusRule.enabled=true{extra}"))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // The rules file inside the PrometheusRule: `spec:`'s block, unindented.
    let rules_of = |rendered: &str| -> String {
        let (_, spec) = rendered
            .split_once("\nspec:\n")
            .unwrap_or_else(|| panic!("no spec in {rendered}"));
        spec.lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("alerts.yaml"), rules_of(&enabled(""))).expect("write rules");
    std::fs::copy(
        "cronjob/monitoring/alerts_test.yaml",
        dir.path().join("alerts_test.yaml"),
    )
    .expect("copy alerts_test.yaml");
    for args in [
        vec!["check", "rules", "alerts.yaml"],
        vec!["test", "rules", "alerts_test.yaml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?} on the chart's rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let custom = enabled(
        ",monitoring.prometheusRule.notSucceedingRuns=4,monitoring.prometheusRule.scheduleSeconds=600",
    );
    assert_eq!(custom.matches("> 4 * 600").count(), 2, "{custom}");
    assert!(!custom.contains("> 3 * 300"), "{custom}");
    let off = render("");
    assert!(
        off.is_err_and(|e| e.contains("could not find template")),
        "no PrometheusRule unless enabled"
    );
}
