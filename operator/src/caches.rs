//! Watched copies of the objects reconciles read in bulk (every provider, policy, key, quota
//! and Secret of a namespace), so a reconcile reads memory instead of listing the API server:
//! with thousands of objects, a list per reconcile made a burst of creations quadratic.

use std::fmt::Debug;
use std::hash::Hash;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_crds::quota::LlmQuota;
use llm_gateway_crds::route_policy::RoutePolicy;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// The caches, filled by watches that run as long as the operator.
#[derive(Clone)]
pub struct Caches {
    /// Every LlmProvider in scope.
    pub providers: Store<LlmProvider>,
    /// Provider watch events, sent only after the cache applied them: a controller triggered
    /// by them always finds the cache at least as new as its trigger (a trigger from a watch
    /// of its own could run first and compile against a provider the cache lacks).
    pub provider_events: broadcast::Sender<watcher::Event<LlmProvider>>,
    /// Secret watch events, after the cache applied them: the one watch of Secrets, which
    /// the provider controller follows too (a second watch held every Secret twice).
    pub secret_events: broadcast::Sender<watcher::Event<Secret>>,
    /// The namespace of every change any cache applied (same ordering guarantee), for
    /// controllers whose output depends on a whole namespace.
    pub namespace_changes: broadcast::Sender<String>,
    /// Every RoutePolicy in scope.
    pub route_policies: Store<RoutePolicy>,
    /// Every ApiKey in scope.
    pub api_keys: Store<ApiKey>,
    /// Every Secret in scope (one watch for the whole operator).
    pub secrets: Store<Secret>,
    /// Every LlmQuota in scope.
    pub quotas: Store<LlmQuota>,
}

impl Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches").finish_non_exhaustive()
    }
}

impl Caches {
    /// Starts the watches (in the background: standby replicas warm their caches too, so a
    /// takeover starts with them filled).
    pub fn start(client: &kube::Client, scope: &crate::context::Scope) -> Self {
        let (provider_events, _) = broadcast::channel(EVENT_BUFFER);
        let (secret_events, _) = broadcast::channel(EVENT_BUFFER);
        let (namespace_changes, _) = broadcast::channel(EVENT_BUFFER);
        let changes = || namespace_changes.clone();
        Self {
            providers: reflect(scope.api(client), Some(provider_events.clone()), changes()),
            route_policies: reflect(scope.api(client), None, changes()),
            api_keys: reflect(scope.api(client), None, changes()),
            secrets: reflect(scope.api(client), Some(secret_events.clone()), changes()),
            quotas: reflect(scope.api(client), None, changes()),
            provider_events,
            secret_events,
            namespace_changes,
        }
    }

    /// A stream of the namespaces changes were applied in (missed ones are skipped with a
    /// warning; controllers requeue periodically).
    pub fn namespace_changes(&self) -> impl futures_util::Stream<Item = String> + Send + 'static {
        let receiver = self.namespace_changes.subscribe();
        futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(namespace) => return Some((namespace, receiver)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "namespace changes missed; caught up on requeue");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Returns once every watch has listed everything once. Await it from one task only:
    /// kube-runtime's stores keep one waker, so a second task waiting at the same time may
    /// never wake (the operator's writers once hung that way when objects already existed).
    pub async fn wait_until_ready(&self) {
        let _ = tokio::join!(
            self.providers.wait_until_ready(),
            self.route_policies.wait_until_ready(),
            self.api_keys.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.quotas.wait_until_ready(),
        );
    }
}

/// The objects a cache applied or deleted, from its events (so a reconcile they trigger never
/// reads a cache older than its trigger); a subscriber that falls behind skips what it missed
/// (controllers requeue periodically).
pub fn changed_objects<K>(
    events: &broadcast::Sender<watcher::Event<K>>,
) -> impl futures_util::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Clone + Send + 'static,
{
    let receiver = events.subscribe();
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(
                    watcher::Event::Apply(object)
                    | watcher::Event::InitApply(object)
                    | watcher::Event::Delete(object),
                ) => return Some((Ok(object), receiver)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "cache events missed; caught up on requeue");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The objects of `store` in `namespace`, in name order.
pub fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let mut objects: Vec<K> = store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .map(|o| K::clone(o))
        .collect();
    objects.sort_by_key(ResourceExt::name_any);
    objects
}

/// Events a slow subscriber may fall behind by before it misses some.
const EVENT_BUFFER: usize = 16_384;

fn reflect<K>(
    api: Api<K>,
    events: Option<broadcast::Sender<watcher::Event<K>>>,
    namespaces: broadcast::Sender<String>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // No subscriber yet is fine: there is nothing to tell.
                Ok(event) => {
                    if let watcher::Event::Apply(o) | watcher::Event::Delete(o) = &event {
                        drop(namespaces.send(o.namespace().unwrap_or_default()));
                    }
                    drop(events.as_ref().map(|sender| sender.send(event)));
                }
                Err(error) => tracing::warn!(%error, "cache watch failed; retrying with backoff"),
            }
        }
    });
    reader
}
