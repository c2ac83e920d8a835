//! Kubernetes configuration: reflectors on LlmProvider, RoutePolicy, ApiKey, LlmQuota, the gateway's own
//! LlmGateway and the Secrets of one namespace feed the same compile → validate → swap path
//! as the directory source.
//!
//! Every watch event wakes one reload task, which waits for the burst to settle (debounce),
//! fingerprints what the stores hold (kind, namespace, name and resourceVersion of every
//! object) and applies it. A relist after a dropped watch or a 410 refills the stores with the
//! same objects, so the fingerprint is unchanged and nothing is reloaded. While the API server
//! is unreachable the watchers back off and retry, and the last snapshot keeps serving.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::llm_gateway::LlmGateway;
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_crds::manifest::Manifests;
use llm_gateway_crds::quota::LlmQuota;
use llm_gateway_crds::route_policy::RoutePolicy;
use llm_gateway_crds::snapshot;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::loader::{Loader, ReloadOutcome};

/// Quiet time after the last watch event before a reload.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Longest a reload waits for a burst of events to end.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// What to watch.
#[derive(Clone, Debug)]
pub struct KubeSource {
    /// Namespace of the resources (the gateway's own).
    pub namespace: String,
    /// Name of this gateway's LlmGateway (auth settings), if any.
    pub gateway_name: Option<String>,
    /// The operator's credentials Secret: when set, only it is watched (see
    /// [`llm_gateway_crds::snapshot`]) and ApiKeys the operator has not issued are left out.
    pub credentials_secret: Option<String>,
}

/// The reflector stores of every watched kind.
#[derive(Clone)]
struct Stores {
    providers: Store<LlmProvider>,
    routes: Store<RoutePolicy>,
    keys: Store<ApiKey>,
    gateways: Store<LlmGateway>,
    secrets: Store<Secret>,
    quotas: Store<LlmQuota>,
}

impl Stores {
    async fn wait_until_ready(&self) {
        let _ = tokio::join!(
            self.providers.wait_until_ready(),
            self.routes.wait_until_ready(),
            self.keys.wait_until_ready(),
            self.gateways.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.quotas.wait_until_ready(),
        );
    }

    /// Everything the stores hold, and its fingerprint.
    fn manifests(&self, source: &KubeSource) -> (Manifests, u64) {
        let gateway_name = source.gateway_name.as_deref();
        let mut hasher = DefaultHasher::new();
        let mut manifests = Manifests {
            providers: copy(&self.providers, &mut hasher),
            route_policies: copy(&self.routes, &mut hasher),
            api_keys: copy(&self.keys, &mut hasher),
            gateways: copy(&self.gateways, &mut hasher)
                .into_iter()
                .filter(|g| Some(g.name_any().as_str()) == gateway_name)
                .collect(),
            secrets: copy(&self.secrets, &mut hasher),
            quotas: copy(&self.quotas, &mut hasher),
        };
        if source.credentials_secret.is_some() {
            manifests.api_keys.retain(snapshot::issued);
            manifests.secrets = expand(&manifests.secrets);
        }
        (manifests, hasher.finish())
    }
}

/// The Secrets the operator's credentials Secret carries (a malformed one is logged and
/// carries none, so the providers needing them are reported unavailable by the compiler).
fn expand(bundles: &[Secret]) -> Vec<Secret> {
    bundles
        .iter()
        .flat_map(|bundle| {
            snapshot::expand_credentials(bundle).unwrap_or_else(|error| {
                tracing::error!(%error, "the credentials Secret cannot be read");
                Vec::new()
            })
        })
        .collect()
}

/// Objects of a store in name order, hashed by identity and resourceVersion.
fn copy<K>(store: &Store<K>, hasher: &mut DefaultHasher) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let mut objects: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
    objects.sort_by_key(|o| (o.namespace(), o.name_any()));
    for object in &objects {
        (
            K::kind(&K::DynamicType::default()),
            object.namespace(),
            object.name_any(),
            object.resource_version(),
        )
            .hash(hasher);
    }
    objects
}

/// Starts a reflector for `api`; every event wakes `changed`.
fn reflect<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(error) => tracing::warn!(%kind, %error, "watch failed; retrying with backoff"),
            }
        }
    });
    reader
}

/// Starts watching; returns once every kind has been listed once and the result was applied
/// (or rejected: the gateway then has no configuration and stays unready).
pub async fn start(client: Client, source: KubeSource, loader: Arc<Loader>) -> ReloadOutcome {
    let changed = Arc::new(Notify::new());
    let ns = source.namespace.as_str();
    let all = watcher::Config::default;
    let secrets = match &source.credentials_secret {
        Some(name) => all().fields(&format!("metadata.name={name}")),
        None => all(),
    };
    let stores = Stores {
        providers: reflect(Api::namespaced(client.clone(), ns), all(), changed.clone()),
        routes: reflect(Api::namespaced(client.clone(), ns), all(), changed.clone()),
        keys: reflect(Api::namespaced(client.clone(), ns), all(), changed.clone()),
        gateways: reflect(Api::namespaced(client.clone(), ns), all(), changed.clone()),
        quotas: reflect(Api::namespaced(client.clone(), ns), all(), changed.clone()),
        secrets: reflect(Api::namespaced(client, ns), secrets, changed.clone()),
    };
    stores.wait_until_ready().await;
    let first = apply(&stores, &source, &loader).await;
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            // Debounce: wait while events keep coming, but never longer than MAX_DELAY, so
            // a steady stream of edits still reaches the gateway.
            let give_up = tokio::time::Instant::now() + MAX_DELAY;
            while tokio::time::Instant::now() < give_up
                && tokio::time::timeout(DEBOUNCE, changed.notified())
                    .await
                    .is_ok()
            {}
            apply(&stores, &source, &loader).await;
        }
    });
    first
}

async fn apply(stores: &Stores, source: &KubeSource, loader: &Arc<Loader>) -> ReloadOutcome {
    let (manifests, fingerprint) = stores.manifests(source);
    let loader = loader.clone();
    tokio::task::spawn_blocking(move || loader.apply(&manifests, fingerprint))
        .await
        .unwrap_or_else(|e| ReloadOutcome::Rejected(vec![format!("reload task failed: {e}")]))
}
