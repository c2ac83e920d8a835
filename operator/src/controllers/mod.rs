//! One kube-runtime controller per kind, sharing a [`Context`]. Failures back off with
//! jitter; invalid specs are reported in status by the reconcilers and not retried hot.

pub mod api_key;
pub mod llm_gateway;
pub mod llm_provider;
pub mod rotation;
pub mod route_policy;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;

use crate::shutdown::Shutdown;
use crate::{Context, Error};

/// Requeue after a failure: exponential in nothing we track, so a jittered 1–6 s keeps a
/// flapping API server from being hammered while recovering quickly.
pub fn error_policy<K>(_object: Arc<K>, error: &Error, _context: Arc<Context>) -> Action {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 20;
    tracing::warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(1000 + jitter))
}

/// Reconciles run at most this many at once per controller, so a burst of thousands of
/// objects queues instead of opening thousands of requests and holding their memory.
const CONCURRENCY: u16 = 8;

/// Controller settings: bounded concurrency, and `debounce` to fold a burst of triggers for
/// one object (a controller watching whole namespaces sees many) into one reconcile.
pub fn config(debounce: Duration) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default()
        .concurrency(CONCURRENCY)
        .debounce(debounce)
}

/// Runs one reconcile, recording its duration and outcome under `controller`.
pub async fn timed(
    controller: &'static str,
    context: &Context,
    work: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = work.await;
    context.metrics.record(
        controller,
        started.elapsed().as_secs_f64(),
        result.as_ref().err(),
    );
    result
}

/// Runs every writer (the controllers and the usage sync) until `shutdown`. The caller has
/// waited for the caches and set readiness (a standby never gets here, yet must be ready).
pub async fn run(context: Context, shutdown: Shutdown) {
    // The usage sync is cancelled mid-pass: each status patch is atomic, and the next leader
    // redoes the pass, while waiting for one could exceed the shutdown deadline.
    let usage = async {
        tokio::select! {
            () = crate::usage_sync::run(context.clone(), context.settings.usage_sync_interval) => {}
            () = shutdown.wait() => {}
        }
    };
    tokio::join!(
        api_key::run(context.clone(), shutdown.clone()),
        llm_provider::run(context.clone(), shutdown.clone()),
        llm_gateway::run(context.clone(), shutdown.clone()),
        route_policy::run(context.clone(), shutdown.clone()),
        usage,
    );
}
