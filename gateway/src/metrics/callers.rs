//! Per-caller usage series: requests, spend and tokens by key id (or `jwt:<subject>`) and
//! owner, with the number of distinct callers capped so token subjects cannot grow the series
//! without bound.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;

/// Labels of a caller's usage.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerLabels {
    /// Public key id, `jwt:<subject>`, or [`OTHER_CALLERS`] past the cardinality cap.
    pub key_id: Arc<str>,
    /// Key owner or token team.
    pub owner: Arc<str>,
}

/// Labels of a caller's token count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallerTokenLabels {
    /// Public key id, `jwt:<subject>`, or [`OTHER_CALLERS`].
    pub key_id: Arc<str>,
    /// Key owner or token team.
    pub owner: Arc<str>,
    /// `input` or `output`.
    pub direction: &'static str,
}

/// Caller label for callers past [`MAX_CALLER_LABELS`].
pub const OTHER_CALLERS: &str = "_other";

/// Distinct callers given their own label; more (e.g. many token subjects) share one.
pub const MAX_CALLER_LABELS: usize = 10_000;

impl Metrics {
    /// Counts what a caller's request used.
    pub fn count_caller_usage(
        &self,
        id: &Arc<str>,
        owner: &Arc<str>,
        outcome: &crate::chargeback::Billed,
    ) {
        let key_id = self.caller_label(id);
        let labels = CallerLabels {
            key_id: key_id.clone(),
            owner: owner.clone(),
        };
        self.caller_requests.get_or_create(&labels).inc();
        self.caller_spend
            .get_or_create(&labels)
            .inc_by(outcome.spend_nanos as f64 / 1e9);
        for (direction, count) in [
            ("input", outcome.input_tokens),
            ("output", outcome.output_tokens),
        ] {
            let labels = CallerTokenLabels {
                key_id: key_id.clone(),
                owner: owner.clone(),
                direction,
            };
            self.caller_tokens.get_or_create(&labels).inc_by(count);
        }
    }

    /// `id` itself while fewer than [`MAX_CALLER_LABELS`] callers have been seen, else
    /// [`OTHER_CALLERS`].
    fn caller_label(&self, id: &Arc<str>) -> Arc<str> {
        static OTHERS: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| Arc::from(OTHER_CALLERS));
        let Ok(mut seen) = self.caller_ids.lock() else {
            return OTHERS.clone();
        };
        if seen.contains(id) || seen.len() < MAX_CALLER_LABELS && seen.insert(id.clone()) {
            id.clone()
        } else {
            OTHERS.clone()
        }
    }
}
