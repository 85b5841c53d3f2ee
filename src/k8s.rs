//! Kubernetes adapter: the only module that talks to the API server.
//! Named `k8s` so that it does not shadow the `kube` crate.

// An adapter: it owns the Kubernetes client. (clippy.toml)
#![allow(clippy::disallowed_types)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
pub use kube::Client;
use kube::Config;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::core::annotations;
use crate::core::desired::{SecretFetch, SecretMeta};
use crate::core::error_kind::ErrorKind;
use crate::core::references::{SecretReference, secret_references};
use crate::core::workload::Kind;
use crate::error_chain;

/// Page size for listings. A page is decoded whole, as full objects, before
/// the few fields vault-sync keeps are taken from it: 500 Deployments held
/// about 8 MiB at once, a quarter of a small run's memory. At 100 a page
/// holds under 2 MiB, for one request per 100 workloads (500 requests for
/// 50,000 Deployments, against the 100,000 Vault reads of the same run).
pub const PAGE_SIZE: u32 = 100;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes configuration: {0}")]
    Config(String),
    #[error(
        "Kubernetes RBAC forbids {verb} {resource}{scope}: {message}; grant it to the ServiceAccount (ClusterRole, or Role in that namespace: see cronjob/rbac.yaml), or narrow the run with -n"
    )]
    Forbidden {
        verb: &'static str,
        /// One resource, or several forbidden in the same scope
        /// (`deployments, statefulsets`).
        resource: String,
        scope: String,
        message: String,
    },
    #[error("{resource}{scope} not found")]
    NotFound {
        resource: &'static str,
        scope: String,
    },
    #[error(
        "cannot reach the Kubernetes API server: {0}; check the kubeconfig/context and the network"
    )]
    Unreachable(String),
    #[error("Kubernetes API answered {code} to {verb} {resource}{scope}: {message}")]
    Api {
        code: u16,
        verb: &'static str,
        resource: &'static str,
        scope: String,
        message: String,
    },
}

impl KubeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) => ErrorKind::Config,
            Self::Forbidden { .. } => ErrorKind::Forbidden,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Unreachable(_) => ErrorKind::Unreachable,
            Self::Api { .. } => ErrorKind::Unknown,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }

    fn from_kube(
        e: kube::Error,
        verb: &'static str,
        resource: &'static str,
        scope: String,
    ) -> Self {
        match e {
            kube::Error::Api(status) => match status.code {
                403 => Self::Forbidden {
                    verb,
                    resource: resource.to_owned(),
                    scope,
                    message: status.message,
                },
                404 => Self::NotFound { resource, scope },
                code => Self::Api {
                    code,
                    verb,
                    resource,
                    scope,
                    message: status.message,
                },
            },
            other => {
                Self::Unreachable(format!("{verb} {resource}{scope}: {}", error_chain(&other)))
            }
        }
    }
}

/// Builds a client: an explicit kubeconfig/context, else `$KUBECONFIG` or
/// `~/.kube/config`, else the in-cluster service account.
pub async fn connect(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
    timeout: std::time::Duration,
) -> Result<Client, KubeError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("cannot read {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| KubeError::Config(e.to_string()))?
        }
        None if context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| KubeError::Config(format!("no kubeconfig and not in a cluster: {e}")))?,
    };
    // kube sets no read timeout by default: a stalled API server would hang
    // the run (and a CronJob until its deadline).
    let mut config = config;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Client::try_from(config).map_err(|e| KubeError::Config(error_chain(&e)))
}

/// What a SelfSubjectAccessReview answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Denied, with the API server's reason.
    Denied(String),
}

/// Whether this client may `verb` `resource` (in `namespace`, or all),
/// asked with a SelfSubjectAccessReview (`vault-sync check`).
pub async fn may(
    client: &Client,
    namespace: Option<&str>,
    verb: &str,
    group: &str,
    resource: &str,
) -> Result<Access, kube::Error> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.map(str::to_owned),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&kube::api::PostParams::default(), &review)
        .await?;
    Ok(match answer.status {
        Some(s) if s.allowed => Access::Allowed,
        s => Access::Denied(
            s.and_then(|s| s.reason)
                .unwrap_or_else(|| "denied by RBAC".into()),
        ),
    })
}

