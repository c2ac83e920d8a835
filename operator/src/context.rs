//! What every reconcile shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Secret mixed into API-key hashes (must equal the gateways' `API_KEY_PEPPER`).
    pub key_pepper: Vec<u8>,
    /// How often ApiKey usage is copied from Redis into status.
    pub usage_sync_interval: std::time::Duration,
    /// Where the usage sync may connect.
    pub redis_hosts: crate::usage_redis::RedisHosts,
    /// Image repositories gateways and model servers may run (set at install time, so that
    /// writing an LlmGateway or LlmProvider does not mean choosing any image).
    pub images: crate::pod_policy::ImagePolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            key_pepper: Vec::new(),
            usage_sync_interval: std::time::Duration::from_secs(60),
            redis_hosts: crate::usage_redis::RedisHosts::default(),
            images: crate::pod_policy::ImagePolicy::default(),
        }
    }
}

/// Where the operator works: the whole cluster, or one namespace of the list it was given
/// (one [`Context`] each, so it needs only Roles in those namespaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a ClusterRole).
    Cluster,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    /// The API of a namespaced kind over this scope.
    pub fn api<K>(&self, client: &kube::Client) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Self::Cluster => kube::Api::all(client.clone()),
            Self::Namespace(namespace) => kube::Api::namespaced(client.clone(), namespace),
        }
    }
}

/// Shared by the controllers.
#[derive(Clone)]
pub struct Context {
    /// Client of the API server.
    pub client: kube::Client,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Watched copies of what reconciles read in bulk.
    pub caches: crate::caches::Caches,
    /// The namespaces this context watches and writes.
    pub scope: Scope,
    /// Consecutive reconcile failures per object.
    pub backoff: Arc<crate::backoff::Backoff>,
    recorder: kube::runtime::events::Recorder,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context around `client` over `scope`; starts the caches' watches (needs a Tokio
    /// runtime).
    pub fn new(client: kube::Client, settings: Settings, scope: Scope) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
            caches: crate::caches::Caches::start(&client, &scope),
            client,
            metrics: Arc::default(),
            backoff: Arc::default(),
            scope,
            settings: Arc::new(settings),
            ready: Arc::default(),
        }
    }

    /// Another scope sharing this context's settings, metrics, Event recorder and readiness,
    /// with caches of its own.
    pub fn with_scope(&self, scope: Scope) -> Self {
        Self {
            caches: crate::caches::Caches::start(&self.client, &scope),
            backoff: Arc::default(),
            scope,
            ..self.clone()
        }
    }

    /// The API of a namespaced kind over this context's scope.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        self.scope.api(&self.client)
    }

    /// Marks this replica ready (`/ready`): its caches are filled, so as leader or standby it
    /// can take over at once.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Records a Kubernetes Event on `object` (a failure to publish is only logged).
    pub async fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &K,
        ok: bool,
        reason: &str,
        message: &str,
    ) {
        use kube::runtime::events::{Event, EventType};
        let event = Event {
            type_: if ok {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: reason.to_owned(),
            note: Some(note(message)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish an Event");
        }
    }

    /// Whether the caches are filled (on every replica, leader or not).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// An Event note: at most 1 KiB of UTF-8 (the API server refuses longer notes), cut at a
/// character boundary.
fn note(message: &str) -> String {
    const MAX_NOTE_BYTES: usize = 1024;
    let mut end = message.len().min(MAX_NOTE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_fit_in_a_kibibyte_of_utf8() {
        let long = "é".repeat(1000);
        let note = super::note(&long);
        assert!(note.len() <= 1024 && note.chars().all(|c| c == 'é'));
        assert_eq!(super::note("short"), "short");
    }
}
