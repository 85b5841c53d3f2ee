//! The CronJob of cronjob/, in a Pod on a real node.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::audit::audit_mark;
use crate::cluster::{
    Apps, BASE_SCHEDULE, CLUSTER_NAME, JobRun, MEMORY_LIMIT, NS, PodWatcher, create_job,
    create_job_with_args, kubectl, kubectl_json, mib, now_secs, patch_cronjob, suspend, turn,
    wait_job,
};
use crate::harness::{STACK, assert_no_leak, block_on_own_runtime};
use crate::vault::VaultHttp;

/// What the role of examples/vault-setup.sh is bound to (cronjob/base).
const SERVICE_ACCOUNT: &str = "vault-sync";
const ROLE: &str = "vault-sync-operator";

/// Fails if any fixture value, or its base64 form, is in `logs`. Every
/// fixture value starts with `SeCrEt-` (base64 `U2VDckV0L`), so one scan
/// for the prefixes finds them however many paths a test made; the exact
/// check (which value) runs only then.
fn assert_no_value_in(logs: &str, values: &[String]) {
    if logs.contains("SeCrEt-") || logs.contains("U2VDckV0L") {
        assert_no_leak(&[logs], values);
        panic!("SECRET LEAK: a fixture value's prefix appears in the Pod's log");
    }
}

/// Fails with the Job's Pod status and logs unless it completed with exit 0.
fn assert_succeeded(run: &JobRun, values: &[String]) {
    assert_no_value_in(&run.logs, values);
    assert!(run.succeeded, "{run}");
    assert_eq!(run.exit_code(), 0, "{run}");
}

/// The path holds `value` under `password`, marked as vault-sync's for
/// `owner`; returns its version.
async fn assert_synced(vault: &VaultHttp, rel: &str, value: &str, owner: &str) -> u64 {
    let secret = vault
        .kv2_read("secret", rel)
        .await
        .unwrap_or_else(|| panic!("secret/{rel} missing"));
    assert!(
        secret.data.get("password").map(String::as_str) == Some(value),
        "secret/{rel}: wrong content (keys {:?})",
        secret.data.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        secret.custom_metadata.get("managed-by").map(String::as_str),
        Some("vault-sync"),
        "secret/{rel}: {:?}",
        secret.custom_metadata
    );
    assert_eq!(
        secret
            .custom_metadata
            .get("vault-sync.io/owner")
            .map(String::as_str),
        Some(owner),
        "secret/{rel}: {:?}",
        secret.custom_metadata
    );
    secret.version
}

/// The group the CronJob's `run` pushed for this cluster (job
/// `vault-sync`, command `run`).
async fn pushed_metrics() -> Value {
    crate::harness::init_crypto();
    let body: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/metrics", STACK.pushgateway_url()))
        .send()
        .await
        .expect("GET /api/v1/metrics")
        .json()
        .await
        .expect("metrics JSON");
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| {
            g["labels"]["job"] == "vault-sync"
                && g["labels"]["cluster"] == CLUSTER_NAME
                && g["labels"]["command"] == "run"
        })
        .cloned()
        .unwrap_or_else(|| panic!("no vault-sync group for cluster {CLUSTER_NAME}: {body}"))
}

fn metric_value(group: &Value, name: &str) -> f64 {
    group[name]["metrics"][0]["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from {group}"))
}

