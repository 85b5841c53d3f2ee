//! Connecting and authenticating to Vault, through the built binary: every
//! auth method (Kubernetes with a TokenRequest token and a wrong role,
//! AppRole at a custom mount, JWT with a key the test controls), a token
//! that expires mid-run, TLS (with the CA, without it, skip-verify), Vault
//! namespaces, a policy that denies one path, `check`'s report of each
//! broken setup, and a revoked token reported once as `auth_failed`, never
//! blamed on the paths. What happens when Vault goes away is in `faults`.
//!
//! Tests that need a Vault of their own start a [`PrivateBao`] (the real
//! `bao` binary, dev mode, its own audit log, killed on drop). Objects a
//! test adds to the shared server (auth mounts, policies, paths outside the
//! test's prefix) are removed by a [`SharedCleanup`] guard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::audit::audit_mark;
use crate::fixtures::{
    ClusterNs, PrivateBao, TcpProxy, assert_all_written, assert_marker, assert_no_panic,
    assert_whole_or_absent, failures, free_port, many_paths, metrics_file, one_path, private_env,
    result_of, tool_jwt_file,
};
use crate::harness::annotation::PATH;
use crate::harness::{
    CliOutput, PodRefs, STACK, TestNs, assert_no_leak, block_on_own_runtime, random_hex,
};
use crate::metrics::exposition_value;
use crate::vault::{Kv2Secret, PathState, VaultHttp, example_policy};

// ---------------------------------------------------------------------------
// Objects on the shared server
// ---------------------------------------------------------------------------

/// Removes, on drop, what a test added to the shared OpenBao outside its
/// own prefix: API paths to DELETE and KV v2 folders to empty.
#[derive(Default)]
struct SharedCleanup {
    deletes: Vec<String>,
    /// (mount, folder): every leaf's metadata is deleted.
    trees: Vec<(String, String)>,
}

impl SharedCleanup {
    fn delete(&mut self, api_path: impl Into<String>) {
        self.deletes.push(api_path.into());
    }

    /// What a run with `--cluster-name <cluster>` writes: its paths under
    /// `secret/clusters/<cluster>/` and its index.
    fn cluster(&mut self, cluster: &str) {
        self.trees
            .push(("secret".into(), format!("clusters/{cluster}")));
        self.deletes
            .push(format!("secret/metadata/vault-sync/index/{cluster}"));
    }
}

impl Drop for SharedCleanup {
    fn drop(&mut self) {
        if std::env::var_os("IT_KEEP").is_some_and(|v| v == "1") {
            return;
        }
        let deletes = std::mem::take(&mut self.deletes);
        let trees = std::mem::take(&mut self.trees);
        block_on_own_runtime(async move {
            let vault = VaultHttp::root();
            for (mount, folder) in &trees {
                for leaf in vault
                    .list_recursive(&format!("{mount}/metadata"), folder)
                    .await
                {
                    vault.delete(&format!("{mount}/metadata/{leaf}")).await;
                }
            }
            for path in deletes.iter().rev() {
                vault.delete(path).await;
            }
        });
    }
}

/// Creates a policy on the shared server (removed by `cleanup`).
async fn shared_policy(ns: &TestNs, cleanup: &mut SharedCleanup, name: &str, text: &str) {
    ns.vault.write_policy(name, text).await;
    cleanup.delete(format!("sys/policies/acl/{name}"));
}

/// Full access to the test's own index mount (the `vault-sync` policy
/// covers `secret/` only).
fn index_stanza(ns: &TestNs) -> String {
    format!(
        "path \"{}/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"patch\", \"delete\", \"list\"] }}\n",
        ns.index_mount
    )
}

/// A child token of root with these policies; returns the token.
async fn shared_token(ns: &TestNs, policies: &[&str]) -> String {
    let (token, _) = ns
        .vault
        .create_token(&json!({"policies": policies, "ttl": "15m", "display_name": ns.name}))
        .await;
    token
}

/// An auth method of type `kind` (`approle`, `jwt`) enabled at a mount of
/// its own, `<kind>-<random>`, on the shared server, and the policy
/// `<ns>-index` ([`index_stanza`]) for its roles; both removed by
/// `cleanup`. Returns the mount and the policy name.
async fn shared_auth_mount(
    ns: &TestNs,
    cleanup: &mut SharedCleanup,
    kind: &str,
) -> (String, String) {
    let mount = format!("{kind}-{}", random_hex(8));
    let policy = format!("{}-index", ns.name);
    shared_policy(ns, cleanup, &policy, &index_stanza(ns)).await;
    ns.vault
        .must_post(
            &format!("sys/auth/{mount}"),
            &json!({ "type": kind }),
            &format!("enable {kind}"),
        )
        .await;
    cleanup.delete(format!("sys/auth/{mount}"));
    (mount, policy)
}

// ---------------------------------------------------------------------------
// Fixtures and output helpers
// ---------------------------------------------------------------------------

/// One `check` result: (ok, detail, fix), by check name.
type Checks = BTreeMap<String, (bool, String, Option<String>)>;

