//! `AppState`: what every handler shares. Cheap to clone: one `Arc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::SnapshotHandle;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::targets::TargetRegistry;

/// Settings the request path reads.
#[derive(Debug, Clone)]
pub struct RequestSettings {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Secret mixed into API-key hashes.
    pub key_pepper: Arc<[u8]>,
    /// Whether failed attempts are retried (`RETRY_ENABLED`).
    pub retry_enabled: bool,
    /// Whether circuit breakers refuse traffic (`CIRCUIT_BREAKER_ENABLED`).
    pub breakers_enabled: bool,
    /// Caps on upstream replies held in memory (`MAX_UPSTREAM_BODY_BYTES`,
    /// `MAX_UPSTREAM_EVENT_BYTES`).
    pub upstream_limits: crate::providers::upstream::UpstreamLimits,
    /// `AUTH_FAILURES_PER_MINUTE` (0: off).
    pub auth_failures_per_minute: u32,
    /// `BODY_READ_TIMEOUT`: longest a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// `CORS_*`: cross-origin access for browser clients, when configured.
    pub cors: Option<tower_http::cors::CorsLayer>,
}

/// Shared handler state. One `Arc`: handlers and layers clone it for every request, and
/// cloning and dropping each field (eleven reference counts, and the drain token's lock) was
/// 3% of a request's CPU in the profile.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through it by `Deref`.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The configuration being served.
    pub snapshots: Arc<SnapshotHandle>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Per-target breakers, latency and in-flight counts (outlive reloads).
    pub targets: Arc<TargetRegistry>,
    /// Request-path settings.
    pub settings: Arc<RequestSettings>,
    /// Rate limits, budgets and usage.
    pub limiter: Arc<Limiter>,
    /// Failed authentication per client address.
    pub auth_throttle: Arc<crate::auth_throttle::AuthThrottle>,
    /// Responses kept for `previous_response_id` and `item_reference`.
    pub responses: Arc<crate::response_store::ResponseStore>,
    draining: Arc<AtomicBool>,
    /// Cancelled when the drain deadline passes: streams still running end then.
    drain_deadline: CancellationToken,
    /// Process start, for uptime.
    pub started: Instant,
    /// Where usage events go (`USAGE_EVENTS_PATH`), when on.
    pub usage_events: Option<Arc<crate::usage_events::Sink>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// New state around a snapshot handle.
    pub fn new(
        snapshots: Arc<SnapshotHandle>,
        metrics: Arc<Metrics>,
        targets: Arc<TargetRegistry>,
        settings: RequestSettings,
        limiter: Arc<Limiter>,
        responses: Arc<crate::response_store::ResponseStore>,
    ) -> Self {
        let auth_throttle = Arc::new(crate::auth_throttle::AuthThrottle::new(
            settings.auth_failures_per_minute,
        ));
        Self(Arc::new(Shared {
            auth_throttle,
            responses,
            snapshots,
            metrics,
            targets,
            settings: Arc::new(settings),
            limiter,
            draining: Arc::default(),
            drain_deadline: CancellationToken::new(),
            started: Instant::now(),
            usage_events: None,
        }))
    }

    /// Also sends one usage event per finished model request to `sink`.
    pub fn with_usage_events(self, sink: Option<crate::usage_events::Sink>) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.usage_events = sink.map(Arc::new);
        Self(Arc::new(shared))
    }

    /// Marks the gateway as shutting down: `/ready` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ends every stream still running (with an error event), at the drain deadline.
    pub fn end_streams(&self) {
        self.drain_deadline.cancel();
    }

    /// The signal streams watch for the drain deadline.
    pub fn drain_deadline(&self) -> CancellationToken {
        self.drain_deadline.clone()
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
