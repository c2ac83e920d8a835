//! Per-target state that must outlive configuration reloads: circuit breaker, time-to-first-
//! byte estimate, requests in flight and `Retry-After` cooldown, keyed by (provider, upstream
//! model); and per-provider in-flight counts for the `maxConcurrency` bulkhead.
//!
//! Snapshots hold `Arc`s to these entries (resolved once per reload, so the request path does
//! no lookup); a reload re-resolves them by key, updating breaker thresholds in place, and
//! entries no snapshot refers to any more are pruned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use llm_gateway_crds::policy::CircuitBreaker as Thresholds;

use crate::breaker::{Breaker, State, Transition};
use crate::metrics::{BreakerLabels, Metrics};
use crate::notices::{Notice, NoticeSink};

/// Weight of a new sample in the time-to-first-byte moving average.
const EWMA_ALPHA: f64 = 0.3;

/// One (provider, upstream model) pair.
#[derive(Debug)]
pub struct TargetState {
    /// `namespace/name` of the provider.
    pub provider_id: String,
    /// Provider name (metric label).
    pub provider: String,
    /// Upstream model.
    pub model: String,
    breaker: Mutex<Breaker>,
    inflight: AtomicU32,
    ewma_ttfb_micros: AtomicU64,
    cooldown_until_micros: AtomicU64,
    epoch: Instant,
    metrics: Arc<Metrics>,
    notices: Arc<NoticeSink>,
}

/// Requests in flight to one provider, for its `maxConcurrency` bulkhead.
#[derive(Debug, Default)]
pub struct ProviderState {
    inflight: AtomicU32,
}

/// All target and provider states.
#[derive(Debug)]
pub struct TargetRegistry {
    epoch: Instant,
    metrics: Arc<Metrics>,
    /// Breaker transitions are also sent here (Kubernetes Events in Kubernetes mode).
    pub notices: Arc<NoticeSink>,
    targets: Mutex<HashMap<(String, String), Arc<TargetState>>>,
    providers: Mutex<HashMap<String, Arc<ProviderState>>>,
}

impl TargetRegistry {
    /// An empty registry.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            epoch: Instant::now(),
            metrics,
            notices: Arc::default(),
            targets: Mutex::default(),
            providers: Mutex::default(),
        }
    }

    /// The state of a target, created on first use; `thresholds` replace the current ones.
    pub fn target(
        &self,
        provider_id: &str,
        provider: &str,
        model: &str,
        thresholds: &Thresholds,
    ) -> Arc<TargetState> {
        let mut targets = lock(&self.targets);
        let state = targets
            .entry((provider_id.to_owned(), model.to_owned()))
            .or_insert_with(|| {
                // Every target is visible as closed from the start, not only after a first
                // transition, so dashboards and alerts see all of them.
                self.metrics
                    .breaker_state
                    .get_or_create(&BreakerLabels {
                        provider: provider.to_owned(),
                        model: model.to_owned(),
                    })
                    .set(0);
                Arc::new(TargetState {
                    provider_id: provider_id.to_owned(),
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    breaker: Mutex::new(Breaker::new(thresholds.clone())),
                    inflight: AtomicU32::new(0),
                    ewma_ttfb_micros: AtomicU64::new(0),
                    cooldown_until_micros: AtomicU64::new(0),
                    epoch: self.epoch,
                    metrics: self.metrics.clone(),
                    notices: self.notices.clone(),
                })
            });
        lock(&state.breaker).set_thresholds(thresholds.clone());
        state.clone()
    }

    /// The in-flight counter of a provider.
    pub fn provider(&self, provider_id: &str) -> Arc<ProviderState> {
        lock(&self.providers)
            .entry(provider_id.to_owned())
            .or_default()
            .clone()
    }

    /// Drops states that no snapshot refers to.
    pub fn prune(&self) {
        lock(&self.targets).retain(|_, state| {
            let used = Arc::strong_count(state) > 1;
            if !used {
                self.metrics.breaker_state.remove(&BreakerLabels {
                    provider: state.provider.clone(),
                    model: state.model.clone(),
                });
            }
            used
        });
        lock(&self.providers).retain(|_, state| Arc::strong_count(state) > 1);
    }

    /// Every target, sorted by provider and model.
    pub fn all(&self) -> Vec<Arc<TargetState>> {
        let mut all: Vec<_> = lock(&self.targets).values().cloned().collect();
        all.sort_by(|a, b| (&a.provider_id, &a.model).cmp(&(&b.provider_id, &b.model)));
        all
    }
}

/// A breaker's view for `/health/circuit-breakers`.
#[derive(Debug, serde::Serialize)]
pub struct BreakerReport {
    /// `namespace/name` of the provider.
    pub provider: String,
    /// Upstream model.
    pub model: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Failures counted in the current window.
    pub recent_failures: usize,
    /// Times the breaker opened.
    pub opened_total: u64,
    /// Seconds until an open breaker lets probes through.
    pub seconds_until_half_open: Option<f64>,
    /// Requests in flight.
    pub in_flight: u32,
    /// Moving average of time to first byte, in milliseconds.
    pub ttfb_ewma_ms: Option<f64>,
    /// Seconds left of a `Retry-After` cooldown.
    pub cooldown_seconds: Option<f64>,
}

impl TargetState {
    /// Asks the breaker to admit a call (always admitted when breakers are disabled). The
    /// admission must be settled with the call's outcome; dropped unsettled (the attempt was
    /// skipped, or the client left mid-call) it releases a half-open probe slot, so an
    /// abandoned probe never wedges the breaker.
    pub fn admit(self: &Arc<Self>, breakers_enabled: bool) -> Option<Admission> {
        if breakers_enabled {
            let (admitted, transition) = lock(&self.breaker).try_acquire(Instant::now());
            self.report(transition);
            if !admitted {
                return None;
            }
        }
        Some(Admission {
            target: self.clone(),
            breakers_enabled,
            settled: false,
        })
    }

