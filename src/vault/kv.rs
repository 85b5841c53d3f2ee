//! KV operations: mount lookup, read (content + version + ownership in one
//! request), check-and-set writes, deletes, metadata listing.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::client::{MakePieces, Payload, Reply, RequestBody, Vault};
use super::error::{ServerSays, VaultError, error_messages, server_says};
use crate::core::index::IndexRead;
use crate::core::ownership::PathMetadata;
use crate::core::plan::{Observed, ObservedSecret, Write};
use crate::core::value::ValueDigest;
use crate::core::vault_path::{KvLocation, KvVersion, Mount};

const JSON: &str = "application/json";

impl Vault {
    /// The mount holding `path`, from the server's mount table.
    pub async fn lookup_mount(&self, path: &str) -> Result<Mount, VaultError> {
        let api = format!("sys/internal/ui/mounts/{path}");
        let reply = self.request(Method::GET, &api, None, JSON).await?;
        match reply.status {
            s if s.is_success() => {
                let data = &reply.body["data"];
                let mount_path = data["path"].as_str().unwrap_or_default().to_owned();
                let engine = data["type"].as_str().unwrap_or_default().to_owned();
                if mount_path.is_empty() {
                    return Err(VaultError::InvalidPath {
                        path: path.to_owned(),
                        message: "no secrets engine is mounted there; check the mount with `vault secrets list`".into(),
                    });
                }
                let version = data["options"]["version"].as_str().unwrap_or("1");
                let kv_version = match engine.as_str() {
                    "kv" if version == "2" => Some(KvVersion::V2),
                    "kv" | "generic" => Some(KvVersion::V1),
                    _ => None,
                };
                Ok(Mount {
                    path: mount_path.into(),
                    engine,
                    kv_version,
                })
            }
            // Vault answers 403 both when no mount exists at the path and
            // when the token has no capability under it. Ask the server
            // which it is: no capability at all on the path (in either KV
            // spelling) means the policy does not cover it.
            StatusCode::FORBIDDEN => {
                let mut spellings = vec![path.to_owned()];
                if let Some((first, rest)) = path.split_once('/') {
                    spellings.push(format!("{first}/data/{rest}"));
                }
                let covered = match self.capabilities(&spellings).await {
                    Ok(caps) => caps.values().flatten().any(|c| c != "deny"),
                    Err(_) => true,
                };
                if covered {
                    Err(VaultError::InvalidPath {
                        path: path.to_owned(),
                        message: "no secrets engine is mounted there; check `vault secrets list`, or fix vault-sync.io/path".into(),
                    })
                } else {
                    Err(VaultError::PermissionDenied {
                        operation: "read",
                        path: spellings.join(" (or ") + if spellings.len() > 1 { ")" } else { "" },
                        capability: "read/create/update",
                        granted: Some("deny".into()),
                    })
                }
            }
            status => Err(unexpected(status, "read", &api, &reply.body)),
        }
    }

    /// Reads content, version and ownership of one path.
    pub async fn read(&self, loc: &KvLocation) -> Result<Observed, VaultError> {
        let api = loc.data_path();
        let reply = self.request(Method::GET, &api, None, JSON).await?;
        match (loc.version, reply.status) {
            (_, StatusCode::FORBIDDEN) => Err(VaultError::denied("read", api, "read")),
            (KvVersion::V1, s) if s.is_success() => Ok(Observed::Present(ObservedSecret {
                version: 0,
                deleted: false,
                data: observed_data(&reply.body["data"]),
                custom_metadata: BTreeMap::new(),
            })),
            (KvVersion::V2, s) if s.is_success() || s == StatusCode::NOT_FOUND => {
                Ok(parse_v2_read(&reply))
            }
            (KvVersion::V1, StatusCode::NOT_FOUND) => Ok(Observed::Absent),
            (_, status) => Err(unexpected(status, "read", &api, &reply.body)),
        }
    }

