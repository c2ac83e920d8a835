//! Token accounting and latency metrics for one upstream call: the gateway's own series and
//! the GenAI semantic conventions' ([`crate::genai_metrics`]).

use std::sync::Arc;
use std::time::Instant;

use crate::limits::Meter;
use crate::limits::meter::Price;
use crate::request::TokenUsage;
use crate::target_metrics::TargetMetrics;

/// Records what one call to a target used; cheap to move into a response stream.
#[derive(Debug)]
pub struct Accounting {
    /// The target's metric handles for the client's protocol.
    target: Arc<TargetMetrics>,
    started: Instant,
    first_byte_seen: bool,
    usage_seen: bool,
    meter: Option<(Arc<Meter>, Price)>,
    /// The attempt's client span and the request's server span (traces on).
    trace: Option<(opentelemetry::Context, opentelemetry::Context)>,
    /// Seconds from the request's arrival to the first streamed token.
    first_token: Option<f64>,
    /// What of the reply goes on a sampled server span: the client's protocol, and whether
    /// the completion text too (content capture).
    transcribe: Option<(crate::request::Protocol, bool)>,
    output_tokens: u64,
}

impl Accounting {
    /// Starts accounting for a call to `target`; `started` is the request arrival.
    pub fn new(target: Arc<TargetMetrics>, started: Instant) -> Self {
        Self {
            target,
            started,
            first_byte_seen: false,
            usage_seen: false,
            meter: None,
            trace: None,
            first_token: None,
            output_tokens: 0,
            transcribe: None,
        }
    }

    /// Also annotates the attempt's client span `client` (and the request's server span, the
    /// current context) with the first token and the usage.
    pub fn with_trace(mut self, client: Option<opentelemetry::Context>) -> Self {
        self.trace = client.map(|client| (client, opentelemetry::Context::current()));
        self
    }

    /// Also records the reply (in the client's `protocol`) on the server span when it is
    /// sampled: its finish reasons, and its completion when `text` (content capture).
    pub fn with_transcript(mut self, protocol: crate::request::Protocol, text: bool) -> Self {
        use opentelemetry::trace::TraceContextExt;
        if self
            .trace
            .as_ref()
            .is_some_and(|(_, s)| s.span().is_recording())
        {
            self.transcribe = Some((protocol, text));
        }
        self
    }

    /// What of a stream to transcribe: the client's protocol and whether the text too.
    pub fn transcribes(&self) -> Option<(crate::request::Protocol, bool)> {
        self.transcribe
    }

    /// Records a streamed reply's finish `reasons` and `text` (when captured).
    pub fn completed(&mut self, reasons: Vec<String>, text: Option<&str>) {
        if self.transcribe.take().is_some()
            && let Some((_, server)) = &self.trace
        {
            let reply = || crate::traces::content::stream_reply(reasons, text);
            crate::traces::annotate(server, reply);
        }
    }

    /// Records a whole reply `body` (in `protocol`'s format).
    pub fn replied(&mut self, protocol: crate::request::Protocol, body: &[u8]) {
        if let Some((_, text)) = self.transcribe.take()
            && let Some((_, server)) = &self.trace
        {
            let reply = || crate::traces::content::body_reply(protocol, body, text);
            crate::traces::annotate(server, reply);
        }
    }

    /// Also reports usage to the request's meter, priced at `price` (for limits and budgets).
    pub fn with_meter(mut self, meter: Arc<Meter>, price: Price) -> Self {
        self.meter = Some((meter, price));
        self
    }

    /// Records a stream that ended without a usage report after `delivered` completion events.
    pub fn partial(&mut self, delivered: u64) {
        if let Some((meter, price)) = &self.meter {
            meter.partial(
                delivered,
                *price,
                &self.target.labels,
                &self.target.response_model,
            );
        }
    }

    /// Marks the first streamed byte (time to first token); later calls do nothing.
    pub fn first_byte(&mut self) {
        if !self.first_byte_seen {
            self.first_byte_seen = true;
            let seconds = self.started.elapsed().as_secs_f64();
            self.target.first_token(seconds);
            self.first_token = Some(seconds);
            if let Some((meter, _)) = &self.meter {
                meter.first_token(seconds);
            }
            if let Some((client, _)) = &self.trace {
                use opentelemetry::trace::TraceContextExt;
                client.span().add_event("gen_ai.first_token", Vec::new());
            }
        }
    }

    /// Adds reported token usage; only the first report of a call counts.
    pub fn usage(&mut self, usage: TokenUsage) {
        if self.usage_seen {
            return;
        }
        self.usage_seen = true;
        if let Some((meter, price)) = &self.meter {
            meter.report(
                usage,
                *price,
                &self.target.labels,
                &self.target.response_model,
            );
        }
        let (input, output) = (usage.prompt_tokens, usage.completion_tokens);
        self.target.tokens(input, output);
        self.output_tokens = output;
        // On the request's server span only: tools that add up usage per trace would count
        // it twice on the attempt's span too.
        if let Some((client, server)) = &self.trace {
            let model = &self.target.response_model;
            let response_model =
                || opentelemetry::KeyValue::new("gen_ai.response.model", model.clone());
            crate::traces::annotate(server, || {
                let mut attributes = usage_attributes(&usage).to_vec();
                attributes.push(response_model());
                attributes
            });
            crate::traces::annotate(client, || [response_model()]);
        }
    }
}

/// The conventions' usage attributes of one call.
fn usage_attributes(usage: &TokenUsage) -> [opentelemetry::KeyValue; 5] {
    use opentelemetry::KeyValue;
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    [
        KeyValue::new("gen_ai.usage.input_tokens", int(usage.prompt_tokens)),
        KeyValue::new("gen_ai.usage.output_tokens", int(usage.completion_tokens)),
        KeyValue::new(
            "gen_ai.usage.cache_read.input_tokens",
            int(usage.cache_read_tokens),
        ),
        KeyValue::new(
            "gen_ai.usage.cache_creation.input_tokens",
            int(usage.cache_write_tokens + usage.cache_write_1h_tokens),
        ),
        KeyValue::new(
            "gen_ai.usage.reasoning.output_tokens",
            int(usage.reasoning_tokens),
        ),
    ]
}

impl Drop for Accounting {
    /// A call that served something (a first token, or usage) ends here: when its stream or
    /// body is done with.
    fn drop(&mut self) {
        if self.first_byte_seen || self.usage_seen {
            let seconds = self.started.elapsed().as_secs_f64();
            let (first, output) = (self.first_token, self.output_tokens);
            self.target.finished(seconds, first, output);
        }
    }
}