    /// Seconds until the breaker lets calls through, when open.
    pub fn retry_in(&self) -> Option<Duration> {
        lock(&self.breaker).retry_in(Instant::now())
    }

    /// Adds a time-to-first-byte sample.
    pub fn observe_ttfb(&self, sample: Duration) {
        let sample = sample.as_micros() as f64;
        let _ = self
            .ewma_ttfb_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let next = if old == 0 {
                    sample
                } else {
                    EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * old as f64
                };
                Some(next.max(1.0) as u64)
            });
    }

    /// The moving average of time to first byte (0 before the first sample).
    pub fn ttfb_micros(&self) -> u64 {
        self.ewma_ttfb_micros.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start_call(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard {
            target: self.clone(),
        }
    }

    /// Refuses new attempts for `duration` (an upstream `Retry-After`).
    pub fn cool_down(&self, duration: Duration) {
        let until = (self.epoch.elapsed() + duration).as_micros() as u64;
        self.cooldown_until_micros
            .fetch_max(until, Ordering::Relaxed);
    }

    /// Time left of a cooldown.
    pub fn cooling_for(&self) -> Option<Duration> {
        let until = Duration::from_micros(self.cooldown_until_micros.load(Ordering::Relaxed));
        until
            .checked_sub(self.epoch.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// The `/health/circuit-breakers` entry.
    pub fn report_entry(&self) -> BreakerReport {
        let now = Instant::now();
        let breaker = lock(&self.breaker);
        let ttfb = self.ttfb_micros();
        BreakerReport {
            provider: self.provider_id.clone(),
            model: self.model.clone(),
            state: breaker.state(now).as_str(),
            recent_failures: breaker.recent_failures(now),
            opened_total: breaker.opened_total,
            seconds_until_half_open: breaker.retry_in(now).map(|d| d.as_secs_f64()),
            in_flight: self.inflight(),
            ttfb_ewma_ms: (ttfb > 0).then(|| ttfb as f64 / 1000.0),
            cooldown_seconds: self.cooling_for().map(|d| d.as_secs_f64()),
        }
    }

    fn report(&self, transition: Option<Transition>) {
        let Some(Transition { from, to }) = transition else {
            return;
        };
        let labels = BreakerLabels {
            provider: self.provider.clone(),
            model: self.model.clone(),
        };
        self.metrics
            .breaker_state
            .get_or_create(&labels)
            .set(to.gauge());
        self.metrics
            .breaker_transitions
            .get_or_create(&crate::metrics::TransitionLabels {
                provider: self.provider.clone(),
                model: self.model.clone(),
                to: to.as_str(),
            })
            .inc();
        self.notices.send(Notice::Breaker {
            provider: self.provider_id.clone(),
            model: self.model.clone(),
            to: to.as_str(),
        });
        let level_open = to == State::Open;
        if level_open {
            tracing::warn!(provider = %self.provider_id, model = %self.model, from = from.as_str(), to = to.as_str(), "circuit breaker opened");
        } else {
            tracing::info!(provider = %self.provider_id, model = %self.model, from = from.as_str(), to = to.as_str(), "circuit breaker changed state");
        }
    }
}

/// A call the breaker admitted, until its outcome is known.
#[derive(Debug)]
pub struct Admission {
    target: Arc<TargetState>,
    breakers_enabled: bool,
    settled: bool,
}

impl Admission {
    /// Feeds the call's outcome to the breaker.
    pub fn settle(mut self, success: bool) {
        self.settled = true;
        if !self.breakers_enabled {
            return;
        }
        let now = Instant::now();
        let transition = {
            let mut breaker = lock(&self.target.breaker);
            if success {
                breaker.on_success(now)
            } else {
                breaker.on_failure(now)
            }
        };
        self.target.report(transition);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.settled && self.breakers_enabled {
            lock(&self.target.breaker).on_abandoned();
        }
    }
}

/// Decrements a target's in-flight count when dropped (moved into streamed bodies).
#[derive(Debug)]
pub struct InflightGuard {
    target: Arc<TargetState>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ProviderState {
    /// Takes a slot if fewer than `limit` are taken.
    pub fn try_acquire(self: &Arc<Self>, limit: Option<u32>) -> Option<ProviderPermit> {
        let limit = limit.unwrap_or(u32::MAX);
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ProviderPermit {
                provider: self.clone(),
            })
    }
}

/// A provider bulkhead slot, released when dropped.
#[derive(Debug)]
pub struct ProviderPermit {
    provider: Arc<ProviderState>,
}

impl Drop for ProviderPermit {
    fn drop(&mut self) {
        self.provider.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short, non-async critical sections leaves valid data.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use llm_gateway_crds::Duration as SpecDuration;

    use super::*;

    #[test]
    fn an_abandoned_half_open_probe_frees_its_slot() {
        let registry = TargetRegistry::new(Arc::default());
        let thresholds = Thresholds {
            failure_threshold: 1,
            window: SpecDuration::from_secs(10),
            open_for: SpecDuration::from_millis(0),
            half_open_probes: 1,
        };
        let target = registry.target("ns/p", "p", "m", &thresholds);
        target.admit(true).unwrap().settle(false);
        let probe = target.admit(true).expect("half-open: one probe");
        assert!(target.admit(true).is_none(), "only one probe at a time");
        drop(probe); // the client left mid-call
        assert!(
            target.admit(true).is_some(),
            "the abandoned probe's slot is free again"
        );
    }
}