    /// Applies one planned write: content first (KV v2 with check-and-set),
    /// then the ownership metadata.
    ///
    /// This order means only the writer that won the `cas` race ever marks
    /// a path: metadata writes have no check-and-set, so a marker written
    /// before the content could be overwritten by, or overwrite, a racing
    /// writer's. A run that dies between the two leaves unmarked content;
    /// the next run recognises it as its own interrupted create through the
    /// index, which recorded the path before the write (see `core::plan`).
    pub async fn write(&self, loc: &KvLocation, write: &Write) -> Result<(), VaultError> {
        if let Some(data) = &write.data {
            match self.write_data(loc, data, write.cas).await {
                // Vault already holds exactly this content: a twin run won
                // the race, or this very write landed and only its answer
                // was lost (then retried into a mismatch). Either way the
                // content is right; the marker is still written below.
                Err(VaultError::CasMismatch { .. }) if self.holds(loc, data).await => {}
                other => other?,
            }
        }
        if let (KvVersion::V2, Some(metadata)) = (loc.version, &write.metadata) {
            self.write_metadata(loc, metadata).await?;
        }
        Ok(())
    }

    async fn write_data(
        &self,
        loc: &KvLocation,
        data: &crate::core::value::SecretMap,
        cas: Option<u64>,
    ) -> Result<(), VaultError> {
        let mut map = Map::new();
        for (k, v) in data {
            map.insert(k.clone(), Value::String(v.expose().to_owned()));
        }
        let body = match (loc.version, cas) {
            (KvVersion::V2, Some(cas)) => json!({"data": map, "options": {"cas": cas}}),
            (KvVersion::V2, None) => json!({ "data": map }),
            (KvVersion::V1, _) => Value::Object(map),
        };
        self.post(loc, &loc.data_path(), body).await
    }

    /// POSTs a write of `loc` to `api`. The body is dropped once serialized,
    /// and the bytes, which may hold values, are zeroed once sent.
    async fn post(
        &self,
        loc: &KvLocation,
        api: &str,
        body: impl serde::Serialize,
    ) -> Result<(), VaultError> {
        let bytes =
            RequestBody::new(serde_json::to_vec(&body).map_err(|e| VaultError::Decode {
                path: loc.to_string(),
                message: e.to_string(),
            })?);
        drop(body);
        let reply = self
            .request(Method::POST, api, Some(Payload::Bytes(&bytes)), JSON)
            .await?;
        check_write(&reply, api, loc)
    }

    /// Whether the path's current content is exactly `wanted`.
    async fn holds(&self, loc: &KvLocation, wanted: &crate::core::value::SecretMap) -> bool {
        match self.read(loc).await {
            Ok(Observed::Present(current)) if !current.deleted => {
                crate::core::plan::same_content(wanted, &current.data)
            }
            _ => false,
        }
    }

    /// Reads a KV v2 path's metadata (for the ownership check right before
    /// a delete): custom_metadata and the state of the current version.
    /// `None` when the path has no metadata.
    pub async fn read_metadata(
        &self,
        loc: &KvLocation,
    ) -> Result<Option<PathMetadata>, VaultError> {
        let api = loc.metadata_path();
        let reply = self.request(Method::GET, &api, None, JSON).await?;
        match reply.status {
            s if s.is_success() => Ok(Some(path_metadata(&reply.body["data"]))),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::FORBIDDEN => Err(VaultError::denied("read", api, "read")),
            status => Err(unexpected(status, "read", &api, &reply.body)),
        }
    }

