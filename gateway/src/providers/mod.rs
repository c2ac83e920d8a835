//! The outbound side: one adapter per provider type, each encoding requests in its provider's
//! wire format (from the client's own body when the provider speaks the client's protocol,
//! else from the hub, OpenAI chat) and naming how to decode its replies back to the hub. The
//! [`upstream`] exchange sends what an adapter encoded; `pipeline` puts the stages in order.

pub mod anthropic;
pub mod fake;
pub mod gemini;
pub mod openai;
pub mod runtime;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use llm_gateway_crds::compiled::CompiledTarget;

use crate::accounting::Accounting;
use crate::metrics::Metrics;
use crate::request::ClientRequest;
pub use runtime::ProviderRuntime;

/// Everything one upstream call needs.
#[derive(Debug)]
pub struct Call<'a> {
    /// The parsed client request.
    pub request: &'a ClientRequest,
    /// The route model the client asked for.
    pub route_model: &'a Arc<str>,
    /// The route target's metric handles.
    pub slots: &'a crate::target_metrics::TargetSlots,
    /// The target picked for this attempt.
    pub target: &'a CompiledTarget,
    /// Its provider.
    pub provider: &'a ProviderRuntime,
    /// Client request headers (only allowlisted ones are forwarded).
    pub client_headers: &'a HeaderMap,
    /// When the request arrived.
    pub started: Instant,
    /// Metrics registry.
    pub metrics: &'a Arc<Metrics>,
    /// Where the request's real usage goes (to settle its limits and budget).
    pub meter: &'a Arc<crate::limits::Meter>,
    /// Caps on the reply held in memory (`MAX_UPSTREAM_BODY_BYTES`, `MAX_UPSTREAM_EVENT_BYTES`).
    pub limits: upstream::UpstreamLimits,
    /// Translated Responses kept for continuations.
    pub responses: &'a Arc<crate::response_store::ResponseStore>,
    /// The caller's key id (empty without authentication), whose kept responses these are.
    pub caller: &'a str,
    /// This attempt's client span and the headers that carry it upstream (traces on).
    pub trace: Option<(opentelemetry::Context, http::HeaderMap)>,
    /// Whether the completion goes on the server span (content capture on for the route).
    pub capture_content: bool,
}

impl Call<'_> {
    /// Unix seconds for `created` fields of translated responses.
    pub fn created(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// A fresh accounting record for this call.
    pub fn accounting(&self) -> Accounting {
        let price = crate::limits::meter::Price::of(
            self.provider.compiled.model(&self.target.upstream_model),
        );
        let target = self.slots.get(self.request.protocol, self.metrics, || {
            let labels = crate::metrics::TargetLabels {
                model: self.route_model.clone(),
                provider: self.provider.name.clone(),
            };
            let genai = crate::genai_metrics::GenAiLabels::new(
                self.request.protocol,
                self.provider.compiled.provider_type,
                self.route_model,
                &self.target.upstream_model,
            );
            (labels, genai)
        });
        Accounting::new(target, self.started)
            .with_trace(self.trace.as_ref().map(|(context, _)| context.clone()))
            .with_transcript(self.request.protocol, self.capture_content)
            .with_meter(self.meter.clone(), price)
    }
}
