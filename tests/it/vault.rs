//! The one raw Vault client of the end-to-end suite, [`VaultHttp`], and what
//! it reads back: a KV v2 secret ([`Kv2Secret`]), the whole state of a KV
//! v2 path ([`PathState`]) and the vault-sync index.
//!
//! It talks to the shared OpenBao of the stack ([`VaultHttp::root`],
//! [`VaultHttp::with_token`]) or to any other Vault, such as a private
//! server a fault test starts ([`VaultHttp::new`]), optionally in a Vault
//! namespace ([`VaultHttp::in_namespace`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{STACK, init_crypto};

/// Key → value of a secret or a metadata map.
pub type Data = BTreeMap<String, String>;

/// The raw HTTP API of one Vault with one token (none if empty),
/// optionally in a Vault namespace.
#[derive(Clone)]
pub struct VaultHttp {
    http: reqwest::Client,
    addr: String,
    token: String,
    namespace: Option<String>,
}

/// A KV v2 secret as read back (its current version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv2Secret {
    pub data: Data,
    pub version: u64,
    pub custom_metadata: Data,
}

/// What a KV v2 path holds, metadata included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Absent,
    /// custom_metadata but no version: a create interrupted between the
    /// marker and the content (vault-sync writes content before the marker,
    /// so it never leaves a path like this).
    MarkerOnly(Data),
    /// The current version, readable.
    Written(Kv2Secret),
    /// The current version carries a deletion_time.
    SoftDeleted {
        version: u64,
        custom_metadata: Data,
    },
}

impl VaultHttp {
    /// The shared OpenBao with its root token.
    pub fn root() -> Self {
        Self::with_token(STACK.vault_token())
    }

    /// The shared OpenBao with `token`.
    pub fn with_token(token: &str) -> Self {
        Self::new(STACK.vault_addr(), token, None, Duration::from_secs(30))
    }

    /// Any Vault at `addr`. `token`: none if empty; `ca`: trust only this
    /// CA (PEM file); `timeout`: per request.
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