    /// Deletes a path. KV v2: soft delete of the current version (undo with
    /// `vault kv undelete`), or with `destroy` every version and the metadata.
    /// KV v1 has only hard delete.
    pub async fn delete(&self, loc: &KvLocation, destroy: bool) -> Result<(), VaultError> {
        let api = match (loc.version, destroy) {
            (KvVersion::V2, true) => loc.metadata_path(),
            _ => loc.data_path(),
        };
        let reply = self.request(Method::DELETE, &api, None, JSON).await?;
        match reply.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            StatusCode::FORBIDDEN => Err(VaultError::denied("delete", api, "delete")),
            status => Err(unexpected(status, "delete", &api, &reply.body)),
        }
    }

    /// Reads a KV v2 secret of plain strings (vault-sync's own index): its
    /// content, or, when there is none, its metadata alone (a first write
    /// puts the marker before the content).
    pub async fn read_record(&self, loc: &KvLocation) -> Result<IndexRead, VaultError> {
        let api = loc.data_path();
        let mut reply = self.request(Method::GET, &api, None, JSON).await?;
        let metadata = &reply.body["data"]["metadata"];
        match reply.status {
            s if (s.is_success() || s == StatusCode::NOT_FOUND) && metadata.is_object() => {
                Ok(match parse_v2_read(&reply) {
                    Observed::Present(secret) => IndexRead::Present {
                        version: secret.version,
                        deleted: secret.deleted,
                        // Moved out of the reply, not copied: a large
                        // index is megabytes of text.
                        data: take_string_map(&mut reply.body["data"]["data"]),
                        custom_metadata: secret.custom_metadata,
                    },
                    Observed::Absent | Observed::Failed { .. } => IndexRead::Absent {
                        custom_metadata: None,
                    },
                })
            }
            StatusCode::NOT_FOUND => Ok(IndexRead::Absent {
                custom_metadata: self.read_metadata(loc).await?.map(|m| m.custom_metadata),
            }),
            StatusCode::FORBIDDEN => Err(VaultError::denied("read", api, "read")),
            status => Err(unexpected(status, "read", &api, &reply.body)),
        }
    }

    /// Lists the keys under a KV v2 metadata folder (`rel` ends with `/` or
    /// is empty). Folders end with `/`.
    pub async fn list(&self, mount: &str, rel: &str) -> Result<Vec<String>, VaultError> {
        let api = format!("{mount}metadata/{rel}?list=true");
        let reply = self.request(Method::GET, &api, None, JSON).await?;
        match reply.status {
            s if s.is_success() => Ok(reply.body["data"]["keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()),
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            StatusCode::FORBIDDEN => Err(VaultError::denied(
                "list",
                format!("{mount}metadata/{rel}"),
                "list",
            )),
            status => Err(unexpected(status, "list", &api, &reply.body)),
        }
    }

    /// Sets KV v2 custom_metadata (replacing the map).
    pub async fn write_metadata(
        &self,
        loc: &KvLocation,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), VaultError> {
        let body = json!({ "custom_metadata": metadata });
        self.post(loc, &loc.metadata_path(), body).await
    }

    /// Writes a KV v2 secret of plain strings with check-and-set, its
    /// body made piece by piece as the connection takes it, never held
    /// whole. `entries` gives the secret's keys and values; it is called
    /// once to measure the body, then once per attempt to send it.
    pub async fn write_raw<'a, I>(
        &self,
        loc: &KvLocation,
        entries: impl Fn() -> I + Send + Sync + 'a,
        cas: u64,
    ) -> Result<(), VaultError>
    where
        I: Iterator<Item = (&'a str, &'a str)> + Send + 'a,
    {
        let make: Arc<MakePieces<'a>> =
            Arc::new(move || Box::new(json_object_pieces(entries(), cas)));
        // Made once to be measured: the length is sent first.
        let len = make().map(|piece| piece.len() as u64).sum();
        let api = loc.data_path();
        let reply = self
            .request(
                Method::POST,
                &api,
                Some(Payload::Pieces { make, len }),
                JSON,
            )
            .await?;
        check_write(&reply, &api, loc)
    }
}

