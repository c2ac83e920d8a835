//! A request's admitted reservation: held for as long as the response body lives, settled when
//! it is dropped (response sent, stream ended, or client gone), with what the [`Meter`] saw.

use std::sync::Arc;

use super::demand::Demand;
use super::limiter::{Limiter, Store};
use super::meter::Meter;
use crate::metrics::Metrics;

/// Who to charge in metrics. A key's is made once per snapshot and shared by its requests.
#[derive(Clone, Debug)]
pub struct CallerLabel {
    /// Public key id, or `jwt:<subject>`.
    pub id: Arc<str>,
    /// Key owner or token team.
    pub owner: Arc<str>,
    /// The ApiKey's namespace (empty for token callers).
    pub namespace: Arc<str>,
}

impl CallerLabel {
    /// The label of an ApiKey's key (its namespace is the part of its name before `/`; a
    /// standalone configuration's keys may have none).
    pub fn of_key(key: &llm_gateway_crds::compiled::CompiledKey) -> Self {
        let namespace = key
            .name
            .split_once('/')
            .map_or("", |(namespace, _)| namespace);
        Self {
            id: Arc::from(key.key_id.as_str()),
            owner: Arc::from(key.owner.as_str()),
            namespace: Arc::from(namespace),
        }
    }
}

/// Settles on drop; keep it alive with the response body.
#[derive(Debug)]
pub struct Reservation {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    store: Store,
    demand: Demand,
    meter: Arc<Meter>,
    caller: Option<Arc<CallerLabel>>,
}

impl Reservation {
    /// A reservation of `demand` admitted by `store`.
    pub fn new(
        limiter: Arc<Limiter>,
        metrics: Arc<Metrics>,
        store: Store,
        demand: Demand,
        meter: Arc<Meter>,
        caller: Option<Arc<CallerLabel>>,
    ) -> Self {
        Self {
            pending: Some(Pending {
                limiter,
                metrics,
                store,
                demand,
                meter,
                caller,
            }),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        // Settling needs a Redis round trip, which a destructor cannot await. The task reads
        // the meter only when it runs, after the response body (and the stream relay that
        // writes the meter) has been dropped completely.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Counted from now, so a shutdown that starts before the task runs still waits for it.
        let ticket = pending.limiter.ticket(&pending.demand);
        runtime.spawn(async move {
            let outcome = pending.meter.outcome();
            pending
                .limiter
                .settle(pending.store, pending.demand, outcome, ticket)
                .await;
            // Counted after the store settled, so a caller's metrics never run ahead of it.
            if let Some(caller) = &pending.caller {
                pending
                    .metrics
                    .count_caller_usage(&caller.id, &caller.owner, &outcome);
                if let Some(served) = pending.meter.served_by() {
                    let labels = crate::chargeback::ChargeLabels {
                        namespace: caller.namespace.clone(),
                        owner: caller.owner.clone(),
                        model: served.model,
                        provider: served.provider,
                    };
                    pending.metrics.chargeback.count(&labels, &outcome);
                }
            }
        });
    }
}