    /// The same client, its requests in Vault namespace `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self {
            namespace: Some(namespace.to_owned()),
            ..self.clone()
        }
    }

    /// One request to `/v1/<path>`: status and JSON body (Null if none);
    /// `(0, error text)` when the server cannot be reached.
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

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.request(Method::DELETE, path, None).await.0
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

    /// A `POST` that must succeed (2xx); returns the body. `what` names the
    /// request in the failure message.
    pub async fn must_post(&self, path: &str, body: &Value, what: &str) -> Value {
        let (status, reply) = self.post(path, body).await;
        assert!((200..300).contains(&status), "{what}: {status} {reply}");
        reply
    }

    /// `LIST <path>`: the keys (sub-folders end with '/'); empty if none or
    /// refused. Fails if the server cannot be reached.
    pub async fn list(&self, path: &str) -> Vec<String> {
        let method = Method::from_bytes(b"LIST").expect("LIST method");
        let (status, body) = self.request(method, path, None).await;
        assert_ne!(status, 0, "LIST {path} on {}: {body}", self.addr);
        if status != 200 {
            return Vec::new();
        }
        body["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every leaf under `<list_root>/<folder>` (relative to `list_root`),
    /// sorted; `list_root` is `<mount>/metadata` for KV v2, the mount for
    /// KV v1.
    pub async fn list_recursive(&self, list_root: &str, folder: &str) -> Vec<String> {
        leaves_under(folder, |dir| {
            let path = format!("{list_root}/{dir}");
            async move { self.list(&path).await }
        })
        .await
    }

    /// Reads `<mount>/data/<rel>`; `None` if absent (or soft-deleted).
    pub async fn kv2_read(&self, mount: &str, rel: &str) -> Option<Kv2Secret> {
        let (status, body) = self.get(&format!("{mount}/data/{rel}")).await;
        match status {
            200 => Some(Kv2Secret {
                data: string_map(&body["data"]["data"]),
                version: body["data"]["metadata"]["version"]
                    .as_u64()
                    .expect("KV v2 read has a version"),
                custom_metadata: string_map(&body["data"]["metadata"]["custom_metadata"]),
            }),
            404 => None,
            s => panic!("read {mount}/data/{rel}: {s} {body}"),
        }
    }

    /// Reads `<mount>/metadata/<rel>` (the `data` object); `None` if absent.
    pub async fn kv2_metadata(&self, mount: &str, rel: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("{mount}/metadata/{rel}")).await;
        match status {
            200 => Some(body["data"].clone()),
            404 => None,
            s => panic!("read {mount}/metadata/{rel}: {s} {body}"),
        }
    }

    /// What the KV v2 path `<mount>/<rel>` holds: its metadata, then (if
    /// its current version is readable) its content.
    pub async fn state(&self, mount: &str, rel: &str) -> PathState {
        let Some(md) = self.kv2_metadata(mount, rel).await else {
            return PathState::Absent;
        };
        let custom_metadata = string_map(&md["custom_metadata"]);
        let current = md["current_version"].as_u64().unwrap_or(0);
        if current == 0 {
            return PathState::MarkerOnly(custom_metadata);
        }
        if current_is_deleted(&md) {
            return PathState::SoftDeleted {
                version: current,
                custom_metadata,
            };
        }
        let secret = self
            .kv2_read(mount, rel)
            .await
            .unwrap_or_else(|| panic!("{mount}/{rel}: metadata without readable data"));
        PathState::Written(secret)
    }

    /// Writes a new version without check-and-set (a foreign writer);
    /// returns the new version.
    pub async fn kv2_write(&self, mount: &str, rel: &str, data: &[(&str, &str)]) -> u64 {
        let map: BTreeMap<&str, &str> = data.iter().copied().collect();
        let (status, body) = self
            .post(&format!("{mount}/data/{rel}"), &json!({ "data": map }))
            .await;
        assert_eq!(status, 200, "write {mount}/data/{rel}: {body}");
        body["data"]["version"].as_u64().expect("version")
    }

    /// Replaces the custom_metadata map.
    pub async fn kv2_set_custom_metadata(&self, mount: &str, rel: &str, md: &[(&str, &str)]) {
        let map: BTreeMap<&str, &str> = md.iter().copied().collect();
        self.must_post(
            &format!("{mount}/metadata/{rel}"),
            &json!({ "custom_metadata": map }),
            &format!("metadata {mount}/metadata/{rel}"),
        )
        .await;
    }

    /// Reads a KV v1 secret; `None` if absent.
    pub async fn kv1_read(&self, mount: &str, rel: &str) -> Option<Data> {
        let (status, body) = self.get(&format!("{mount}/{rel}")).await;
        match status {
            200 => Some(string_map(&body["data"])),
            404 => None,
            s => panic!("read {mount}/{rel}: {s} {body}"),
        }
    }

    /// Writes the ACL policy `name` (HCL text); fails unless Vault accepts it.
    pub async fn write_policy(&self, name: &str, hcl: &str) {
        self.must_post(
            &format!("sys/policies/acl/{name}"),
            &json!({ "policy": hcl }),
            &format!("policy {name}"),
        )
        .await;
    }

    /// `auth/token/create` with `request` (policies, ttl, display_name, …);
    /// fails unless 200. Returns the new token and Vault's whole answer.
    pub async fn create_token(&self, request: &Value) -> (String, Value) {
        let (status, body) = self.post("auth/token/create", request).await;
        assert_eq!(status, 200, "create token {request}: {body}");
        let token = body["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned();
        (token, body)
    }

    /// The index secret `<mount>/vault-sync/index/<cluster>` as text
    /// (`key=value` lines; "" if none).
    pub async fn index_text(&self, mount: &str, cluster: &str) -> String {
        self.kv2_read(mount, &index_rel(cluster))
            .await
            .map(|s| {
                s.data
                    .iter()
                    .map(|(k, v)| format!("{k}={}\n", chunk_text(&s.data, k, v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The display paths the index `<mount>/vault-sync/index/<cluster>`
    /// lists, in stored order, duplicates kept; empty if there is none.
    pub async fn index_paths(&self, mount: &str, cluster: &str) -> Vec<String> {
        let Some(index) = self.kv2_read(mount, &index_rel(cluster)).await else {
            return Vec::new();
        };
        assert_eq!(
            index.data.get("format").map(String::as_str),
            Some(INDEX_FORMAT),
            "{:?}",
            index.data.keys()
        );
        index_lines(&index.data)
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    /// Deletes what a run with `--cluster-name <cluster>` wrote to `mount`:
    /// every path under `<mount>/clusters/<cluster>/`, then its index.
    pub async fn delete_cluster_paths(&self, mount: &str, cluster: &str) {
        let root = format!("{mount}/metadata");
        for leaf in self
            .list_recursive(&root, &format!("clusters/{cluster}"))
            .await
        {
            self.delete(&format!("{root}/{leaf}")).await;
        }
        self.delete(&format!("{root}/{}", index_rel(cluster))).await;
    }
}

/// Whether the current version of a KV v2 path is soft-deleted, from its
/// metadata (the `data` of `<mount>/metadata/<rel>`).
pub fn current_is_deleted(md: &Value) -> bool {
    let current = md["current_version"].as_u64().unwrap_or(0);
    md["versions"][current.to_string()]["deletion_time"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
}

/// The index of cluster `cluster` inside its mount.
pub fn index_rel(cluster: &str) -> String {
    format!("vault-sync/index/{cluster}")
}

/// The policy vault-sync ships, `examples/vault-policy.hcl`, as HCL text.
pub fn example_policy() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vault-policy.hcl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every leaf under `folder`, sorted, walking it with `list` (which gives a
/// folder's keys, sub-folders ending with '/').
pub async fn leaves_under<F, Fut>(folder: &str, mut list: F) -> Vec<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut out = Vec::new();
    let mut todo = vec![folder.trim_end_matches('/').to_owned()];
    while let Some(dir) = todo.pop() {
        for key in list(dir.clone()).await {
            let child = format!("{dir}/{}", key.trim_end_matches('/'));
            if key.ends_with('/') {
                todo.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    out
}

/// A Vault answer's status and JSON body (Null if none, a string if not JSON).
pub async fn status_and_body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// The index format vault-sync writes.
pub const INDEX_FORMAT: &str = "vault-sync-index/v2";

/// JSON lines as an index chunk of [`INDEX_FORMAT`] stores them.
pub fn index_chunk(lines: &str) -> String {
    vault_sync::core::index::pack_chunk(lines.as_bytes())
}

/// The text of one value of a stored index: an `entries-NNNN` chunk of
/// [`INDEX_FORMAT`] unpacked (as it is if it does not unpack).
fn chunk_text(data: &Data, key: &str, value: &str) -> String {
    let packed = data.get("format").map(String::as_str) == Some(INDEX_FORMAT);
    match packed && key.starts_with("entries-") {
        true => vault_sync::core::index::unpack_chunk(value).unwrap_or_else(|| value.to_owned()),
        false => value.to_owned(),
    }
}

/// The entries of a stored index (`format` plus `entries-NNNN` chunks of
/// JSON lines, each carrying its display path): (display path, line), in
/// stored order, duplicates kept.
pub fn index_lines(data: &Data) -> Vec<(String, String)> {
    data.iter()
        .filter(|(k, _)| k.starts_with("entries-"))
        .map(|(k, chunk)| chunk_text(data, k, chunk))
        .collect::<Vec<_>>()
        .iter()
        .flat_map(|chunk| chunk.lines())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("index line is JSON");
            let path = v["path"].as_str().expect("index line has a path");
            (path.to_owned(), line.to_owned())
        })
        .collect()
}

/// A JSON object's values as strings (non-strings as JSON text).
pub fn string_map(v: &Value) -> Data {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let s = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}
