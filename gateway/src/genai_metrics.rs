//! The OpenTelemetry GenAI semantic conventions' metrics, exported as Prometheus histograms
//! beside the gateway's own names: `gen_ai_client_token_usage`,
//! `gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds` and
//! `gen_ai_server_time_per_output_token_seconds`, with the conventions' attributes as labels
//! (dots become underscores, as an OpenTelemetry collector's Prometheus exporter writes them)
//! and the conventions' explicit bucket boundaries, so dashboards built for other GenAI
//! servers read them unchanged.

use llm_gateway_crds::llm_provider::ProviderType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metric_handle::OnFirstUse;
use crate::request::Protocol;

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The attributes every GenAI metric carries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenAiLabels {
    /// `chat`, `embeddings` or `text_completion`.
    pub gen_ai_operation_name: &'static str,
    /// The provider as the conventions name it (`openai`, `anthropic`, `gcp.gemini`, …).
    pub gen_ai_provider_name: &'static str,
    /// The model the client asked for (the route).
    pub gen_ai_request_model: String,
    /// The model that answered (the target's upstream model).
    pub gen_ai_response_model: String,
}

/// [`GenAiLabels`] plus the kind of token counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenAiTokenLabels {
    /// The call's labels.
    #[prometheus(flatten)]
    pub call: GenAiLabels,
    /// `input` or `output`.
    pub gen_ai_token_type: &'static str,
}

impl GenAiLabels {
    /// The labels of a call to `upstream_model` on a provider of `provider_type`, for a
    /// client request in `protocol` to route `route_model`.
    pub fn new(
        protocol: Protocol,
        provider_type: ProviderType,
        route_model: &str,
        upstream_model: &str,
    ) -> Self {
        Self {
            gen_ai_operation_name: operation(protocol),
            gen_ai_provider_name: provider_name(provider_type),
            gen_ai_request_model: route_model.to_owned(),
            gen_ai_response_model: upstream_model.to_owned(),
        }
    }

    fn tokens(&self, kind: &'static str) -> GenAiTokenLabels {
        GenAiTokenLabels {
            call: self.clone(),
            gen_ai_token_type: kind,
        }
    }
}

/// The conventions' `gen_ai.operation.name` of a client API.
pub fn operation(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi | Protocol::Anthropic | Protocol::Responses => "chat",
        Protocol::Completions => "text_completion",
        Protocol::Embeddings => "embeddings",
    }
}

/// The conventions' `gen_ai.provider.name` (their well-known values where one exists).
pub fn provider_name(provider_type: ProviderType) -> &'static str {
    match provider_type {
        ProviderType::OpenAi => "openai",
        ProviderType::AzureOpenAi => "azure.ai.openai",
        ProviderType::Anthropic => "anthropic",
        ProviderType::Gemini => "gcp.gemini",
        ProviderType::OpenAiCompatible => "openai_compatible",
        ProviderType::Fake => "fake",
    }
}

/// Bucket boundaries the conventions give for `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// For `gen_ai.server.request.duration` (seconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// For `gen_ai.server.time_to_first_token` (seconds).
const FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// For `gen_ai.server.time_per_output_token` (seconds).
const PER_TOKEN_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

fn token_histogram() -> Histogram {
    Histogram::new(TOKEN_BUCKETS)
}
fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn first_token_histogram() -> Histogram {
    Histogram::new(FIRST_TOKEN_BUCKETS)
}
fn per_token_histogram() -> Histogram {
    Histogram::new(PER_TOKEN_BUCKETS)
}

/// The four GenAI histograms.
#[derive(Debug)]
pub struct GenAiMetrics {
    token_usage: Histograms<GenAiTokenLabels>,
    request_duration: Histograms<GenAiLabels>,
    time_to_first_token: Histograms<GenAiLabels>,
    time_per_output_token: Histograms<GenAiLabels>,
}