/// `{"data":{entries...},"options":{"cas":N}}`, an entry per piece.
fn json_object_pieces<'a>(
    entries: impl Iterator<Item = (&'a str, &'a str)>,
    cas: u64,
) -> impl Iterator<Item = Vec<u8>> {
    let body = entries.enumerate().map(|(i, (key, value))| {
        let mut piece = Vec::with_capacity(key.len() + value.len() + value.len() / 8 + 8);
        if i > 0 {
            piece.push(b',');
        }
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut piece, &key);
        piece.push(b':');
        let _ = serde_json::to_writer(&mut piece, &value);
        piece
    });
    std::iter::once(b"{\"data\":{".to_vec())
        .chain(body)
        .chain(std::iter::once(
            format!("}},\"options\":{{\"cas\":{cas}}}}}").into_bytes(),
        ))
}

fn parse_v2_read(reply: &Reply) -> Observed {
    let data = &reply.body["data"];
    let metadata = &data["metadata"];
    if !metadata.is_object() {
        // 404 without a body: the path has never existed.
        return Observed::Absent;
    }
    let deleted = metadata["destroyed"].as_bool().unwrap_or(false)
        || metadata["deletion_time"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        || data["data"].is_null();
    Observed::Present(ObservedSecret {
        version: metadata["version"].as_u64().unwrap_or(0),
        deleted,
        data: observed_data(&data["data"]),
        custom_metadata: string_map(&metadata["custom_metadata"]),
    })
}

/// Digests of the values read: the values themselves are not kept.
fn observed_data(v: &Value) -> BTreeMap<String, Option<ValueDigest>> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(ValueDigest::of)))
                .collect()
        })
        .unwrap_or_default()
}

