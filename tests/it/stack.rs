//! Foundation: the local stack answers as the rest of the suite assumes.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;
use vaultrs::api::kv2::requests::SetSecretMetadataRequest;

use crate::harness::{PodRefs, STACK, TestNs, random_hex, vaultrs_client};
use crate::vault::VaultHttp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_namespace_secret_and_deployment_round_trip() {
    let ns = TestNs::new("kube").await;
    let value = ns.value("kube");
    ns.secret("db", &[("password", &value)]).await;
    let path = ns.path("secret", "app");
    ns.deployment(
        "api",
        &[("vault-sync.io/path", &path)],
        &PodRefs::new().env_from("db").volume("db"),
    )
    .await;

    let secret = ns.secrets_api().get("db").await.expect("get Secret");
    let data = secret.data.expect("Secret data");
    assert_eq!(data["password"].0, value.as_bytes());

    let deployment = ns
        .deployments_api()
        .get("api")
        .await
        .expect("get Deployment");
    let annotations = deployment.metadata.annotations.expect("annotations");
    assert_eq!(annotations["vault-sync.io/path"], path);
    let pod = deployment.spec.template.spec.expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("busybox"));
    let env_from = container.env_from.as_ref().expect("envFrom");
    assert_eq!(
        env_from[0].secret_ref.as_ref().map(|r| r.name.as_str()),
        Some("db")
    );
    let volumes = pod.volumes.expect("volumes");
    assert_eq!(
        volumes[0]
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref()),
        Some("db")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_kv2_with_custom_metadata_via_vaultrs() {
    let ns = TestNs::new("vault").await;
    let client = vaultrs_client(STACK.vault_token());
    let rel = ns.rel("vaultrs");
    let value = ns.value("vaultrs");
    let data = HashMap::from([("token".to_owned(), value.clone())]);

    let written = vaultrs::kv2::set(&client, "secret", &rel, &data)
        .await
        .expect("kv2 set");
    assert_eq!(written.version, 1);

    let custom = HashMap::from([
        ("managed-by".to_owned(), "someone".to_owned()),
        ("team".to_owned(), "payments".to_owned()),
    ]);
    vaultrs::kv2::set_metadata(
        &client,
        "secret",
        &rel,
        Some(SetSecretMetadataRequest::builder().custom_metadata(custom.clone())),
    )
    .await
    .expect("kv2 set_metadata");

    let read: HashMap<String, String> = vaultrs::kv2::read(&client, "secret", &rel)
        .await
        .expect("kv2 read");
    assert_eq!(read, data);
    let metadata = vaultrs::kv2::read_metadata(&client, "secret", &rel)
        .await
        .expect("kv2 read_metadata");
    assert_eq!(metadata.current_version, 1);
    assert_eq!(metadata.custom_metadata, Some(custom));

    // The raw HTTP helper sees the same thing.
    let raw = ns.vault.kv2_read("secret", &rel).await.expect("present");
    assert_eq!(raw.data, BTreeMap::from([("token".to_owned(), value)]));
    assert_eq!(raw.custom_metadata["team"], "payments");
}

/// A TokenRequest token of vault-sync/vault-sync logs in to role
/// vault-sync-operator and gets policy vault-sync; another role refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_auth_login_with_token_request() {
    let ns = TestNs::new("k8sauth").await;
    let sa_ns = STACK.get("VAULT_SYNC_SA_NAMESPACE");
    let sa_name = STACK.get("VAULT_SYNC_SA_NAME");
    let role = STACK.get("VAULT_SYNC_K8S_ROLE");

    let jwt = service_account_token(&ns.kube, sa_ns, sa_name).await;
    let client = vaultrs_client(STACK.vault_token());
    let auth = vaultrs::auth::kubernetes::login(&client, "kubernetes", role, &jwt)
        .await
        .expect("kubernetes login");
    assert!(
        auth.policies.iter().any(|p| p == "vault-sync"),
        "policies: {:?}",
        auth.policies
    );

    // The policy grants secret/ and nothing on team/.
    let as_tool = VaultHttp::with_token(&auth.client_token);
    let value = ns.value("k8sauth");
    let (status, body) = as_tool
        .post(
            &format!("secret/data/{}", ns.rel("probe")),
            &json!({"data": {"k": value}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = as_tool
        .post(
            &format!("team/data/{}", ns.rel("probe")),
            &json!({"data": {"k": value}}),
        )
        .await;
    assert_eq!(status, 403, "policy vault-sync must not reach team/");
    let _ = as_tool
        .request(reqwest::Method::POST, "auth/token/revoke-self", None)
        .await;

    let wrong = format!("no-such-role-{}", random_hex(6));
    let err = vaultrs::auth::kubernetes::login(&client, "kubernetes", &wrong, &jwt).await;
    assert!(err.is_err(), "login with role {wrong} must fail");
}

/// A fresh token of a ServiceAccount (TokenRequest subresource).
pub async fn service_account_token(kube: &kube::Client, namespace: &str, name: &str) -> String {
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }))
    .expect("token request");
    let response = Api::<ServiceAccount>::namespaced(kube.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    let token = response
        .status
        .and_then(|s| s.token)
        .expect("TokenRequest status.token");
    assert!(!token.is_empty());
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_push_read_delete() {
    crate::harness::init_crypto();
    let http = reqwest::Client::new();
    let base = STACK.pushgateway_url();
    let job = format!("it-{}", random_hex(8));
    let group = format!("{base}/metrics/job/{job}");
    let text = "# TYPE it_probe gauge\nit_probe{kind=\"foundation\"} 42\n";

    let put = http
        .put(&group)
        .body(text)
        .send()
        .await
        .expect("PUT metrics");
    assert!(put.status().is_success(), "PUT: {}", put.status());

    let pushed = pushed_group(&http, &job).await.expect("group pushed");
    let sample = &pushed["it_probe"]["metrics"][0];
    assert_eq!(sample["labels"]["kind"], "foundation");
    assert_eq!(sample["value"], "42");

    let del = http.delete(&group).send().await.expect("DELETE group");
    assert!(del.status().is_success(), "DELETE: {}", del.status());
    assert!(pushed_group(&http, &job).await.is_none(), "group deleted");
}

/// The group with `job` from `GET /api/v1/metrics`, if pushed.
pub async fn pushed_group(http: &reqwest::Client, job: &str) -> Option<serde_json::Value> {
    let body: serde_json::Value = http
        .get(format!("{}/api/v1/metrics", STACK.pushgateway_url()))
        .send()
        .await
        .expect("GET /api/v1/metrics")
        .json()
        .await
        .expect("metrics JSON");
    body["data"]
        .as_array()?
        .iter()
        .find(|g| g["labels"]["job"] == job)
        .cloned()
}
