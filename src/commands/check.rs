//! `vault-sync check`: the CLI's answer to an operator's /healthz and
//! /readyz. Each step is reported (✓/✗ with a fix), and a failing step does
//! not hide the ones after it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::{CommandError, Exit};
use crate::cli::GlobalArgs;
use crate::config;
use crate::core::annotations;
use crate::core::desired;
use crate::core::ownership::DEFAULT_CLUSTER;
use crate::core::vault_path::{self, KvVersion, MountTable};
use crate::k8s;
use crate::metrics::Metrics;
use crate::render::{self, OutputFormat};
use crate::vault::Vault;

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Default)]
struct Checks(Vec<CheckResult>);

impl Checks {
    fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.0.push(CheckResult {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        });
    }

    /// Passes, with advice: something that works but that a platform team
    /// should know about (a failure's `fix` is for failures only).
    fn warn(&mut self, name: impl Into<String>, detail: impl Into<String>, advice: &str) {
        let (name, detail) = (name.into(), detail.into());
        tracing::warn!("{name}: {detail}");
        self.0.push(CheckResult {
            name,
            ok: true,
            detail: format!("warning: {detail}; {advice}"),
            fix: None,
        });
    }

    fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.0.push(CheckResult {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
}

/// Capabilities `run` needs on a KV v2 path, and why.
const DATA_CAPS: &[&str] = &["create", "read", "update"];
const METADATA_CAPS: &[&str] = &["read", "update", "delete"];
/// At most this many paths are checked individually; beyond, a sample.
const MAX_CAPABILITY_PATHS: usize = 200;

pub async fn check(global: &GlobalArgs) -> Result<Exit, CommandError> {
    let metrics = Arc::new(Metrics::new()?);
    let mut checks = Checks::default();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);

    // --- Kubernetes ---
    let kube = match k8s::connect(
        global.kubeconfig.as_ref(),
        global.context.as_deref(),
        global.kube_timeout,
    )
    .await
    {
        Ok(c) => Some(c),
        Err(e) => {
            checks.fail(
                "kubernetes: config",
                e.to_string(),
                "check --kubeconfig/--context or KUBECONFIG",
            );
            None
        }
    };
    match super::path_rules(global) {
        Ok(rules) if rules.is_empty() => checks.warn(
            "tenants: path rules",
            "no --allow-path rule: a workload in any namespace may write anywhere the Vault policy allows",
            "bound each namespace, e.g. --allow-path '*=secret/apps/{namespace}/' (README: Multi-tenant clusters)",
        ),
        Ok(_) => checks.pass(
            "tenants: path rules",
            "each namespace writes only under the prefixes of its --allow-path rules",
        ),
        Err(e) => checks.fail("tenants: path rules", e.to_string(), "fix the rules"),
    }

    let mut workloads = Vec::new();
    if let Some(kube) = &kube {
        // Each kind on its own: a forbidden kind is an error for that kind
        // (its paths are never judged orphans), not for the others.
        for kind in &global.kinds {
            let mut found = Vec::new();
            let listing = k8s::list_workloads(
                kube,
                std::slice::from_ref(kind),
                &global.namespaces,
                global.selector.as_deref(),
                &mut |w| found.push(w),
            )
            .await;
            let (group, resource) = kind.resource();
            let name = format!("kubernetes: list {resource}");
            match listing.failures.first() {
                None => checks.pass(
                    name,
                    format!("{} annotated {kind}s", found.len()),
                ),
                Some(e) => checks.fail(
                    name,
                    e.to_string(),
                    format!(
                        "grant list on {resource}.{group} (see cronjob/rbac.yaml), or leave {kind} out with --kinds"
                    ),
                ),
            }
            workloads.extend(found);
        }
        rbac_checks(kube, global, &mut checks).await;
    }

    // --- Vault ---
    let vault = match config::vault_config(global, |k| std::env::var(k).ok(), home.as_deref())
        .map_err(CommandError::Config)
        .and_then(|c| Vault::new(c, metrics).map_err(CommandError::from))
    {
        Ok(v) => Some(v),
        Err(e) => {
            checks.fail(
                "vault: config",
                e.to_string(),
                "check VAULT_ADDR, VAULT_CACERT and the auth flags",
            );
            None
        }
    };
    if let Some(vault) = &vault {
        vault_checks(vault, global, &workloads, &mut checks).await;
    }

    let all_ok = checks.0.iter().all(|c| c.ok);
    match global.output {
        OutputFormat::Json => {
            let v = serde_json::json!({ "format_version": 1, "ok": all_ok, "checks": checks.0 });
            render::print_stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
        OutputFormat::Table => render::print_stdout(&render::check_table(&checks.0)),
    }
    Ok(if all_ok { Exit::Success } else { Exit::Failure })
}

async fn rbac_checks(kube: &k8s::Client, global: &GlobalArgs, checks: &mut Checks) {
    let namespaces = k8s::scopes(&global.namespaces);
    let list_secrets = (global.read_secrets == k8s::SecretReads::List).then_some((
        "list",
        "",
        "secrets",
        "to read Secrets by namespace (--read-secrets list; without it each is read with a GET)"
            .to_owned(),
    ));
    // list and get on each kind read: list to find annotated workloads,
    // get to confirm an orphan's owner is gone.
    let kinds: Vec<(&str, &str, &str, String)> = global
        .kinds
        .iter()
        .flat_map(|kind| {
            let (group, resource) = kind.resource();
            [
                (
                    "list",
                    group,
                    resource,
                    format!("to find annotated {kind}s"),
                ),
                (
                    "get",
                    group,
                    resource,
                    format!("to confirm that an orphan's {kind} is gone"),
                ),
            ]
        })
        .collect();
    for ns in namespaces {
        for (verb, group, resource, why) in kinds
            .iter()
            .cloned()
            .chain([(
                "get",
                "",
                "secrets",
                "to read the Secrets workloads reference".to_owned(),
            )])
            .chain(list_secrets.clone())
        {
            let scope = ns.map_or("all namespaces".to_owned(), |n| format!("namespace {n}"));
            let name = format!("kubernetes: may {verb} {resource} in {scope}");
            match k8s::may(kube, ns, verb, group, resource).await {
                Ok(k8s::Access::Allowed) => checks.pass(name, why),
                Ok(k8s::Access::Denied(reason)) => checks.fail(
                    name,
                    reason,
                    format!("grant {verb} on {resource} ({why}); see cronjob/rbac.yaml"),
                ),
                Err(e) => checks.fail(
                    name,
                    e.to_string(),
                    "check that the API server is reachable",
                ),
            }
        }
    }
}

/// Vault's side of `check`, in the order a failure stops it: reachable,
/// logged in, then the mounts and the policy's capabilities on the paths
/// run and prune would use.
async fn vault_checks(
    vault: &Vault,
    global: &GlobalArgs,
    workloads: &[k8s::WorkloadView],
    checks: &mut Checks,
) {
    if !reachable(vault, checks).await || !logged_in(vault, checks).await {
        return;
    }
    let wanted = wanted_capabilities(vault, global, workloads, checks).await;
    if !wanted.is_empty() {
        capabilities(vault, &wanted, checks).await;
    }
}

/// Vault answers, initialized and unsealed.
async fn reachable(vault: &Vault, checks: &mut Checks) -> bool {
    match vault.health().await {
        Ok(h) if !h.initialized => {
            checks.fail(
                "vault: reachable",
                format!("{} is not initialized", vault.addr()),
                "initialize Vault",
            );
            false
        }
        Ok(h) if h.sealed => {
            checks.fail(
                "vault: unsealed",
                format!("{} is sealed (version {})", vault.addr(), h.version),
                "unseal Vault",
            );
            false
        }
        Ok(h) => {
            checks.pass(
                "vault: reachable and unsealed",
                format!("{} (version {})", vault.addr(), h.version),
            );
            true
        }
        Err(e) => {
            checks.fail(
                "vault: reachable",
                e.to_string(),
                "check VAULT_ADDR, network policy, and VAULT_CACERT for TLS",
            );
            false
        }
    }
}

/// The configured auth method logs in, and the token reads itself.
async fn logged_in(vault: &Vault, checks: &mut Checks) -> bool {
    let method = vault.auth_method().name();
    if let Err(e) = vault.login().await {
        checks.fail(
            format!("vault: login ({method})"),
            e.to_string(),
            login_fix(method),
        );
        return false;
    }
    match vault.lookup_self().await {
        Ok(t) => checks.pass(
            format!("vault: login ({method})"),
            format!(
                "token TTL {}, policies: {}",
                if t.ttl == 0 {
                    "never expires".to_owned()
                } else {
                    format!("{}s", t.ttl)
                },
                t.policies.join(", ")
            ),
        ),
        Err(e) => checks.fail(
            format!("vault: login ({method})"),
            e.to_string(),
            login_fix(method),
        ),
    }
    true
}

/// The API paths run and prune use for the annotated workloads and the
/// index (without reading any Secret), each with the capabilities it
/// needs; every mount on the way is checked to be KV.
async fn wanted_capabilities(
    vault: &Vault,
    global: &GlobalArgs,
    workloads: &[k8s::WorkloadView],
    checks: &mut Checks,
) -> BTreeMap<String, Vec<&'static str>> {
    let cluster = global.cluster_name.as_deref();
    let mut raw_paths = BTreeSet::new();
    for d in workloads {
        if let Ok(Some(spec)) = annotations::parse(&d.annotations) {
            raw_paths.extend(desired::wanted_paths(&spec, &d.references));
        }
    }
    // Any path under the index mount finds its mount.
    let index_raw = format!(
        "{}/{}",
        global.index_mount.trim_end_matches('/'),
        vault_path::INDEX_FOLDER
    );
    let mut mounts = MountTable::default();
    let mut wanted: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut mount_results: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    for raw in raw_paths.iter().chain(std::iter::once(&index_raw)) {
        let mount = match mounts.find(raw) {
            Some(m) => m.clone(),
            None => match vault.lookup_mount(raw).await {
                Ok(m) => {
                    mounts.insert(m.clone());
                    m
                }
                Err(e) => {
                    let first = raw.split('/').next().unwrap_or(raw).to_owned();
                    mount_results.entry(first).or_insert(Err(e.to_string()));
                    continue;
                }
            },
        };
        let version = match mount.kv_version {
            Some(KvVersion::V2) => "KV v2",
            Some(KvVersion::V1) => "KV v1",
            None => "not KV",
        };
        let entry = if mount.kv_version.is_some() {
            Ok(version.to_owned())
        } else {
            Err(format!(
                "{} is a {} engine, not KV",
                mount.path, mount.engine
            ))
        };
        mount_results.entry(mount.path.to_string()).or_insert(entry);
        let is_index = raw == &index_raw;
        let loc = if is_index {
            vault_path::index_location(&mount, cluster.unwrap_or(DEFAULT_CLUSTER))
        } else {
            match vault_path::locate(raw, &mount, cluster) {
                Ok(loc) => loc,
                Err(_) => continue,
            }
        };
        if wanted.len() >= MAX_CAPABILITY_PATHS && !is_index {
            continue;
        }
        wanted.insert(loc.data_path(), DATA_CAPS.to_vec());
        if loc.version == KvVersion::V2 {
            wanted.insert(loc.metadata_path(), METADATA_CAPS.to_vec());
        } else {
            wanted.entry(loc.data_path()).or_default().push("delete");
        }
    }
    for (mount, result) in &mount_results {
        match result {
            Ok(v) => checks.pass(format!("vault: mount {mount}"), v.clone()),
            Err(e) => checks.fail(
                format!("vault: mount {mount}"),
                e.clone(),
                "mount a KV engine there (`vault secrets enable -path=... -version=2 kv`), or fix vault-sync.io/path",
            ),
        }
    }
    wanted
}

