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
    /// Image repositories gateways and model servers may run (set at install time, so that
    /// writing an LlmGateway or LlmProvider does not mean choosing any image).
    pub images: crate::pod_policy::ImagePolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            key_pepper: Vec::new(),
            usage_sync_interval: std::time::Duration::from_secs(60),
            images: crate::pod_policy::ImagePolicy::default(),
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
    /// A context around `client`; starts the caches' watches (needs a Tokio runtime).
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
            caches: crate::caches::Caches::start(&client),
            client,
            metrics: Arc::default(),
            settings: Arc::new(settings),
            ready: Arc::default(),
        }
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
            note: Some(message.chars().take(1000).collect()),
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