/// The parts of a workload vault-sync reads; the rest is dropped at once
/// so that memory follows the annotated workloads, not the whole cluster.
#[derive(Debug, Clone)]
pub struct WorkloadView {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// Its `vault-sync.io/` annotations.
    pub annotations: BTreeMap<String, String>,
    /// The Secrets its pod template references; the template itself is
    /// not kept.
    pub references: Vec<SecretReference>,
}

impl WorkloadView {
    /// The view of an annotated workload (`None` for any other), from its
    /// metadata and pod template.
    fn new(kind: Kind, metadata: ObjectMeta, pod: Option<&PodSpec>) -> Option<Self> {
        let mut annotations = metadata.annotations.unwrap_or_default();
        if !annotations.contains_key(annotations::PATH) {
            return None;
        }
        // Only ours: others (kubectl's last-applied-configuration holds the
        // whole manifest) would cost memory per workload for nothing.
        annotations.retain(|k, _| k.starts_with(annotations::DOMAIN));
        Some(Self {
            kind,
            namespace: metadata.namespace.unwrap_or_default(),
            name: metadata.name.unwrap_or_default(),
            annotations,
            references: pod.map(secret_references).unwrap_or_default(),
        })
    }
}

/// A workload resource vault-sync lists: its kind and where its pod
/// template is.
trait Workload:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
{
    const KIND: Kind;
    fn pod(&self) -> Option<&PodSpec>;
    fn into_metadata(self) -> ObjectMeta;
    /// A Job that a CronJob created belongs to that CronJob: the paths it
    /// could want are the CronJob's, and it must not become their second
    /// owner (the controller copies the jobTemplate's metadata to it).
    fn created_by_cronjob(&self) -> bool {
        false
    }
}

impl Workload for Deployment {
    const KIND: Kind = Kind::Deployment;
    fn pod(&self) -> Option<&PodSpec> {
        self.spec.template.spec.as_ref()
    }
    fn into_metadata(self) -> ObjectMeta {
        self.metadata
    }
}

impl Workload for StatefulSet {
    const KIND: Kind = Kind::StatefulSet;
    fn pod(&self) -> Option<&PodSpec> {
        self.spec.template.spec.as_ref()
    }
    fn into_metadata(self) -> ObjectMeta {
        self.metadata
    }
}

impl Workload for DaemonSet {
    const KIND: Kind = Kind::DaemonSet;
    fn pod(&self) -> Option<&PodSpec> {
        self.spec.template.spec.as_ref()
    }
    fn into_metadata(self) -> ObjectMeta {
        self.metadata
    }
}

impl Workload for Job {
    const KIND: Kind = Kind::Job;
    fn pod(&self) -> Option<&PodSpec> {
        self.spec.as_ref()?.template.spec.as_ref()
    }
    fn into_metadata(self) -> ObjectMeta {
        self.metadata
    }
    fn created_by_cronjob(&self) -> bool {
        self.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.kind == "CronJob")
    }
}

impl Workload for CronJob {
    const KIND: Kind = Kind::CronJob;
    fn pod(&self) -> Option<&PodSpec> {
        self.spec.job_template.spec.as_ref()?.template.spec.as_ref()
    }
    fn into_metadata(self) -> ObjectMeta {
        self.metadata
    }
}

/// The scopes a run reads: each of `namespaces`, or all namespaces
/// (`None`) when it names none.
pub fn scopes(namespaces: &[String]) -> Vec<Option<&str>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    }
}

/// How a listing of workloads went: which kinds were listed in full. The
/// workloads themselves go to the caller page by page, as they arrive.
#[derive(Debug, Default)]
pub struct Listing {
    /// Kinds with a scope that could not be listed in full. Nothing owned
    /// by such a kind may be deleted: a missing workload may just be a
    /// page that failed.
    pub incomplete: BTreeSet<Kind>,
    pub failures: Vec<KubeError>,
    /// API requests sent (pages).
    pub requests: usize,
}

impl Listing {
    /// Every kind asked for was listed in full.
    pub fn complete(&self) -> bool {
        self.incomplete.is_empty()
    }

    /// Records a failure; a namespace that RBAC closes to several kinds is
    /// one failure naming them all, not one per kind.
    fn add_failure(&mut self, failure: KubeError) {
        if let KubeError::Forbidden {
            resource, scope, ..
        } = &failure
            && let Some(KubeError::Forbidden { resource: seen, .. }) = self.failures.iter_mut().find(
                |f| matches!(f, KubeError::Forbidden { verb: "list", scope: s, .. } if s == scope),
            )
        {
            seen.push_str(", ");
            seen.push_str(resource);
            return;
        }
        self.failures.push(failure);
    }
}

