//! `RouteRuntime`: a compiled route plus what picking targets needs: the weighted schedule,
//! each target's shared state, and the route's retry budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use llm_gateway_crds::compiled::{CompiledRoute, CompiledTarget};
use llm_gateway_crds::route_policy::Strategy;

use crate::target_metrics::TargetSlots;
use crate::targets::TargetState;

mod budget;

pub use budget::RetryBudget;

/// A route with its precomputed weighted-pick schedule.
#[derive(Debug)]
pub struct RouteRuntime {
    /// Compiled settings.
    pub compiled: CompiledRoute,
    /// Its model name, shared by the labels and records of every request it serves.
    pub model: Arc<str>,
    /// Shared state of each target, indexed like `compiled.targets`.
    pub states: Vec<Arc<TargetState>>,
    /// Each target's metric handles, indexed like `compiled.targets`.
    pub metrics: Vec<TargetSlots>,
    /// Retries this route may still spend (20% of the last 10 s of requests, plus 10).
    pub budget: RetryBudget,
    total_weight: u64,
    stride: u64,
    sequence: AtomicU64,
}

impl RouteRuntime {
    /// Wraps a compiled route with its targets' states.
    pub fn new(compiled: CompiledRoute, states: Vec<Arc<TargetState>>) -> Self {
        let total_weight: u64 = compiled.targets.iter().map(|t| u64::from(t.weight)).sum();
        let stride = interleaving_stride(total_weight);
        let metrics = compiled
            .targets
            .iter()
            .map(|_| TargetSlots::default())
            .collect();
        Self {
            model: Arc::from(compiled.model.as_str()),
            compiled,
            states,
            metrics,
            budget: RetryBudget::default(),
            total_weight,
            stride,
            sequence: AtomicU64::new(0),
        }
    }

    /// Indexes of the targets in the order to try them:
    /// - `weighted`: the next slot of a deterministic schedule first (each target gets `weight`
    ///   of every `total` picks, interleaved rather than in runs), or the slot `affinity` (a
    ///   conversation's hash, see `crate::affinity`) falls on, then the rest in list order;
    /// - `priority`: list order;
    /// - `leastLatency`: lowest time-to-first-byte average first (unmeasured targets first, so
    ///   each gets measured);
    /// - `leastInflight`: fewest requests in flight first, ties in list order.
    pub fn pick_order(&self, affinity: Option<u64>) -> Vec<usize> {
        let count = self.compiled.targets.len();
        let mut order: Vec<usize> = (0..count).collect();
        match self.compiled.strategy {
            Strategy::Weighted if self.total_weight > 0 => {
                let slot = match affinity {
                    Some(point) => point % self.total_weight,
                    None => {
                        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                        (n % self.total_weight) * self.stride % self.total_weight
                    }
                };
                let mut acc = 0;
                let first = self
                    .compiled
                    .targets
                    .iter()
                    .position(|t| {
                        acc += u64::from(t.weight);
                        slot < acc
                    })
                    .unwrap_or(0);
                order.rotate_left(first);
            }
            Strategy::LeastLatency => order.sort_by_key(|&i| self.states[i].ttfb_micros()),
            Strategy::LeastInflight => order.sort_by_key(|&i| self.states[i].inflight()),
            Strategy::Weighted | Strategy::Priority => {}
        }
        order
    }

    /// The target at `index` with its state.
    pub fn target(&self, index: usize) -> (&CompiledTarget, &Arc<TargetState>) {
        (&self.compiled.targets[index], &self.states[index])
    }
}

/// A step coprime with `total` near `total / golden ratio`, so consecutive picks walk the
/// weight line in a scattered but complete cycle.
fn interleaving_stride(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    let mut stride = (total as f64 / 1.618_033_988_75).round() as u64;
    while gcd(stride, total) != 1 {
        stride += 1;
    }
    stride
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(strategy: &str) -> RouteRuntime {
        let yaml = format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p}}\nspec: {{type: fake}}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: r}}\nspec:\n  routes:\n  - model: m\n    strategy: {strategy}\n    targets: [{{provider: p, model: a}}, {{provider: p, model: b}}, {{provider: p, model: c}}]\n"
        );
        let mut manifests = llm_gateway_crds::manifest::Manifests::default();
        manifests.add_yaml("t.yaml", &yaml).unwrap();
        let inputs = llm_gateway_crds::compile::CompileInputs {
            env: &|_| None,
            key_pepper: b"",
            admitted: false,
        };
        let mut config = llm_gateway_crds::compile::compile(&manifests, &inputs).unwrap();
        let compiled = config.routes.remove("m").unwrap();
        let registry = crate::targets::TargetRegistry::new(Default::default());
        let states = compiled
            .targets
            .iter()
            .map(|t| registry.target("default/p", "p", &t.upstream_model, &t.circuit_breaker))
            .collect();
        RouteRuntime::new(compiled, states)
    }

    #[test]
    fn least_inflight_and_least_latency_order_by_live_state() {
        let r = route("leastInflight");
        let _busy = (
            r.states[0].start_call(),
            r.states[0].start_call(),
            r.states[1].start_call(),
        );
        assert_eq!(r.pick_order(None), [2, 1, 0]);

        let r = route("leastLatency");
        r.states[0].observe_ttfb(std::time::Duration::from_millis(50));
        r.states[1].observe_ttfb(std::time::Duration::from_millis(5));
        assert_eq!(
            r.pick_order(None),
            [2, 1, 0],
            "unmeasured first, then fastest"
        );
        assert_eq!(route("priority").pick_order(None), [0, 1, 2]);
    }

    #[test]
    fn stride_visits_every_slot_once_per_cycle() {
        for total in [1, 2, 3, 10, 100, 97, 1000] {
            let stride = interleaving_stride(total);
            let mut seen: Vec<u64> = (0..total).map(|n| n * stride % total).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..total).collect::<Vec<_>>(), "total {total}");
        }
    }
}
