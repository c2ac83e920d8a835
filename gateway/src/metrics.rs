//! Prometheus metrics (OpenMetrics text via prometheus-client).
//!
//! Names kept from the original gateway so its Grafana dashboard works unchanged:
//! `llm_requests_total`, `llm_requests_duration_seconds`, `llm_requests_errors_total`. Label
//! values come only from configuration (route model, provider name) or fixed sets (status,
//! error type), never from a raw key, prompt or unrouted model name, so cardinality is bounded.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod callers;

pub use callers::{CallerLabels, CallerTokenLabels, MAX_CALLER_LABELS, OTHER_CALLERS};

/// Model label for requests that matched no route.
pub const UNROUTED: &str = "_unrouted";

/// [`UNROUTED`] as a shared label value (labels are `Arc<str>`: cloned per request, not
/// copied).
pub fn unrouted() -> Arc<str> {
    static LABEL: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(UNROUTED));
    Arc::clone(&LABEL)
}

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The client API: `chat`, `responses`, `messages`, `embeddings` or `other`.
    pub protocol: &'static str,
    /// Route model, or [`UNROUTED`].
    pub model: Arc<str>,
    /// Provider name, or empty when none was picked.
    pub provider: Arc<str>,
    /// HTTP status answered.
    pub status: u16,
}

/// Labels of a route and provider pair.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Route model.
    pub model: Arc<str>,
    /// Provider name.
    pub provider: Arc<str>,
}

/// Labels of a token count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `input` or `output`.
    pub direction: &'static str,
    /// Route model.
    pub model: Arc<str>,
    /// Provider name.
    pub provider: Arc<str>,
}

/// Labels of an error count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Error kind from [`crate::error::ApiError::label`].
    pub r#type: &'static str,
}

/// Labels of a config reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `error`.
    pub result: &'static str,
}

/// Labels of a refused API key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// `missing`, `malformed`, `bad_checksum`, `unknown`, `disabled` or `expired`.
    pub reason: &'static str,
}

/// Labels of a circuit breaker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// Provider name.
    pub provider: String,
    /// Upstream model.
    pub model: String,
}

/// Labels of a breaker transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// Provider name.
    pub provider: String,
    /// Upstream model.
    pub model: String,
    /// State entered.
    pub to: &'static str,
}

/// Labels of a retry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Route model.
    pub model: String,
    /// `retried`, `budget_exhausted` or `fallback`.
    pub outcome: &'static str,
}

/// Labels of a limiter decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimiterLabels {
    /// `redis`, `memory` (no Redis configured) or `local_fallback` (Redis unreachable).
    pub store: &'static str,
    /// `admitted`, `refused` or `unavailable` (refused fast under `failClosed`).
    pub decision: &'static str,
}

/// Labels of a failed Redis call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisErrorLabels {
    /// `admit`, `settle` or `usage`.
    pub operation: &'static str,
}

/// Labels of a finished journal job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JournalLabels {
    /// `settle` or `cancel`.
    pub operation: &'static str,
    /// `replayed`, `expired` or `dropped`.
    pub outcome: &'static str,
}