/// Lists the annotated workloads of `kinds` in `namespaces` (all when
/// empty), paged, handing each to `each` as its page arrives: a cluster's
/// workloads are never all in memory at once, only what the caller keeps
/// of them.
pub async fn list_workloads(
    client: &Client,
    kinds: &[Kind],
    namespaces: &[String],
    selector: Option<&str>,
    each: &mut impl FnMut(WorkloadView),
) -> Listing {
    let mut listing = Listing::default();
    for (i, kind) in kinds.iter().enumerate() {
        // An API server that cannot be reached for one kind cannot be for
        // the next: do not wait out the timeout once per kind.
        if listing
            .failures
            .iter()
            .any(|f| matches!(f, KubeError::Unreachable(_)))
        {
            listing.incomplete.extend(&kinds[i..]);
            break;
        }
        match kind {
            Kind::Deployment => {
                list_kind::<Deployment>(client, namespaces, selector, &mut listing, each).await
            }
            Kind::StatefulSet => {
                list_kind::<StatefulSet>(client, namespaces, selector, &mut listing, each).await
            }
            Kind::DaemonSet => {
                list_kind::<DaemonSet>(client, namespaces, selector, &mut listing, each).await
            }
            Kind::Job => list_kind::<Job>(client, namespaces, selector, &mut listing, each).await,
            Kind::CronJob => {
                list_kind::<CronJob>(client, namespaces, selector, &mut listing, each).await
            }
        }
    }
    listing
}

async fn list_kind<K: Workload>(
    client: &Client,
    namespaces: &[String],
    selector: Option<&str>,
    listing: &mut Listing,
    each: &mut impl FnMut(WorkloadView),
) {
    let resource = K::KIND.resource().1;
    for ns in scopes(namespaces) {
        let api: Api<K> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let scope = match ns {
            Some(ns) => format!(" in namespace {ns}"),
            None => " in all namespaces".to_owned(),
        };
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(sel) = selector {
            params = params.labels(sel);
        }
        loop {
            listing.requests += 1;
            match api.list(&params).await {
                Ok(page) => {
                    let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
                    page.items
                        .into_iter()
                        .filter(|w| !w.created_by_cronjob())
                        .filter_map(|w| {
                            let pod = w.pod().cloned();
                            WorkloadView::new(K::KIND, w.into_metadata(), pod.as_ref())
                        })
                        .for_each(&mut *each);
                    match next {
                        Some(token) => params = params.continue_token(&token),
                        None => break,
                    }
                }
                Err(e) => {
                    // A 410 means the continue token expired mid-listing; the
                    // listing is incomplete either way, and the next run
                    // starts afresh.
                    listing.incomplete.insert(K::KIND);
                    listing.add_failure(KubeError::from_kube(e, "list", resource, scope.clone()));
                    break;
                }
            }
        }
    }
}

/// Page size for Secret listings: a page holds every Secret of the
/// namespace, wanted or not (Helm release Secrets run to hundreds of KiB),
/// so pages are kept smaller than [`PAGE_SIZE`].
pub const SECRET_PAGE_SIZE: u32 = 100;

/// How Secrets are read (`--read-secrets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecretReads {
    /// `list` where RBAC grants `list` on secrets in every namespace read
    /// (one SelfSubjectAccessReview per namespace scope to find out),
    /// `get` otherwise. Resolved by [`choose_secret_reads`] before a run;
    /// the engine treats an unresolved `auto` as `get`.
    #[default]
    Auto,
    /// One GET per needed Secret: needs only `get` on secrets.
    Get,
    /// Paged LISTs of each namespace, keeping the needed Secrets: far
    /// fewer requests and far less API server work, but needs `list`.
    List,
}

impl SecretReads {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Get => "get",
            Self::List => "list",
        }
    }
}

