//! One kube-runtime controller per kind, sharing a [`Context`]. Failures back off with
//! jitter, per object; invalid specs and rejected children are reported in status by the
//! reconcilers and retried ever less often.

pub mod api_key;
pub mod llm_gateway;
pub mod llm_provider;
pub mod llm_quota;
pub mod rotation;
pub mod route_policy;
pub mod service_account_key;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;

use crate::shutdown::Shutdown;
use crate::{Context, Error};

/// Requeue after a failure, per object: soon for a transient failure, ever later for one
/// only an edit can clear (see [`crate::backoff`]).
pub fn error_policy<K>(object: Arc<K>, error: &Error, context: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let delay = context.backoff.failed(&object_key(&*object), error);
    let kind = crate::metrics::KindLabels {
        kind: K::kind(&()).into_owned(),
    };
    context
        .metrics
        .retry_delays
        .get_or_create(&kind)
        .inc_by(delay.as_secs_f64());
    tracing::warn!(%error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// `kind/namespace/name`, the backoff's key.
fn object_key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
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

/// Runs one reconcile of `object`, recording its duration and outcome under `controller`; a
/// success resets the object's backoff.
pub async fn timed<K: kube::Resource<DynamicType = ()>>(
    controller: &'static str,
    context: &Context,
    object: &K,
    work: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = work.await;
    context.metrics.record(
        controller,
        started.elapsed().as_secs_f64(),
        result.as_ref().err(),
    );
    if result.is_ok() {
        context.backoff.succeeded(&object_key(object));
    }
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
        llm_quota::run(context.clone(), shutdown.clone()),
        usage,
    );
}