/// The token holds every capability `wanted` lists (by
/// `sys/capabilities-self`).
async fn capabilities(
    vault: &Vault,
    wanted: &BTreeMap<String, Vec<&'static str>>,
    checks: &mut Checks,
) {
    let paths: Vec<String> = wanted.keys().cloned().collect();
    match vault.capabilities(&paths).await {
        Ok(have) => {
            let mut missing = Vec::new();
            for (path, need) in wanted {
                let caps = have.get(path).cloned().unwrap_or_default();
                if caps.iter().any(|c| c == "root") {
                    continue;
                }
                let lacking: Vec<&str> = need
                    .iter()
                    .copied()
                    .filter(|n| !caps.iter().any(|c| c == n))
                    .collect();
                if !lacking.is_empty() {
                    missing.push(format!("{path}: {}", lacking.join(", ")));
                }
            }
            if missing.is_empty() {
                checks.pass(
                    "vault: policy capabilities",
                    format!("{} API paths have what run/prune need", wanted.len()),
                );
            } else {
                checks.fail(
                    "vault: policy capabilities",
                    format!("missing: {}", missing.join("; ")),
                    "add these capabilities to the token's policy (see examples/vault-policy.hcl)",
                );
            }
        }
        Err(e) => checks.fail(
            "vault: policy capabilities",
            e.to_string(),
            "allow update on sys/capabilities-self (see examples/vault-policy.hcl)",
        ),
    }
}

fn login_fix(method: &str) -> &'static str {
    match method {
        "token" => "set VAULT_TOKEN (or BAO_TOKEN) to a valid token, or run `vault login`",
        "kubernetes" => {
            "check --vault-role and --vault-auth-path, and that the role binds this ServiceAccount and namespace"
        }
        "approle" => "check VAULT_ROLE_ID / VAULT_SECRET_ID and --vault-auth-path",
        _ => "check --vault-role, --vault-auth-path and the JWT's audience and claims",
    }
}