/// Resolves `--read-secrets auto`: LIST when this client may list secrets
/// in every namespace the run reads (all namespaces when `namespaces` is
/// empty), GET otherwise, or when the access review itself fails (GETs
/// need the least RBAC). The choice and why are logged. `get` and `list`
/// are returned as given: an explicit `list` that RBAC refuses still falls
/// back to GETs namespace by namespace, with a warning.
pub async fn choose_secret_reads(
    client: &Client,
    requested: SecretReads,
    namespaces: &[String],
) -> SecretReads {
    if requested != SecretReads::Auto {
        return requested;
    }
    for ns in scopes(namespaces) {
        let why = match may(client, ns, "list", "", "secrets").await {
            Ok(Access::Allowed) => continue,
            Ok(Access::Denied(reason)) => format!("RBAC does not grant list on secrets ({reason})"),
            Err(e) => format!("the access review failed ({e})"),
        };
        tracing::info!(
            read_secrets = "get",
            namespace = ns.unwrap_or("(all)"),
            "--read-secrets auto: reading each Secret with a GET: {why}"
        );
        return SecretReads::Get;
    }
    tracing::info!(
        read_secrets = "list",
        "--read-secrets auto: listing Secrets by namespace (RBAC grants list on secrets)"
    );
    SecretReads::List
}

/// Reads the Secrets `names` of one namespace with paged LISTs: one request
/// per page instead of one per Secret. Secrets not in `names` are dropped
/// as each page arrives; a wanted name not listed is `NotFound`.
pub async fn list_secrets(
    client: &Client,
    namespace: &str,
    names: &BTreeSet<String>,
    each: &mut impl FnMut(String, SecretFetch),
) -> Result<(), KubeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut params = ListParams::default().limit(SECRET_PAGE_SIZE);
    loop {
        let page = api.list(&params).await.map_err(|e| {
            KubeError::from_kube(e, "list", "secrets", format!(" in namespace {namespace}"))
        })?;
        for mut secret in page.items {
            if let Some(name) = secret.metadata.name.take().filter(|n| names.contains(n)) {
                each(name, secret_fetch(secret));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(())
}

fn secret_fetch(secret: Secret) -> SecretFetch {
    // uid and resourceVersion pin a saved plan's change to this revision.
    let meta = match (secret.metadata.uid, secret.metadata.resource_version) {
        (Some(uid), Some(resource_version)) => Some(SecretMeta {
            uid,
            resource_version,
        }),
        _ => None,
    };
    SecretFetch::found(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    )
    .with_meta(meta)
}

/// Reads one Secret.
pub async fn get_secret(client: &Client, namespace: &str, name: &str) -> SecretFetch {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get(name).await {
        Ok(secret) => secret_fetch(secret),
        Err(e) => match KubeError::from_kube(e, "get", "secrets", format!(" {namespace}/{name}")) {
            KubeError::NotFound { .. } => SecretFetch::NotFound,
            other => SecretFetch::Failed {
                kind: other.kind(),
                message: other.to_string(),
            },
        },
    }
}

/// Whether one workload exists, and carries `vault-sync.io/path`.
pub async fn workload_state(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Option<bool>, KubeError> {
    async fn get<K: Workload>(
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<bool>, KubeError> {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let found = api.get_opt(name).await.map_err(|e| {
            KubeError::from_kube(
                e,
                "get",
                K::KIND.resource().1,
                format!(" {namespace}/{name}"),
            )
        })?;
        Ok(found.map(|w| {
            w.meta()
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(annotations::PATH))
        }))
    }
    match kind {
        Kind::Deployment => get::<Deployment>(client, namespace, name).await,
        Kind::StatefulSet => get::<StatefulSet>(client, namespace, name).await,
        Kind::DaemonSet => get::<DaemonSet>(client, namespace, name).await,
        Kind::Job => get::<Job>(client, namespace, name).await,
        Kind::CronJob => get::<CronJob>(client, namespace, name).await,
    }
}

impl crate::engine::ports::Cluster for Client {
    async fn list_workloads(
        &self,
        kinds: &[Kind],
        namespaces: &[String],
        selector: Option<&str>,
        each: &mut impl FnMut(WorkloadView),
    ) -> Listing {
        list_workloads(self, kinds, namespaces, selector, each).await
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> SecretFetch {
        get_secret(self, namespace, name).await
    }

    async fn list_secrets(
        &self,
        namespace: &str,
        names: &BTreeSet<String>,
        each: &mut impl FnMut(String, SecretFetch),
    ) -> Result<(), KubeError> {
        list_secrets(self, namespace, names, each).await
    }

    async fn workload(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<crate::engine::ports::WorkloadState, KubeError> {
        use crate::engine::ports::WorkloadState;
        Ok(match workload_state(self, kind, namespace, name).await? {
            None => WorkloadState::Gone,
            Some(annotated) => WorkloadState::Exists { annotated },
        })
    }
}