/// `check -o json`: the top-level `ok` and each check.
fn check_results(out: &CliOutput) -> (bool, Checks) {
    let json = out.json();
    assert_eq!(json["format_version"], 1, "{out}");
    let checks = json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks:\n{out}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                (
                    c["ok"].as_bool().expect("ok is a bool"),
                    c["detail"].as_str().unwrap_or_default().to_owned(),
                    c["fix"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect();
    (json["ok"].as_bool().expect("top-level ok"), checks)
}

/// Asserts exactly `failed` checks failed (each with a fix, the others
/// without), `ok` is false and the exit code 1; returns the results.
fn assert_check_fails(out: &CliOutput, failed: &[&str]) -> Checks {
    out.assert_code(1);
    let (ok, checks) = check_results(out);
    assert!(!ok, "top-level ok must be false:\n{out}");
    let got: BTreeSet<&str> = checks
        .iter()
        .filter(|(_, (ok, _, _))| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(got, failed.iter().copied().collect(), "{out}");
    for (name, (ok, _, fix)) in &checks {
        if *ok {
            assert!(fix.is_none(), "{name} passed but has a fix:\n{out}");
        } else {
            assert!(
                fix.as_deref().is_some_and(|f| !f.is_empty()),
                "{name} failed without a fix:\n{out}"
            );
        }
    }
    checks
}

// ---------------------------------------------------------------------------
// 1. Kubernetes auth
// ---------------------------------------------------------------------------

/// A real TokenRequest token of vault-sync/vault-sync logs in with role
/// vault-sync-operator (policy `vault-sync`, least privilege) and the run
/// writes; a role that does not exist fails the login as auth_failed and
/// writes nothing.
///
/// The `vault-sync` policy covers `secret/` only, so the index must live
/// there too; a cluster name of its own keeps this test's index (one
/// CAS-written secret per cluster) away from other tests'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_auth_with_token_request_and_wrong_role() {
    let ns = TestNs::new("vc-k8s").await;
    let data = one_path(&ns).await;
    let jwt = tool_jwt_file(&ns).await;
    let mut cleanup = SharedCleanup::default();
    let cluster = format!("it-{}", random_hex(10));
    cleanup.cluster(&cluster);
    let env = [("VAULT_TOKEN", ""), ("VAULT_SYNC_INDEX_MOUNT", "secret")];

    let mark = audit_mark();
    let run = ns
        .cli_env(
            &[
                "run",
                "-o",
                "json",
                "--vault-auth",
                "kubernetes",
                "--vault-role",
                STACK.get("VAULT_SYNC_K8S_ROLE"),
                "--vault-jwt-file",
                &jwt.path,
                "--cluster-name",
                &cluster,
            ],
            &env,
        )
        .await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[&jwt.jwt]);
    run.assert_code(0);
    let rel = format!("clusters/{cluster}/{}", ns.rel("app/db"));
    assert_eq!(
        result_of(&run, &format!("secret/{rel}")),
        "applied",
        "{run}"
    );
    let got = ns
        .vault
        .kv2_read("secret", &rel)
        .await
        .unwrap_or_else(|| panic!("secret/{rel} not written:\n{run}"));
    assert_eq!(got.data, data);
    assert_eq!(got.version, 1);
    assert_marker(
        &got.custom_metadata,
        &format!("{cluster}/{}/app", ns.name),
        "app/db",
    );
    // Written with the Kubernetes-auth token, not a token from elsewhere.
    let entries = mark.entries();
    let writers: BTreeSet<&str> = entries
        .requests(&rel)
        .filter(|e| ["create", "update"].contains(&e.operation.as_str()))
        .map(|e| e.client.as_str())
        .collect();
    assert!(
        !writers.is_empty() && writers.iter().all(|c| c.starts_with("kubernetes-")),
        "writers of {rel}: {writers:?}"
    );

    // Wrong role: the login fails, classified auth_failed, nothing written.
    let cluster2 = format!("it-{}", random_hex(10));
    cleanup.cluster(&cluster2);
    let wrong = format!("nope-{}", random_hex(6));
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
                "--vault-auth",
                "kubernetes",
                "--vault-role",
                &wrong,
                "--vault-jwt-file",
                &jwt.path,
                "--cluster-name",
                &cluster2,
                "--metrics-file",
                &metrics_path,
            ],
            &env,
        )
        .await;
    let took = started.elapsed();
    assert_no_leak(&[&run.stdout, &run.stderr], &[&jwt.jwt]);
    assert_no_panic(&run);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("Vault login with the kubernetes (auth/kubernetes, role")
            && run.stderr.contains(&wrong)
            && run.stderr.contains("failed"),
        "{run}"
    );
    assert!(
        run.stderr.contains("check the role name"),
        "the message says what to check:\n{run}"
    );
    // A 4xx login answer is final: no retries up to --vault-timeout (30 s).
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!("kubernetes auth, wrong role: failed in {took:?}");
    let (_, metrics) = metrics_file(dir.path());
    assert!(
        metrics.contains("vault_sync_last_run_errors{error_type=\"auth_failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "vault_sync_last_run_auth_attempts{method=\"kubernetes\",result=\"failure\"} 1"
        ),
        "{metrics}"
    );
    let entries = mark.entries();
    assert!(
        entries.writes(&format!("clusters/{cluster2}/")).is_empty()
            && entries
                .writes(&format!("vault-sync/index/{cluster2}"))
                .is_empty(),
        "nothing may be written after a failed login"
    );
    assert!(
        ns.vault
            .list_recursive("secret/metadata", &format!("clusters/{cluster2}"))
            .await
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// 2. Token expiry mid-run
// ---------------------------------------------------------------------------

/// Kubernetes auth whose tokens live 2 s, and a run slowed down (60 paths,
/// --concurrency 1, 20 ms added per request) so the token expires several
/// times: vault-sync logs in again transparently, the run succeeds and
/// every path is written; the private server's audit log shows the logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_kubernetes_token_is_renewed_by_logging_in_again() {
    let ns = TestNs::new("vc-relogin").await;
    let bao = PrivateBao::start().await;
    bao.enable_kubernetes_auth(&ns.kube, "2s").await;
    let proxy = TcpProxy::start(bao.port, Duration::from_millis(20));
    let expected = many_paths(&ns, 3, 20).await;
    let jwt = tool_jwt_file(&ns).await;

    let started = Instant::now();
    let run = ns
        .cli_env(
            &[
                "run",
                "-o",
                "json",
                "--concurrency",
                "1",
                "--vault-auth",
                "kubernetes",
                "--vault-jwt-file",
                &jwt.path,
            ],
            &private_env(&proxy.addr(), ""),
        )
        .await;
    let took = started.elapsed();
    assert_no_leak(&[&run.stdout, &run.stderr], &[&jwt.jwt]);
    assert_no_panic(&run);
    run.assert_code(0);
    assert_eq!(run.json()["summary"]["create"], 60, "{run}");
    assert!(failures(&run).is_empty(), "{run}");
    assert_all_written(&bao.root(), &ns, &expected).await;

    let logins = bao
        .audit_log()
        .entries()
        .requests_of(&["update", "create"], "auth/kubernetes/login")
        .len();
    assert!(
        took > Duration::from_secs(3) && logins >= 2,
        "the run took {took:?} with {logins} logins: the token never expired mid-run"
    );
    assert!(
        run.stderr.contains("logging in again"),
        "the re-login is logged:\n{run}"
    );
    eprintln!("relogin: run took {took:?}, {logins} logins");
}

/// A static token that stops being valid mid-run cannot be renewed: the
/// run fails (exit 1) with `auth_failed` errors on the paths it could not
/// write, saying the token is invalid, expired or revoked, does not panic,
/// and leaves no path half-written. The token is revoked as soon as the
/// first path lands rather than given a short TTL, so the moment does not
/// depend on how loaded the machine is (a 3 s TTL once ran out before the
/// first write); Vault answers an expired token and a revoked one alike
/// (403, and a self-lookup that fails), and so does vault-sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_invalid_mid_run_fails_cleanly_naming_paths() {
    let ns = TestNs::new("vc-expire").await;
    let bao = PrivateBao::start().await;
    bao.write_vault_sync_policy().await;
    let proxy = TcpProxy::start(bao.port, Duration::from_millis(20));
    let expected = many_paths(&ns, 3, 20).await;
    let reply = bao
        .root()
        .must(
            Method::POST,
            "auth/token/create",
            Some(&json!({
                "policies": ["vault-sync"],
                "ttl": "10m",
                "renewable": false,
                "display_name": "short-lived",
            })),
        )
        .await;
    let token = reply["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let started = Instant::now();
    let revoke_after_first_write = async {
        let folder = format!("secret/metadata/{}", ns.rel(""));
        let deadline = Instant::now() + Duration::from_secs(60);
        while bao.root().list(&folder).await.is_empty() {
            assert!(Instant::now() < deadline, "no path was written within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bao.root()
            .must(
                Method::POST,
                "auth/token/revoke",
                Some(&json!({ "token": token })),
            )
            .await;
    };
    let addr = proxy.addr();
    let env = private_env(&addr, &token);
    let (run, ()) = tokio::join!(
        ns.cli_env(&["run", "-o", "json", "--concurrency", "1"], &env),
        revoke_after_first_write
    );
    let took = started.elapsed();
    assert_no_leak(&[&run.stdout, &run.stderr], &[&token]);
    assert_no_panic(&run);
    run.assert_code(1);
    let failed = failures(&run);
    let prefix = ns.rel("");
    // The first 403 after expiry is told apart from a missing policy by a
    // self-lookup of the token: every path not written then fails as
    // `auth_failed`, saying why, with its own path on its row.
    let named: Vec<&(String, String, String)> = failed
        .iter()
        .filter(|(path, kind, message)| {
            kind == "auth_failed"
                && message.contains("the Vault token is invalid, expired or revoked")
                && path.contains(&prefix)
        })
        .collect();
    assert!(
        !named.is_empty(),
        "expected auth_failed errors naming paths and the token's expiry:\n{run}"
    );
    // Every failure is about the expired token, nothing else.
    for (path, kind, message) in &failed {
        assert_eq!(kind, "auth_failed", "{path}: {message}");
    }
    let (whole, _) = assert_whole_or_absent(&bao.root(), &ns, &expected).await;
    let whole = whole.len();
    assert!(whole < expected.len(), "the token was revoked mid-run");
    // Nothing was retried with the dead token until the 30 s default bound.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!(
        "token revoked mid-run: run took {took:?}, {whole}/{} paths written, {} failures; first: {:?}",
        expected.len(),
        failed.len(),
        named[0]
    );
}

// ---------------------------------------------------------------------------
// 3. AppRole
// ---------------------------------------------------------------------------

/// `run -o json` logging in with AppRole at `auth/<mount>` (the IDs from
/// the environment); neither ID may leak.
async fn approle_run(ns: &TestNs, mount: &str, role_id: &str, secret_id: &str) -> CliOutput {
    let run = ns
        .cli_env(
            &[
                "run",
                "-o",
                "json",
                "--vault-auth",
                "approle",
                "--vault-auth-path",
                mount,
            ],
            &[
                ("VAULT_TOKEN", ""),
                ("VAULT_ROLE_ID", role_id),
                ("VAULT_SECRET_ID", secret_id),
            ],
        )
        .await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[role_id, secret_id]);
    run
}

/// AppRole at a mount path of its own (`--vault-auth-path`) with the
/// role's IDs in VAULT_ROLE_ID/VAULT_SECRET_ID; a wrong secret ID fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_at_a_custom_mount() {
    let ns = TestNs::new("vc-approle").await;
    let data = one_path(&ns).await;
    let mut cleanup = SharedCleanup::default();
    let (mount, policy) = shared_auth_mount(&ns, &mut cleanup, "approle").await;
    ns.vault
        .must_post(
            &format!("auth/{mount}/role/vault-sync"),
            &json!({"token_policies": ["vault-sync", policy], "token_ttl": "10m"}),
            "approle role",
        )
        .await;
    let (_, body) = ns
        .vault
        .get(&format!("auth/{mount}/role/vault-sync/role-id"))
        .await;
    let role_id = body["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let (_, body) = ns
        .vault
        .post(
            &format!("auth/{mount}/role/vault-sync/secret-id"),
            &json!({}),
        )
        .await;
    let secret_id = body["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();

    let run = approle_run(&ns, &mount, &role_id, &secret_id).await;
    run.assert_code(0);
    let got = ns
        .vault
        .kv2_read("secret", &ns.rel("app/db"))
        .await
        .unwrap_or_else(|| panic!("not written:\n{run}"));
    assert_eq!(got.data, data);
    assert_marker(
        &got.custom_metadata,
        &format!("default/{}/app", ns.name),
        "app/db",
    );
    let (_, lookup) = ns
        .vault
        .post(
            &format!("auth/{mount}/role/vault-sync/secret-id/lookup"),
            &json!({ "secret_id": secret_id }),
        )
        .await;
    assert_eq!(
        lookup["data"]["secret_id_num_uses"], 0,
        "a secret ID without use limit: {lookup}"
    );

    // A wrong secret ID: auth failure, nothing more written.
    let bad_secret = format!("00000000-0000-4000-8000-{}", random_hex(12));
    let mark = audit_mark();
    let run = approle_run(&ns, &mount, &role_id, &bad_secret).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "Vault login with the approle (auth/{mount}) auth method failed"
        )),
        "{run}"
    );
    assert!(mark.entries().writes(&ns.audit_needle()).is_empty());
}

