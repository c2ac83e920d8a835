//! The metric handles of one route target, per client protocol: the gateway's token and
//! latency series and the GenAI conventions' histograms, looked up once and kept in the
//! snapshot's route. A request then counts its tokens and times by bumping atomics, without
//! building label strings or hashing them into a family (which cost two to four allocations
//! per series per request).
//!
//! Each series is looked up on its first use ([`OnFirstUse`]), so a target exports exactly the
//! series it exported before: none until called, no stream histograms for JSON replies. The
//! series are the families' own entries, so counts carry across reloads.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::genai_metrics::{GenAiHandles, GenAiLabels};
use crate::metric_handle::OnFirstUse;
use crate::metrics::{Metrics, TargetLabels, TokenLabels};
use crate::request::Protocol;

/// What one (route, target) records for requests of one protocol.
#[derive(Debug)]
pub struct TargetMetrics {
    /// Route model and provider name (also the meter's record of who served).
    pub labels: TargetLabels,
    /// The upstream model (`gen_ai.response.model` until the reply names another).
    pub response_model: String,
    input_tokens: OnFirstUse<TokenLabels, Counter>,
    output_tokens: OnFirstUse<TokenLabels, Counter>,
    time_to_first_token: OnFirstUse<TargetLabels, Histogram, fn() -> Histogram>,
    genai: GenAiHandles,
}

impl TargetMetrics {
    /// The handles of the series labelled `labels` and `genai`, in `metrics`' families.
    fn new(metrics: &Metrics, labels: TargetLabels, genai: &GenAiLabels) -> Self {
        let tokens = |direction| {
            let labels = TokenLabels {
                direction,
                model: labels.model.clone(),
                provider: labels.provider.clone(),
            };
            OnFirstUse::new(&metrics.tokens, labels)
        };
        Self {
            input_tokens: tokens("input"),
            output_tokens: tokens("output"),
            time_to_first_token: OnFirstUse::new(&metrics.time_to_first_token, labels.clone()),
            genai: metrics.genai.handles(genai),
            response_model: genai.gen_ai_response_model.clone(),
            labels,
        }
    }

    /// Counts one call's reported tokens.
    pub fn tokens(&self, input: u64, output: u64) {
        self.input_tokens.get().inc_by(input);
        self.output_tokens.get().inc_by(output);
        self.genai.tokens(input, output);
    }

    /// Records the time to a stream's first token.
    pub fn first_token(&self, seconds: f64) {
        self.time_to_first_token.get().observe(seconds);
        self.genai.first_token(seconds);
    }

    /// Records a served call that ended after `seconds` (see [`GenAiHandles::finished`]).
    pub fn finished(&self, seconds: f64, first_token: Option<f64>, output_tokens: u64) {
        self.genai.finished(seconds, first_token, output_tokens);
    }
}

/// Client protocols, each with its own GenAI operation name.
const PROTOCOLS: usize = 5;

fn slot(protocol: Protocol) -> usize {
    match protocol {
        Protocol::OpenAi => 0,
        Protocol::Anthropic => 1,
        Protocol::Responses => 2,
        Protocol::Completions => 3,
        Protocol::Embeddings => 4,
    }
}

/// One route target's handles, one set per client protocol, made on first use.
#[derive(Debug, Default)]
pub struct TargetSlots([OnceLock<Arc<TargetMetrics>>; PROTOCOLS]);

impl TargetSlots {
    /// The handles for `protocol`, made from `metrics` and the labels `make` gives the first
    /// time.
    pub fn get(
        &self,
        protocol: Protocol,
        metrics: &Metrics,
        make: impl FnOnce() -> (TargetLabels, GenAiLabels),
    ) -> Arc<TargetMetrics> {
        self.0[slot(protocol)]
            .get_or_init(|| {
                let (labels, genai) = make();
                Arc::new(TargetMetrics::new(metrics, labels, &genai))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_gateway_crds::llm_provider::ProviderType;

    #[test]
    fn handles_count_into_the_families_and_are_made_once_per_protocol() {
        let metrics = Metrics::new();
        let slots = TargetSlots::default();
        let labels = || {
            let target = TargetLabels {
                model: "fast".into(),
                provider: "openai".into(),
            };
            let genai = GenAiLabels::new(
                Protocol::OpenAi,
                ProviderType::OpenAi,
                "fast",
                "gpt-4o-mini",
            );
            (target, genai)
        };
        let first = slots.get(Protocol::OpenAi, &metrics, labels);
        first.tokens(12, 30);
        let again = slots.get(Protocol::OpenAi, &metrics, || unreachable!("made once"));
        assert!(Arc::ptr_eq(&first, &again));
        again.tokens(1, 2);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"llm_tokens_total{direction="output",model="fast",provider="openai"} 32"#
            ),
            "{text}"
        );
        let embeddings = slots.get(Protocol::Embeddings, &metrics, labels);
        assert!(!Arc::ptr_eq(&first, &embeddings));
        assert!(
            !text.contains("llm_time_to_first_token_seconds_count{"),
            "nothing streamed, so no first-token series"
        );
    }
}
