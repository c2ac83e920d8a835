//! The operator's metrics: reconciles by controller and result, failures by reason, and
//! reconcile durations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `apikey` or `llmprovider`.
    pub controller: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Controller name.
    pub controller: &'static str,
    /// From [`crate::Error::label`].
    pub reason: &'static str,
}

/// Labels of a duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name.
    pub controller: &'static str,
}

/// Labels of a retry delay.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind of the object retried (`LlmGateway`, `ApiKey`, …).
    pub kind: String,
}

type Durations = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by controller and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Failed reconciles by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations.
    pub durations: Durations,
    /// Retry delays scheduled after failures, summed by kind: the backoff as it was decided
    /// (a watch event may still trigger a reconcile sooner).
    pub retry_delays: Family<KindLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::default();
        let errors = Family::default();
        let durations = Durations::new_with_constructor(histogram as fn() -> Histogram);
        let retry_delays = Family::default();
        registry.register(
            "llm_operator_retry_delay_seconds",
            "Retry delays scheduled after failed reconciles, by kind",
            retry_delays.clone(),
        );
        registry.register(
            "llm_operator_reconciles",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        registry.register(
            "llm_operator_reconcile_errors",
            "Failed reconciles by controller and reason",
            errors.clone(),
        );
        registry.register(
            "llm_operator_reconcile_duration_seconds",
            "Time one reconcile took",
            durations.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            durations,
            retry_delays,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one reconcile.
    pub fn record(&self, controller: &'static str, seconds: f64, error: Option<&crate::Error>) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        self.durations
            .get_or_create(&ControllerLabels { controller })
            .observe(seconds);
        if let Some(error) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller,
                    reason: error.label(),
                })
                .inc();
        }
    }
}