// ---------------------------------------------------------------------------
// 4. JWT
// ---------------------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An RSA key pair in `dir`: (private key file name, public key PEM).
fn rsa_key_pair(dir: &Path, name: &str) -> (String, String) {
    let key = format!("{name}.key");
    let public = format!("{name}.pub");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &key,
        ],
    );
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    let pem = std::fs::read_to_string(dir.join(&public)).expect("public key");
    (key, pem)
}

/// An RS256 JWT over `claims`, signed with `key` by `openssl dgst`.
fn sign_jwt(dir: &Path, key: &str, claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
    let payload = b64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let name = format!("jwt-{}", random_hex(6));
    std::fs::write(dir.join(format!("{name}.in")), &input).expect("signing input");
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            key,
            "-out",
            &format!("{name}.sig"),
            &format!("{name}.in"),
        ],
    );
    let sig = std::fs::read(dir.join(format!("{name}.sig"))).expect("signature");
    format!("{input}.{}", b64.encode(sig))
}

/// JWT auth at a mount of its own trusting one public key: a JWT signed
/// with its private key logs in (VAULT_SYNC_JWT, and --vault-jwt-file);
/// one signed by another key is refused as an auth failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_login_with_a_key_the_test_controls() {
    let ns = TestNs::new("vc-jwt").await;
    let data = one_path(&ns).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = rsa_key_pair(dir.path(), "trusted");
    let (other_key, _) = rsa_key_pair(dir.path(), "other");

    let mut cleanup = SharedCleanup::default();
    let (mount, policy) = shared_auth_mount(&ns, &mut cleanup, "jwt").await;
    ns.vault
        .must_post(
            &format!("auth/{mount}/config"),
            &json!({ "jwt_validation_pubkeys": [public] }),
            "jwt config",
        )
        .await;
    let audience = format!("vault-sync-it-{}", random_hex(6));
    ns.vault
        .must_post(
            &format!("auth/{mount}/role/ci"),
            &json!({
                "role_type": "jwt",
                "bound_audiences": [audience],
                "user_claim": "sub",
                "token_policies": ["vault-sync", policy],
                "token_ttl": "10m",
            }),
            "jwt role",
        )
        .await;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "sub": "ci-job-42",
        "aud": audience,
        "iss": "https://ci.example.test",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
    });
    let good = sign_jwt(dir.path(), &key, &claims);
    let forged = sign_jwt(dir.path(), &other_key, &claims);
    let args = [
        "run",
        "-o",
        "json",
        "--vault-auth",
        "jwt",
        "--vault-role",
        "ci",
        "--vault-auth-path",
        &mount,
    ];

    let run = ns
        .cli_env(&args, &[("VAULT_TOKEN", ""), ("VAULT_SYNC_JWT", &good)])
        .await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[&good]);
    run.assert_code(0);
    let got = ns
        .vault
        .kv2_read("secret", &ns.rel("app/db"))
        .await
        .unwrap_or_else(|| panic!("not written:\n{run}"));
    assert_eq!(got.data, data);
    assert_marker(
        &got.custom_metadata,
        &format!("default/{}/app", ns.name),
        "app/db",
    );

    // The same JWT from a file; the path is already in sync.
    let jwt_file = dir.path().join("ci.jwt");
    std::fs::write(&jwt_file, &good).expect("jwt file");
    let jwt_file = jwt_file.display().to_string();
    let mut file_args = args.to_vec();
    file_args.extend(["--vault-jwt-file", &jwt_file]);
    let run = ns.cli_env(&file_args, &[("VAULT_TOKEN", "")]).await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[&good]);
    run.assert_code(0);
    assert_eq!(run.json()["summary"]["unchanged"], 1, "{run}");

    // Signed by a key OpenBao does not trust.
    let mark = audit_mark();
    let run = ns
        .cli_env(&args, &[("VAULT_TOKEN", ""), ("VAULT_SYNC_JWT", &forged)])
        .await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[&forged]);
    assert_no_panic(&run);
    run.assert_code(1);
    assert!(
        run.stderr.contains(&format!(
            "Vault login with the jwt (auth/{mount}, role ci) auth method failed"
        )),
        "{run}"
    );
    assert!(mark.entries().writes(&ns.audit_needle()).is_empty());
}