/// A Job from the CronJob syncs the annotated Deployments with the Pod's
/// own identity, pushes its metrics; a second Job writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_from_the_cronjob_syncs_as_its_service_account() {
    let _turn = turn().await;
    let apps = Apps::new("sync").await;
    let api = apps.app("api", &[]).await;
    let web = apps.app("web", &[]).await;
    let vault = VaultHttp::root();

    let mark = audit_mark();
    let first = create_job("sync").await;
    // What the Job sent (before this test's own reads as root).
    let entries = mark.raw_entries();
    assert_succeeded(&first, &apps.values());
    assert_synced(&vault, &apps.rel("api"), &api, &apps.owner("api")).await;
    assert_synced(&vault, &apps.rel("web"), &web, &apps.owner("web")).await;

    // The login: Kubernetes auth, role vault-sync-operator, as the Pod's
    // ServiceAccount; and the writes were made with the token it got.
    let logins: Vec<&Value> = entries
        .iter()
        .filter(|e| e["type"] == "response" && e["request"]["path"] == "auth/kubernetes/login")
        .collect();
    assert_eq!(logins.len(), 1, "one Kubernetes login per run: {logins:?}");
    let auth = &logins[0]["auth"];
    assert_eq!(
        auth["metadata"]["service_account_name"], SERVICE_ACCOUNT,
        "{auth}"
    );
    assert_eq!(auth["metadata"]["service_account_namespace"], NS, "{auth}");
    assert_eq!(auth["metadata"]["role"], ROLE, "{auth}");
    assert!(
        auth["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "vault-sync")),
        "{auth}"
    );
    let sa = kubectl_json(&["-n", NS, "get", "serviceaccount", SERVICE_ACCOUNT]);
    assert_eq!(
        auth["metadata"]["service_account_uid"], sa["metadata"]["uid"],
        "the login's ServiceAccount is the one cronjob/ created: {auth}"
    );
    let display = auth["display_name"].as_str().expect("display_name");
    let ours: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["type"] == "request"
                && e["request"]["path"]
                    .as_str()
                    .is_some_and(|p| p.contains(&format!("/e2e/{}/", apps.ns)))
        })
        .collect();
    assert!(!ours.is_empty(), "no request for this test's paths");
    for e in &ours {
        assert_eq!(e["auth"]["display_name"], display, "{e}");
        assert_eq!(
            e["auth"]["metadata"]["service_account_name"], SERVICE_ACCOUNT,
            "{e}"
        );
    }

    // Its metrics reached the Pushgateway.
    let group = pushed_metrics().await;
    let last_success = metric_value(&group, "vault_sync_last_success_timestamp_seconds");
    assert!(
        last_success >= first.created - 1.0,
        "last success {last_success} is older than the Job ({})",
        first.created
    );

    // A second run writes nothing.
    let mark = audit_mark();
    let second = create_job("noop").await;
    assert_succeeded(&second, &apps.values());
    // (A login is an `update` of its auth path: not a write to Vault's data.)
    let writes: Vec<(String, String)> = mark
        .entries()
        .writes("")
        .into_iter()
        .filter(|(_, path)| !path.starts_with("auth/"))
        .collect();
    assert!(writes.is_empty(), "a no-op Job wrote: {writes:?}");
}