/// Labels of `llm_trace_spans_total` and `llm_usage_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExportOutcomeLabels {
    /// `exported` or `written`, `failed` (the collector refused or was unreachable, or the
    /// file could not be written) or `dropped` (the queue was full).
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route model, provider and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency until the response (or stream) ended.
    pub request_duration: HistogramFamily<TargetLabels>,
    /// Errors answered, by type.
    pub errors: Family<ErrorLabels, Counter>,
    /// Tokens by direction, route model and provider.
    pub tokens: Family<TokenLabels, Counter>,
    /// Time from request start to the first streamed byte from upstream.
    pub time_to_first_token: HistogramFamily<TargetLabels>,
    /// Configuration reloads by result.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Refused API keys by reason (`bad_checksum` is decided without any lookup).
    pub key_rejections: Family<RejectionLabels, Counter>,
    /// Requests being served now (streams count until they end).
    pub in_flight: Gauge,
    /// Generation of the configuration being served.
    pub config_generation: Gauge,
    /// Circuit-breaker state per target: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<BreakerLabels, Gauge>,
    /// Circuit-breaker transitions per target and state entered.
    pub breaker_transitions: Family<TransitionLabels, Counter>,
    /// Retries and fallbacks per route model.
    pub retries: Family<RetryLabels, Counter>,
    /// Limiter decisions by store and outcome.
    pub limiter_decisions: Family<LimiterLabels, Counter>,
    /// Failed Redis calls by operation.
    pub redis_errors: Family<RedisErrorLabels, Counter>,
    /// 1 while Redis answers, 0 while it does not (absent without Redis).
    pub redis_up: Gauge,
    /// Settlements and compensations waiting in the journal to be retried.
    pub journal_pending: Gauge,
    /// Journal jobs finished, by operation and outcome (replayed, expired, dropped).
    pub journal: Family<JournalLabels, Counter>,
    /// Finished requests per caller.
    pub caller_requests: Family<CallerLabels, Counter>,
    /// Tokens per caller and direction.
    pub caller_tokens: Family<CallerTokenLabels, Counter>,
    /// Spend in US dollars per caller.
    pub caller_spend: Family<CallerLabels, Counter<f64, AtomicU64>>,
    /// Spend and tokens by namespace, owner, model, provider and kind.
    pub chargeback: crate::chargeback::Chargeback,
    /// The GenAI semantic conventions' histograms.
    pub genai: crate::genai_metrics::GenAiMetrics,
    /// Finished spans by what became of them.
    pub trace_spans: Family<ExportOutcomeLabels, Counter>,
    /// Usage events by what became of them.
    pub usage_events: Family<ExportOutcomeLabels, Counter>,
    caller_ids: Mutex<HashSet<Arc<str>>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let request_duration =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let errors = Family::default();
        let tokens = Family::default();
        let time_to_first_token =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let config_reloads = Family::default();
        let key_rejections = Family::default();
        let in_flight = Gauge::default();
        let config_generation = Gauge::default();
        let breaker_state = Family::default();
        let breaker_transitions = Family::default();
        let retries = Family::default();
        registry.register(
            "llm_requests",
            "LLM API requests answered",
            requests.clone(),
        );
        registry.register(
            "llm_requests_duration_seconds",
            "Time from request arrival until the response or stream ended",
            request_duration.clone(),
        );
        registry.register(
            "llm_requests_errors",
            "Errors answered to clients, by type",
            errors.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens processed, by direction",
            tokens.clone(),
        );
        registry.register(
            "llm_time_to_first_token_seconds",
            "Time from request arrival until the first streamed upstream byte",
            time_to_first_token.clone(),
        );
        registry.register(
            "llm_config_reloads",
            "Configuration reloads, by result",
            config_reloads.clone(),
        );
        registry.register(
            "llm_api_key_rejections",
            "Refused API keys, by reason",
            key_rejections.clone(),
        );
        registry.register(
            "llm_requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "llm_config_generation",
            "Generation of the configuration served",
            config_generation.clone(),
        );
        registry.register(
            "llm_circuit_breaker_state",
            "Circuit-breaker state per target: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        registry.register(
            "llm_circuit_breaker_transitions",
            "Circuit-breaker state changes per target",
            breaker_transitions.clone(),
        );
        registry.register(
            "llm_retries",
            "Retried attempts and fallbacks per route model",
            retries.clone(),
        );
        let limiter_decisions = Family::default();
        let redis_errors = Family::default();
        let redis_up = Gauge::default();
        let caller_requests = Family::default();
        let caller_tokens = Family::default();
        let caller_spend = Family::<CallerLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "llm_ratelimit_decisions",
            "Limiter decisions by store (redis, memory, local_fallback) and outcome",
            limiter_decisions.clone(),
        );
        registry.register(
            "llm_redis_errors",
            "Failed Redis calls by operation",
            redis_errors.clone(),
        );
        registry.register(
            "llm_redis_up",
            "1 while Redis answers, 0 while it does not",
            redis_up.clone(),
        );
        let journal_pending = Gauge::default();
        let journal = Family::default();
        registry.register(
            "llm_limiter_journal_pending",
            "Redis settlements and compensations queued for retry",
            journal_pending.clone(),
        );
        registry.register(
            "llm_limiter_journal",
            "Journal jobs finished, by operation and outcome (replayed, expired, dropped)",
            journal.clone(),
        );
        registry.register(
            "llm_caller_requests",
            "Finished requests per caller (key id or token subject)",
            caller_requests.clone(),
        );
        registry.register(
            "llm_caller_tokens",
            "Tokens per caller and direction",
            caller_tokens.clone(),
        );
        registry.register(
            "llm_caller_spend_usd",
            "Spend in US dollars per caller, from the provider catalogue prices",
            caller_spend.clone(),
        );
        let chargeback = crate::chargeback::Chargeback::registered(&mut registry);
        let genai = crate::genai_metrics::GenAiMetrics::register(&mut registry);
        let trace_spans = Family::default();
        registry.register(
            "llm_trace_spans",
            "Finished trace spans: exported, failed (collector refused or unreachable) or dropped (export queue full)",
            trace_spans.clone(),
        );
        let usage_events = Family::default();
        registry.register(
            "llm_usage_events",
            "Usage events: written, failed (the file could not be written) or dropped (queue full)",
            usage_events.clone(),
        );
        Self {
            chargeback,
            genai,
            trace_spans,
            usage_events,
            limiter_decisions,
            redis_errors,
            redis_up,
            journal_pending,
            journal,
            caller_requests,
            caller_tokens,
            caller_spend,
            caller_ids: Mutex::default(),
            breaker_state,
            breaker_transitions,
            retries,
            registry,
            requests,
            request_duration,
            errors,
            tokens,
            time_to_first_token,
            config_reloads,
            key_rejections,
            in_flight,
            config_generation,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a refused key.
    pub fn reject_key(&self, reason: &'static str) {
        self.key_rejections
            .get_or_create(&RejectionLabels { reason })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