// ---------------------------------------------------------------------------
// 5. TLS
// ---------------------------------------------------------------------------

/// A private OpenBao with a generated CA (`-dev-tls`): trusted through
/// VAULT_CACERT, `check` passes and `run` writes; without it the TLS
/// failure is a bounded "cannot reach Vault"; with VAULT_SKIP_VERIFY it
/// works and warns loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_cacert_without_it_and_skip_verify() {
    let ns = TestNs::new("vc-tls").await;
    let data = one_path(&ns).await;
    let bao = PrivateBao::start_tls().await;
    let ca = bao.ca_file();
    let base = private_env(&bao.addr, "root");
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = base.to_vec();
        env.extend_from_slice(extra);
        env
    };

    let mut env = with(&[]);
    env.push(("VAULT_CACERT", &ca));
    let check = ns.cli_env(&["check", "-o", "json"], &env).await;
    check.assert_code(0);
    let (ok, checks) = check_results(&check);
    assert!(ok && checks.values().all(|c| c.0), "{check}");
    assert!(
        checks.contains_key("vault: reachable and unsealed"),
        "{check}"
    );
    assert!(!check.stderr.contains("DISABLED"), "{check}");
    let run = ns.cli_env(&["run", "-o", "json"], &env).await;
    run.assert_code(0);
    match bao.root().state("secret", &ns.rel("app/db")).await {
        PathState::Written(Kv2Secret { data: got, .. }) => assert_eq!(got, data),
        other => panic!("not written over TLS: {other:?}\n{run}"),
    }

    // No CA: the certificate is not trusted; bounded by --vault-timeout.
    let started = Instant::now();
    let check = ns
        .cli_env(
            &["check", "-o", "json", "--vault-timeout", "2s"],
            &with(&[]),
        )
        .await;
    let took = started.elapsed();
    let checks = assert_check_fails(&check, &["vault: reachable"]);
    let detail = &checks["vault: reachable"].1;
    assert!(
        detail.contains(&format!("cannot reach Vault at {}", bao.addr))
            && detail.to_lowercase().contains("certificate"),
        "{check}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Verification off: works, and says so on stderr.
    let check = ns
        .cli_env(
            &["check", "-o", "json"],
            &with(&[("VAULT_SKIP_VERIFY", "true")]),
        )
        .await;
    check.assert_code(0);
    assert!(
        check
            .stderr
            .contains("TLS certificate verification for Vault is DISABLED"),
        "{check}"
    );
    eprintln!("tls: failing check took {took:?}");
}