/// The CronJob's own schedule starts a Job (not only `create job`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_fires() {
    let _turn = turn().await;
    let apps = Apps::new("cron").await;
    let value = apps.app("api", &[]).await;
    let before: Vec<String> = job_names();

    let started = now_secs();
    patch_cronjob(&json!({"spec": {"schedule": "* * * * *", "suspend": false}}));
    // Put the base's schedule back and suspend, whatever happens below.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            patch_cronjob(&json!({"spec": {"schedule": BASE_SCHEDULE}}));
            suspend(true);
        }
    }
    let restore = Restore;

    let deadline = Instant::now() + Duration::from_secs(150);
    let scheduled = loop {
        let owned: Vec<String> = scheduled_jobs()
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        if let Some(name) = owned.into_iter().next() {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "the CronJob did not fire within 150s: {}",
            kubectl(&["-n", NS, "get", "cronjob", "vault-sync", "-o", "yaml"])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    suspend(true);
    let run = wait_job(&scheduled, started).await;
    drop(restore);
    assert_succeeded(&run, &apps.values());
    assert_synced(
        &VaultHttp::root(),
        &apps.rel("api"),
        &value,
        &apps.owner("api"),
    )
    .await;
    let cronjob = kubectl_json(&["-n", NS, "get", "cronjob", "vault-sync"]);
    assert!(
        cronjob["status"]["lastScheduleTime"].is_string(),
        "{}",
        cronjob["status"]
    );
    assert_eq!(cronjob["spec"]["schedule"], BASE_SCHEDULE);
}

fn job_names() -> Vec<String> {
    let jobs = kubectl_json(&["-n", NS, "get", "jobs"]);
    jobs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Jobs the CronJob controller made on schedule: owned by the CronJob and
/// carrying its `scheduled-timestamp` annotation (`create job --from` sets
/// the owner but not that).
fn scheduled_jobs() -> Vec<String> {
    let jobs = kubectl_json(&["-n", NS, "get", "jobs"]);
    jobs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| {
            j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                .is_string()
        })
        .filter_map(|j| j["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Unseals the dev server with the key up.sh kept, and waits until it is.
async fn unseal() {
    let key = std::fs::read_to_string(STACK.get("VAULT_UNSEAL_KEY_FILE")).expect("unseal key");
    let vault = VaultHttp::root();
    let (status, body) = vault
        .request(
            reqwest::Method::PUT,
            "sys/unseal",
            Some(&json!({"key": key.trim()})),
        )
        .await;
    assert_eq!(status, 200, "unseal: {}", body["errors"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while vault.get("sys/health").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "Vault not active 30s after unseal"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With Vault sealed the Job fails (exit 1, the error named in its JSON
/// log); after unsealing, the next Job succeeds and nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_vault_fails_the_job_and_the_next_one_recovers() {
    let _turn = turn().await;
    let apps = Apps::new("sealed").await;
    let api = apps.app("api", &[]).await;
    let vault = VaultHttp::root();
    let first = create_job("before-seal").await;
    assert_succeeded(&first, &apps.values());
    let version = assert_synced(&vault, &apps.rel("api"), &api, &apps.owner("api")).await;
    let web = apps.app("web", &[]).await;

    let (status, body) = vault.request(reqwest::Method::PUT, "sys/seal", None).await;
    assert_eq!(status, 204, "seal: {body}");
    // Unseal again even if an assertion below fails.
    struct Unseal;
    impl Drop for Unseal {
        fn drop(&mut self) {
            block_on_own_runtime(unseal());
        }
    }
    let unseal_guard = Unseal;

    let sealed = create_job("sealed").await;
    assert_no_value_in(&sealed.logs, &apps.values());
    assert!(
        !sealed.succeeded,
        "the Job must fail with Vault sealed:\n{sealed}"
    );
    assert_eq!(sealed.exit_code(), 1, "{sealed}");
    // The JSON log names the error (OpenBao's own words, as the login was
    // refused), and the last line is vault-sync's fatal error: JSON too,
    // with its error type, as a log pipeline needs it.
    let named = sealed.json_logs().into_iter().any(|l| {
        l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("Vault is sealed"))
    });
    assert!(named, "no JSON log line names the sealed error:\n{sealed}");
    let last: Value = sealed
        .logs
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    assert!(
        last["level"] == "ERROR"
            && last["error_type"] == "connection_failed"
            && last["fix"]
                .as_str()
                .is_some_and(|f| f.contains("the next run retries"))
            && last["message"]
                .as_str()
                .is_some_and(|m| m.contains("Vault is sealed")),
        "the fatal error must be a JSON line naming the sealed Vault, its type and fix:\n{sealed}"
    );

    drop(unseal_guard);
    let after = create_job("unsealed").await;
    assert_succeeded(&after, &apps.values());
    // What was there is still there, unchanged; what was pending is written.
    assert_eq!(
        assert_synced(&vault, &apps.rel("api"), &api, &apps.owner("api")).await,
        version
    );
    assert_synced(&vault, &apps.rel("web"), &web, &apps.owner("web")).await;
}

/// A deleted Deployment's path is deleted by the next Job; one with
/// `preserve-on-delete` is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_job_prunes_a_deleted_deployment_and_keeps_a_preserved_one() {
    let _turn = turn().await;
    let apps = Apps::new("prune").await;
    let gone = apps.app("gone", &[]).await;
    let kept = apps
        .app("kept", &[("vault-sync.io/preserve-on-delete", "true")])
        .await;
    let vault = VaultHttp::root();
    let first = create_job("prune-setup").await;
    assert_succeeded(&first, &apps.values());
    assert_synced(&vault, &apps.rel("gone"), &gone, &apps.owner("gone")).await;
    assert_synced(&vault, &apps.rel("kept"), &kept, &apps.owner("kept")).await;

    apps.delete_deployment("gone").await;
    apps.delete_deployment("kept").await;
    let mark = audit_mark();
    let next = create_job("prune").await;
    assert_succeeded(&next, &apps.values());
    assert!(
        vault.kv2_read("secret", &apps.rel("gone")).await.is_none(),
        "secret/{} must be deleted",
        apps.rel("gone")
    );
    assert_synced(&vault, &apps.rel("kept"), &kept, &apps.owner("kept")).await;
    let deletes = mark
        .entries()
        .requests_of(&["delete"], &format!("/e2e/{}/", apps.ns));
    assert_eq!(
        deletes,
        [(
            "delete".to_owned(),
            format!("secret/data/{}", apps.rel("gone"))
        )],
        "exactly the deleted Deployment's path"
    );
}

/// The Pod runs as 65532 with a read-only root filesystem, and its peak
/// memory over `VS_E2E_MEMORY_PATHS` paths (default 1,000), in a run that
/// creates them all, a no-op run over them and a run that prunes them all,
/// stays under the base's 128Mi limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_unprivileged_and_within_its_memory_limit() {
    let paths: usize = std::env::var("VS_E2E_MEMORY_PATHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let _turn = turn().await;
    // Settle what earlier tests left, so that the measured runs do only
    // this test's paths.
    let settle = create_job("settle").await;
    assert!(settle.succeeded, "{settle}");

    let apps = Apps::new("memory").await;
    let seeded = Instant::now();
    apps.many(paths).await;
    let seed_time = seeded.elapsed();

    let mut peaks = Vec::new();
    for label in ["memory-create", "memory-noop"] {
        let watcher = PodWatcher::start();
        let run = create_job(label).await;
        let seen = watcher.finish();
        assert_succeeded(&run, &apps.values());
        eprintln!(
            "{label}: {paths} paths (seeded in {:.1}s): peak memory of the Pod's cgroup {:.1} MiB \
             (container {:.1} MiB), limit {:.0} MiB",
            seed_time.as_secs_f64(),
            mib(seen.pod_peak),
            mib(seen.container_peak),
            mib(MEMORY_LIMIT)
        );
        assert_eq!(
            run.pod["spec"]["containers"][0]["resources"]["limits"]["memory"], "128Mi",
            "the base's limit"
        );
        assert!(
            seen.pod_cgroup.is_some(),
            "the vault-sync process was never seen in a Pod cgroup"
        );
        let uids: Vec<&str> = seen.uid_line.split_whitespace().skip(1).collect();
        assert_eq!(uids, ["65532"; 4], "{}", seen.uid_line);
        let gids: Vec<&str> = seen.gid_line.split_whitespace().skip(1).collect();
        assert_eq!(gids, ["65532"; 4], "{}", seen.gid_line);
        assert!(
            seen.root_mount_options.split(',').any(|o| o == "ro"),
            "root filesystem mounted {}",
            seen.root_mount_options
        );
        assert!(seen.pod_peak > 0, "no memory reading: {seen:?}");
        peaks.push((label, seen.pod_peak));
    }
    for (label, peak) in peaks {
        assert!(
            peak < MEMORY_LIMIT,
            "{label}: peak {:.1} MiB at {paths} paths is over the 128Mi limit",
            mib(peak)
        );
    }

    // Clean up: more deletions than the base's --max-deletes allows, so as
    // an operator would after reviewing them, with a one-off Job that
    // raises it.
    // This prune of every path is measured too: at 25,000 paths it was the
    // run that exceeded 128Mi (OOMKilled) where create and no-op fit.
    apps.delete_all_deployments().await;
    let max = (paths + 100).to_string();
    let watcher = PodWatcher::start();
    let cleanup = create_job_with_args("memory-prune", &["--max-deletes", &max]).await;
    let seen = watcher.finish();
    assert_succeeded(&cleanup, &apps.values());
    eprintln!(
        "memory-prune: {paths} paths deleted: peak memory of the Pod's cgroup {:.1} MiB \
         (container {:.1} MiB), limit {:.0} MiB",
        mib(seen.pod_peak),
        mib(seen.container_peak),
        mib(MEMORY_LIMIT)
    );
    assert!(
        seen.pod_peak < MEMORY_LIMIT,
        "prune: peak {:.1} MiB at {paths} paths is over the 128Mi limit",
        mib(seen.pod_peak)
    );
}
