//! Chargeback metrics: what each team's external-API use cost, by Kubernetes namespace, owner,
//! route model, provider and token kind, so it can be joined with cluster cost tools
//! (OpenCost, Kubecost) that allocate CPU and GPU cost by namespace and label.
//!
//! `llm_spend_usd_total` is the same nano-dollar spend the limiter settles (exact, catalogue
//! prices per token kind); `llm_billed_tokens_total` splits the tokens into disjoint kinds
//! (`input` uncached, `cache_read`, `cache_write`, `output` excluding reasoning, `reasoning`),
//! so a sum over kinds is every token billed, and `llm_spend_by_kind_usd_total` splits the
//! spend the same way (its sum over kinds is the total within half a nano-dollar a request).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The token kinds billed apart, disjoint: uncached input, cache reads, cache writes (five
/// minutes and one hour), output without reasoning, reasoning.
pub const KINDS: [&str; 5] = ["input", "cache_read", "cache_write", "output", "reasoning"];

/// What one settled request used and cost: the limiter settles it (as `limits::Outcome`) and
/// the metrics count it. Defined here, a leaf, so the metrics do not import the limiter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Billed {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// Of the prompt, read from a cache.
    pub cache_read_tokens: u64,
    /// Of the prompt, written to a cache.
    pub cache_write_tokens: u64,
    /// Of the completion, reasoning.
    pub reasoning_tokens: u64,
    /// Spend in billionths of a US dollar.
    pub spend_nanos: i64,
    /// Spend by kind ([`KINDS`] order) in trillionths of a US dollar, not rounded to the nano.
    pub spend_picos: [i64; 5],
}

impl Billed {
    /// The tokens by kind, in [`KINDS`] order: disjoint, so they add up to every token billed
    /// (reasoning counted at most once, as the meter prices it).
    pub fn tokens_by_kind(&self) -> [u64; 5] {
        let reasoning = self.reasoning_tokens.min(self.output_tokens);
        let cached = self.cache_read_tokens + self.cache_write_tokens;
        [
            self.input_tokens.saturating_sub(cached),
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.output_tokens - reasoning,
            reasoning,
        ]
    }
}

/// Who used what where.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChargeLabels {
    /// The ApiKey's namespace (empty for token callers).
    pub namespace: Arc<str>,
    /// Key owner or token team.
    pub owner: Arc<str>,
    /// Route model.
    pub model: Arc<str>,
    /// Provider that served it.
    pub provider: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    namespace: Arc<str>,
    owner: Arc<str>,
    model: Arc<str>,
    provider: Arc<str>,
    kind: &'static str,
}

/// The chargeback counters.
#[derive(Debug, Default)]
pub struct Chargeback {
    spend: Family<ChargeLabels, Counter<f64, AtomicU64>>,
    spend_by_kind: Family<KindLabels, Counter<f64, AtomicU64>>,
    tokens: Family<KindLabels, Counter>,
}

impl Chargeback {
    /// Counters registered in `registry`.
    pub fn registered(registry: &mut Registry) -> Self {
        let chargeback = Self::default();
        registry.register(
            "llm_spend_usd",
            "Spend in US dollars by namespace, owner, route model and provider (catalogue prices per token kind)",
            chargeback.spend.clone(),
        );
        registry.register(
            "llm_spend_by_kind_usd",
            "Spend in US dollars by namespace, owner, route model, provider and token kind (input, cache_read, cache_write, output, reasoning; disjoint)",
            chargeback.spend_by_kind.clone(),
        );
        registry.register(
            "llm_billed_tokens",
            "Tokens billed by namespace, owner, route model, provider and kind (input, cache_read, cache_write, output, reasoning; disjoint)",
            chargeback.tokens.clone(),
        );
        chargeback
    }

    /// Counts one settled request.
    pub fn count(&self, labels: &ChargeLabels, outcome: &Billed) {
        self.spend
            .get_or_create(labels)
            .inc_by(outcome.spend_nanos as f64 / 1e9);
        let counts = outcome.tokens_by_kind();
        for ((kind, count), picos) in KINDS.into_iter().zip(counts).zip(outcome.spend_picos) {
            if count == 0 {
                continue;
            }
            let labels = KindLabels {
                namespace: labels.namespace.clone(),
                owner: labels.owner.clone(),
                model: labels.model.clone(),
                provider: labels.provider.clone(),
                kind,
            };
            self.tokens.get_or_create(&labels).inc_by(count);
            self.spend_by_kind
                .get_or_create(&labels)
                .inc_by(picos as f64 / 1e12);
        }
    }
}