// ---------------------------------------------------------------------------
// 6. A policy that denies one path
// ---------------------------------------------------------------------------

/// The policy grants secret/ (examples/vault-policy.hcl) but only `read`
/// under `secret/{data,metadata}/it/<ns>/locked/`: that path fails naming
/// what the token has and what it needs; the others are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denying_one_path_fails_only_that_path() {
    let ns = TestNs::new("vc-policy").await;
    let open_a = BTreeMap::from([("k".to_owned(), ns.value("open-a"))]);
    let open_b = BTreeMap::from([("k".to_owned(), ns.value("open-b"))]);
    let locked = BTreeMap::from([("k".to_owned(), ns.value("locked"))]);
    for (name, data) in [("a", &open_a), ("b", &open_b), ("c", &locked)] {
        let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ns.secret(name, &pairs).await;
    }
    ns.deployment(
        "open",
        &[(PATH, &ns.path("secret", "open"))],
        &PodRefs::new().env_from("a").volume("b"),
    )
    .await;
    ns.deployment(
        "locked",
        &[(PATH, &ns.path("secret", "locked"))],
        &PodRefs::new().env_from("c"),
    )
    .await;

    let mut cleanup = SharedCleanup::default();
    let policy = format!("{}-ro", ns.name);
    let text = format!(
        "{}\n{}\npath \"secret/data/{locked}/*\" {{ capabilities = [\"read\"] }}\npath \"secret/metadata/{locked}/*\" {{ capabilities = [\"read\"] }}\n",
        example_policy(),
        index_stanza(&ns),
        locked = ns.rel("locked"),
    );
    shared_policy(&ns, &mut cleanup, &policy, &text).await;
    let token = shared_token(&ns, &[&policy]).await;

    let run = ns
        .cli_env(&["run", "-o", "json"], &[("VAULT_TOKEN", &token)])
        .await;
    assert_no_leak(&[&run.stdout, &run.stderr], &[&token]);
    run.assert_code(1);
    let failed = failures(&run);
    let locked_path = ns.path("secret", "locked/c");
    assert_eq!(failed.len(), 1, "only the locked path fails:\n{run}");
    let (path, kind, message) = &failed[0];
    assert_eq!(path, &locked_path);
    assert_eq!(kind, "permission_denied");
    // Content is written before the marker, so the denied request is the
    // data write.
    let api = format!("secret/data/{}", ns.rel("locked/c"));
    assert!(
        message.contains(&api)
            && message.contains("grants [read]")
            && message.contains("create/update"),
        "the error names the path, what the token has and what it needs: {message}"
    );
    for (rest, data, owner) in [("open/a", &open_a, "open"), ("open/b", &open_b, "open")] {
        assert_eq!(result_of(&run, &ns.path("secret", rest)), "applied");
        let got = ns
            .vault
            .kv2_read("secret", &ns.rel(rest))
            .await
            .unwrap_or_else(|| panic!("{rest} not written:\n{run}"));
        assert_eq!(&got.data, data);
        assert_marker(
            &got.custom_metadata,
            &format!("default/{}/{owner}", ns.name),
            rest,
        );
    }
    assert!(
        ns.vault
            .kv2_metadata("secret", &ns.rel("locked/c"))
            .await
            .is_none(),
        "nothing at the denied path"
    );
}