/// `data` of a KV v2 metadata read.
fn path_metadata(data: &Value) -> PathMetadata {
    let current_version = data["current_version"].as_u64().unwrap_or(0);
    let current = &data["versions"][current_version.to_string()];
    PathMetadata {
        custom_metadata: string_map(&data["custom_metadata"]),
        current_version,
        current_deleted: current["destroyed"].as_bool().unwrap_or(false)
            || current["deletion_time"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// [`string_map`], moving the strings out of `v`.
fn take_string_map(v: &mut Value) -> BTreeMap<String, String> {
    match v.take() {
        Value::Object(o) => o
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn check_write(reply: &Reply, api: &str, loc: &KvLocation) -> Result<(), VaultError> {
    match reply.status {
        s if s.is_success() => Ok(()),
        StatusCode::FORBIDDEN => Err(VaultError::denied("write", api.to_owned(), "create/update")),
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => match server_says(&reply.body) {
            ServerSays::CasMismatch => Err(VaultError::CasMismatch {
                path: loc.to_string(),
            }),
            ServerSays::RequestTooLarge => Err(VaultError::RequestTooLarge {
                path: loc.to_string(),
                message: error_messages(&reply.body),
            }),
            _ if reply.status == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(VaultError::RequestTooLarge {
                    path: loc.to_string(),
                    message: error_messages(&reply.body),
                })
            }
            _ => Err(unexpected(reply.status, "write", api, &reply.body)),
        },
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Err(VaultError::InvalidPath {
            path: api.to_owned(),
            message: format!(
                "Vault answered {} ({}); is the mount still there and a KV engine?",
                reply.status.as_u16(),
                error_messages(&reply.body)
            ),
        }),
        status => Err(unexpected(status, "write", api, &reply.body)),
    }
}

fn unexpected(status: StatusCode, operation: &'static str, path: &str, body: &Value) -> VaultError {
    VaultError::Status {
        status: status.as_u16(),
        operation,
        path: path.to_owned(),
        message: error_messages(body),
    }
}

impl Vault {
    /// Adds to a 403 what the token *does* have on that path, from
    /// `sys/capabilities-self` (one extra request, only on failure).
    pub async fn explain(&self, e: VaultError) -> VaultError {
        match e {
            VaultError::PermissionDenied {
                operation,
                path,
                capability,
                granted: None,
            } => {
                let api_path = path.split('?').next().unwrap_or(&path).to_owned();
                let granted = match self.capabilities(std::slice::from_ref(&api_path)).await {
                    Ok(caps) => caps.get(&api_path).map(|c| c.join(", ")),
                    Err(_) => None,
                };
                VaultError::PermissionDenied {
                    operation,
                    path,
                    capability,
                    granted,
                }
            }
            other => other,
        }
    }
}

/// What `sys/health` says.
#[derive(Debug, Clone)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub version: String,
}

/// What `auth/token/lookup-self` says about the token in use.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// Seconds left; 0 for a token that never expires.
    pub ttl: u64,
    pub policies: Vec<String>,
}

impl Vault {
    /// `sys/health`, unauthenticated. Standby and sealed answers are
    /// reported, not treated as transport errors.
    pub async fn health(&self) -> Result<Health, VaultError> {
        // Ask for 200 whatever the state, so the retry layer does not
        // mistake "sealed" (503 by default) for a transient failure.
        let api = "sys/health?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200";
        let reply = self.request(Method::GET, api, None, JSON).await?;
        if !reply.status.is_success() {
            return Err(unexpected(reply.status, "read", "sys/health", &reply.body));
        }
        Ok(Health {
            initialized: reply.body["initialized"].as_bool().unwrap_or(false),
            sealed: reply.body["sealed"].as_bool().unwrap_or(true),
            version: reply.body["version"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
        })
    }

    pub async fn lookup_self(&self) -> Result<TokenInfo, VaultError> {
        let api = "auth/token/lookup-self";
        let reply = self.request(Method::GET, api, None, JSON).await?;
        match reply.status {
            s if s.is_success() => Ok(TokenInfo {
                ttl: reply.body["data"]["ttl"].as_u64().unwrap_or(0),
                policies: reply.body["data"]["policies"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            StatusCode::FORBIDDEN => Err(VaultError::AuthFailed {
                method: self.auth_method().name().into(),
                message: "the token is invalid, expired or revoked".into(),
            }),
            status => Err(unexpected(status, "read", api, &reply.body)),
        }
    }

    /// The token's capabilities on each API path (`sys/capabilities-self`).
    pub async fn capabilities(
        &self,
        paths: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, VaultError> {
        let api = "sys/capabilities-self";
        let body =
            RequestBody::new(serde_json::to_vec(&json!({ "paths": paths })).map_err(|e| {
                VaultError::Decode {
                    path: api.into(),
                    message: e.to_string(),
                }
            })?);
        let reply = self
            .request(Method::POST, api, Some(Payload::Bytes(&body)), JSON)
            .await?;
        if !reply.status.is_success() {
            return Err(match reply.status {
                StatusCode::FORBIDDEN => VaultError::denied("write", api.into(), "update"),
                status => unexpected(status, "write", api, &reply.body),
            });
        }
        let data = if reply.body["data"].is_object() {
            &reply.body["data"]
        } else {
            &reply.body
        };
        Ok(paths
            .iter()
            .map(|p| {
                let caps = data[p.as_str()]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (p.clone(), caps)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::json_object_pieces;

    fn sent(entries: &[(&str, &str)], cas: u64) -> serde_json::Value {
        let entries = entries.iter().copied();
        let body: Vec<u8> = json_object_pieces(entries, cas).flatten().collect();
        serde_json::from_slice(&body).expect("the pieces make one JSON document")
    }

    #[test]
    fn a_streamed_write_is_the_document_a_plain_write_sends() {
        let lines = "{\"path\":\"a\"}\n{\"path\":\"b\\\\c\"}\n";
        assert_eq!(
            sent(&[("entries-0000", lines), ("format", "v1")], 7),
            serde_json::json!({
                "data": {"entries-0000": lines, "format": "v1"},
                "options": {"cas": 7},
            })
        );
    }

    #[test]
    fn a_streamed_write_of_nothing_is_still_a_document() {
        assert_eq!(
            sent(&[], 0),
            serde_json::json!({"data": {}, "options": {"cas": 0}})
        );
    }
}