impl GenAiMetrics {
    /// Creates the histograms and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            token_usage: Histograms::new_with_constructor(token_histogram),
            request_duration: Histograms::new_with_constructor(duration_histogram),
            time_to_first_token: Histograms::new_with_constructor(first_token_histogram),
            time_per_output_token: Histograms::new_with_constructor(per_token_histogram),
        };
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens per call, by gen_ai_token_type (GenAI semantic conventions)",
            metrics.token_usage.clone(),
        );
        registry.register(
            "gen_ai_server_request_duration_seconds",
            "Time from request arrival until a served response or stream ended (GenAI semantic conventions)",
            metrics.request_duration.clone(),
        );
        registry.register(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from request arrival until the first streamed token (GenAI semantic conventions)",
            metrics.time_to_first_token.clone(),
        );
        registry.register(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, of streamed responses (GenAI semantic conventions)",
            metrics.time_per_output_token.clone(),
        );
        metrics
    }

    /// The histograms of the call labelled `labels`, to record into without a lookup (each
    /// made on its first observation).
    pub fn handles(&self, labels: &GenAiLabels) -> GenAiHandles {
        GenAiHandles {
            input_tokens: OnFirstUse::new(&self.token_usage, labels.tokens("input")),
            output_tokens: OnFirstUse::new(&self.token_usage, labels.tokens("output")),
            request_duration: OnFirstUse::new(&self.request_duration, labels.clone()),
            time_to_first_token: OnFirstUse::new(&self.time_to_first_token, labels.clone()),
            time_per_output_token: OnFirstUse::new(&self.time_per_output_token, labels.clone()),
        }
    }
}

/// One call's histograms (see [`GenAiMetrics::handles`]).
#[derive(Debug)]
pub struct GenAiHandles {
    input_tokens: HistogramHandle<GenAiTokenLabels>,
    output_tokens: HistogramHandle<GenAiTokenLabels>,
    request_duration: HistogramHandle<GenAiLabels>,
    time_to_first_token: HistogramHandle<GenAiLabels>,
    time_per_output_token: HistogramHandle<GenAiLabels>,
}

type HistogramHandle<L> = OnFirstUse<L, Histogram, fn() -> Histogram>;

impl GenAiHandles {
    /// Records one call's input and output tokens.
    pub fn tokens(&self, input: u64, output: u64) {
        self.input_tokens.get().observe(input as f64);
        self.output_tokens.get().observe(output as f64);
    }

    /// Records the time to the first token of a stream.
    pub fn first_token(&self, seconds: f64) {
        self.time_to_first_token.get().observe(seconds);
    }

    /// Records a served call that ended after `seconds`, and for a stream whose first token
    /// came after `first_token` seconds, the time per output token after it.
    pub fn finished(&self, seconds: f64, first_token: Option<f64>, output_tokens: u64) {
        self.request_duration.get().observe(seconds);
        if let Some(first) = first_token
            && output_tokens > 1
        {
            let per_token = (seconds - first).max(0.0) / (output_tokens - 1) as f64;
            self.time_per_output_token.get().observe(per_token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_conventions_names() {
        let mut registry = Registry::default();
        let metrics = GenAiMetrics::register(&mut registry);
        let labels = GenAiLabels::new(
            Protocol::Anthropic,
            ProviderType::Gemini,
            "fast",
            "gemini-2.5-flash",
        );
        let handles = metrics.handles(&labels);
        handles.tokens(12, 30);
        handles.first_token(0.2);
        handles.finished(1.2, Some(0.2), 11);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="gcp.gemini",gen_ai_request_model="fast",gen_ai_response_model="gemini-2.5-flash",gen_ai_token_type="output"} 30.0"#,
            r#"gen_ai_server_time_per_output_token_seconds_sum{gen_ai_operation_name="chat",gen_ai_provider_name="gcp.gemini",gen_ai_request_model="fast",gen_ai_response_model="gemini-2.5-flash"} 0.1"#,
            r#"gen_ai_server_request_duration_seconds_bucket{le="1.28",gen_ai_operation_name="chat""#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