// ---------------------------------------------------------------------------
// 8. Namespaces
// ---------------------------------------------------------------------------

/// OpenBao 2.x namespaces: `--vault-namespace team-a`, then VAULT_NAMESPACE
/// and BAO_NAMESPACE, write and read inside the namespace's own `secret/`
/// mount; the root namespace's `secret/` stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_flag_and_env_write_into_the_namespace() {
    let ns = TestNs::new("vc-ns").await;
    let bao = PrivateBao::start().await;
    let root = bao.root();
    root.must(Method::POST, "sys/namespaces/team-a", None).await;
    let team_a = root.in_namespace("team-a");
    team_a
        .must(
            Method::POST,
            "sys/mounts/secret",
            Some(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    let a = one_path(&ns).await;
    let env = private_env(&bao.addr, "root");

    // Audit entries of vault-sync's own requests (not the test's checks).
    let mut sent = Vec::new();
    let mark = bao.audit_log().mark();
    let run = ns
        .cli_env(&["run", "-o", "json", "--vault-namespace", "team-a"], &env)
        .await;
    sent.extend(mark.raw_entries());
    run.assert_code(0);
    let rel_a = ns.rel("app/db");
    match team_a.state("secret", &rel_a).await {
        PathState::Written(Kv2Secret {
            data,
            custom_metadata: md,
            ..
        }) => {
            assert_eq!(data, a);
            assert_marker(&md, &format!("default/{}/app", ns.name), &rel_a);
        }
        other => panic!("not in team-a: {other:?}\n{run}"),
    }
    assert_eq!(root.state("secret", &rel_a).await, PathState::Absent);
    assert_ne!(
        team_a.state("secret", "vault-sync/index/default").await,
        PathState::Absent,
        "the index lives in the namespace too"
    );

    // VAULT_NAMESPACE: a second Deployment lands in team-a; the first is
    // seen there as unchanged.
    let b = BTreeMap::from([("token".to_owned(), ns.value("b"))]);
    ns.secret("db2", &[("token", &b["token"])]).await;
    ns.deployment(
        "app2",
        &[(PATH, &ns.path("secret", "app2"))],
        &PodRefs::new().env_from("db2"),
    )
    .await;
    let mut with_env = env.to_vec();
    with_env.push(("VAULT_NAMESPACE", "team-a"));
    let mark = bao.audit_log().mark();
    let run = ns.cli_env(&["run", "-o", "json"], &with_env).await;
    sent.extend(mark.raw_entries());
    run.assert_code(0);
    let summary = &run.json()["summary"];
    assert_eq!(summary["create"], 1, "{run}");
    assert_eq!(summary["unchanged"], 1, "{run}");
    let rel_b = ns.rel("app2/db2");
    match team_a.state("secret", &rel_b).await {
        PathState::Written(Kv2Secret { data, .. }) => assert_eq!(data, b),
        other => panic!("not in team-a: {other:?}\n{run}"),
    }
    assert_eq!(root.state("secret", &rel_b).await, PathState::Absent);
    assert!(
        root.list_recursive("secret/metadata", "it")
            .await
            .is_empty()
    );

    // BAO_NAMESPACE: plan sees both paths in sync (exit 0, not 2).
    let mut with_bao = env.to_vec();
    with_bao.push(("BAO_NAMESPACE", "team-a"));
    let mark = bao.audit_log().mark();
    let plan = ns.cli_env(&["plan", "-o", "json"], &with_bao).await;
    sent.extend(mark.raw_entries());
    plan.assert_code(0);

    // Every request the three invocations made carried the namespace.
    let requests: Vec<&Value> = sent.iter().filter(|e| e["type"] == "request").collect();
    assert!(requests.len() > 10, "{} requests audited", requests.len());
    for e in &requests {
        assert_eq!(e["request"]["namespace"]["path"], "team-a/", "{e}");
    }
}

/// `check` against a namespace: sys/health exists only in the root
/// namespace, so `check` must not send X-Vault-Namespace with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_in_a_namespace_passes() {
    let ns = TestNs::new("vc-nscheck").await;
    let bao = PrivateBao::start().await;
    let root = bao.root();
    root.must(Method::POST, "sys/namespaces/team-a", None).await;
    root.in_namespace("team-a")
        .must(
            Method::POST,
            "sys/mounts/secret",
            Some(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    one_path(&ns).await;
    let check = ns
        .cli_env(
            &["check", "-o", "json", "--vault-namespace", "team-a"],
            &private_env(&bao.addr, "root"),
        )
        .await;
    check.assert_code(0);
    let (ok, _) = check_results(&check);
    assert!(ok, "{check}");
}

// ---------------------------------------------------------------------------
// 9. check
// ---------------------------------------------------------------------------

/// A good setup (Kubernetes auth, the right role, policy `vault-sync`):
/// every check passes, in JSON and in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_all_green_with_kubernetes_auth() {
    let ns = TestNs::new("vc-green").await;
    one_path(&ns).await;
    let jwt = tool_jwt_file(&ns).await;
    let args = [
        "check",
        "--vault-auth",
        "kubernetes",
        "--vault-role",
        STACK.get("VAULT_SYNC_K8S_ROLE"),
        "--vault-jwt-file",
        &jwt.path,
    ];
    let env = [("VAULT_TOKEN", ""), ("VAULT_SYNC_INDEX_MOUNT", "secret")];
    let mut json_args = args.to_vec();
    json_args.extend(["-o", "json"]);
    let check = ns.cli_env(&json_args, &env).await;
    assert_no_leak(&[&check.stdout, &check.stderr], &[&jwt.jwt]);
    check.assert_code(0);
    let (ok, checks) = check_results(&check);
    assert!(ok, "{check}");
    for name in [
        "vault: reachable and unsealed",
        "vault: login (kubernetes)",
        "vault: mount secret/",
        "vault: policy capabilities",
        "kubernetes: list deployments",
    ] {
        let (ok, _, fix) = checks
            .get(name)
            .unwrap_or_else(|| panic!("no check {name:?}:\n{check}"));
        assert!(*ok && fix.is_none(), "{name}:\n{check}");
    }
    assert!(checks.values().all(|c| c.0 && c.2.is_none()), "{check}");
    assert!(
        checks["vault: login (kubernetes)"].1.contains("vault-sync"),
        "the login detail lists the policies:\n{check}"
    );

    let table = ns.cli_env(&args, &env).await;
    table.assert_code(0);
    assert!(table.stdout.contains("All checks passed."), "{table}");
    assert!(!table.stdout.contains('✗'), "{table}");
}

/// Each broken setup is one ✗ with a fix, the rest as before: wrong role
/// (login), a policy without metadata capabilities (capabilities, naming
/// the path), Vault unreachable (reachable), a nonexistent mount in an
/// annotation (mount).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_broken_setup() {
    let ns = TestNs::new("vc-broken").await;
    one_path(&ns).await;
    let jwt = tool_jwt_file(&ns).await;

    // Wrong role.
    let wrong = format!("nope-{}", random_hex(6));
    let check = ns
        .cli_env(
            &[
                "check",
                "-o",
                "json",
                "--vault-auth",
                "kubernetes",
                "--vault-role",
                &wrong,
                "--vault-jwt-file",
                &jwt.path,
            ],
            &[("VAULT_TOKEN", ""), ("VAULT_SYNC_INDEX_MOUNT", "secret")],
        )
        .await;
    assert_no_leak(&[&check.stdout, &check.stderr], &[&jwt.jwt]);
    let checks = assert_check_fails(&check, &["vault: login (kubernetes)"]);
    let (_, detail, fix) = &checks["vault: login (kubernetes)"];
    assert!(
        detail.contains("Vault login with the kubernetes") && detail.contains(&wrong),
        "{check}"
    );
    assert!(
        fix.as_deref().is_some_and(|f| f.contains("--vault-role")),
        "{check}"
    );

    // A policy with content but no metadata capabilities.
    let mut cleanup = SharedCleanup::default();
    let policy = format!("{}-nometa", ns.name);
    let text = format!(
        "path \"secret/data/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"patch\", \"delete\"] }}\n\
         path \"sys/internal/ui/mounts/*\" {{ capabilities = [\"read\"] }}\n\
         path \"sys/capabilities-self\" {{ capabilities = [\"update\"] }}\n\
         path \"auth/token/lookup-self\" {{ capabilities = [\"read\"] }}\n{}",
        index_stanza(&ns)
    );
    shared_policy(&ns, &mut cleanup, &policy, &text).await;
    let token = shared_token(&ns, &[&policy]).await;
    let check = ns
        .cli_env(&["check", "-o", "json"], &[("VAULT_TOKEN", &token)])
        .await;
    assert_no_leak(&[&check.stdout, &check.stderr], &[&token]);
    let checks = assert_check_fails(&check, &["vault: policy capabilities"]);
    let detail = &checks["vault: policy capabilities"].1;
    assert!(
        detail.contains(&format!(
            "secret/metadata/{}: read, update, delete",
            ns.rel("app/db")
        )),
        "{check}"
    );
    assert!(
        !detail.contains(&format!("secret/data/{}", ns.rel("app/db"))),
        "the content path is fine:\n{check}"
    );

    // Vault unreachable.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let check = ns
        .cli_env(
            &["check", "-o", "json", "--vault-timeout", "2s"],
            &[("VAULT_ADDR", &dead)],
        )
        .await;
    let took = started.elapsed();
    let checks = assert_check_fails(&check, &["vault: reachable"]);
    assert!(
        checks["vault: reachable"]
            .1
            .contains(&format!("cannot reach Vault at {dead}")),
        "{check}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("check, Vault unreachable: {took:?}");

    // A Deployment naming a mount that does not exist.
    let mount = format!("nomount-{}", random_hex(6));
    ns.deployment(
        "lost",
        &[(PATH, &format!("{mount}/app"))],
        &PodRefs::new().env_from("db"),
    )
    .await;
    let check = ns.cli_env(&["check", "-o", "json"], &[]).await;
    let name = format!("vault: mount {mount}");
    let checks = assert_check_fails(&check, &[&name]);
    assert!(
        checks[&name]
            .1
            .contains("no secrets engine is mounted there"),
        "{check}"
    );
    // The table says the same with ✗.
    let table = ns.cli_env(&["check"], &[]).await;
    table.assert_code(1);
    assert!(
        table.stdout.contains('✗') && table.stdout.contains("1 of "),
        "{table}"
    );
}

// ---------------------------------------------------------------------------
// 10. A revoked token
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_one_auth_failure_never_an_invalid_path() {
    let case = ClusterNs::new("int-revoked").await;
    let ns = &case.ns;
    case.secret("db", &["password"]).await;
    case.secret("cache", &["url"]).await;
    case.auto("api", "secret/api", &["db"], &[]).await;
    case.auto("web", "secret/web", &["cache"], &[]).await;
    let (token, _) = ns
        .vault
        .create_token(&json!({"policies": ["root"], "display_name": "revoked", "ttl": "10m"}))
        .await;
    ns.vault
        .must_post("auth/token/revoke", &json!({ "token": token }), "revoke")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault-sync.prom");
    let file_arg = file.display().to_string();

    let out = case
        .cli_env(
            &["run", "-o", "json", "--metrics-file", &file_arg],
            &[("VAULT_TOKEN", &token), ("VAULT_SYNC_AUTH", "token")],
        )
        .await;
    assert_no_leak(&[&out.stdout, &out.stderr], &[&token]);
    out.assert_code(1);
    let said = out
        .stderr
        .matches("the Vault token is invalid, expired or revoked")
        .count();
    assert_eq!(said, 1, "said once on stderr:\n{out}");
    if !out.stdout.trim().is_empty() {
        let json = out.json();
        for item in json["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(json["errors"].as_array().into_iter().flatten())
        {
            assert_ne!(item["error_type"], "invalid_path", "{item}\n{out}");
        }
    }
    let metrics = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("metrics file {file_arg}: {e}\n{out}"));
    let auth_failed = exposition_value(
        &metrics,
        r#"vault_sync_last_run_errors{error_type="auth_failed"}"#,
    );
    assert!(
        auth_failed.is_some_and(|v| v >= 1.0),
        "auth_failed not counted:\n{metrics}"
    );
    let invalid_path = exposition_value(
        &metrics,
        r#"vault_sync_last_run_errors{error_type="invalid_path"}"#,
    )
    .unwrap_or(0.0);
    assert_eq!(invalid_path, 0.0, "invalid_path counted:\n{metrics}");
    let successes: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("vault_sync_last_run_auth_attempts{") && l.contains(r#"result="success""#)
        })
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v != 0.0)
        })
        .collect();
    assert_eq!(
        successes,
        Vec::<&str>::new(),
        "a login counted as a success"
    );
}
