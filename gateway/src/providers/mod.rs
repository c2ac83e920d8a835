//! Provider adapters behind one entry point, [`chat`]: send a chat request to one target and
//! return the client response (JSON or SSE), or an [`ApiError`] before anything was sent.

pub mod anthropic;
pub mod fake;
pub mod gemini;
pub mod messages;
pub mod openai;
pub mod runtime;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use http::HeaderMap;
use llm_gateway_crds::compiled::CompiledTarget;
use llm_gateway_crds::llm_provider::ProviderType;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::request::{ChatRequest, Protocol};
use crate::usage::Accounting;
pub use runtime::ProviderRuntime;

/// Everything one upstream call needs.
#[derive(Debug)]
pub struct Call<'a> {
    /// The parsed client request.
    pub request: &'a ChatRequest,
    /// The route model the client asked for.
    pub route_model: &'a str,
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
}

impl Call<'_> {
    /// The full OpenAI request, for adapters that translate it, with the upstream model set.
    pub fn translated_request(&self) -> Result<crate::translate::openai::ChatRequest, ApiError> {
        let mut request: crate::translate::openai::ChatRequest =
            serde_json::from_slice(&self.request.body)
                .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
        request.model.clone_from(&self.target.upstream_model);
        Ok(request)
    }

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
            self.provider
                .compiled
                .models
                .get(&self.target.upstream_model),
        );
        Accounting::new(
            self.metrics.clone(),
            self.route_model,
            &self.provider.compiled.name,
            self.started,
        )
        .with_meter(self.meter.clone(), price)
    }
}

/// Sends the request to the call's target.
///
/// OpenAI-protocol requests go to each provider's adapter. Anthropic-protocol requests
/// (`/v1/messages`) pass through to Anthropic upstreams, and elsewhere are translated to
/// OpenAI, served by the same adapters, and translated back.
pub async fn chat(call: Call<'_>) -> Result<Response, ApiError> {
    match (call.request.protocol, call.provider.compiled.provider_type) {
        (Protocol::OpenAi, _) => chat_openai(call).await,
        (
            Protocol::Embeddings,
            ProviderType::OpenAi | ProviderType::OpenAiCompatible | ProviderType::AzureOpenAi,
        ) => openai::embeddings(call).await,
        (Protocol::Embeddings, ProviderType::Gemini) => gemini::embeddings(call).await,
        (Protocol::Embeddings, ProviderType::Fake) => fake::embeddings(call).await,
        (Protocol::Embeddings, ProviderType::Anthropic) => Err(ApiError::invalid(
            format!(
                "model '{}' is served by an Anthropic provider, which has no embeddings API",
                call.route_model
            ),
            Some("model"),
        )),
        (Protocol::Anthropic, ProviderType::Anthropic) => anthropic::messages(call).await,
        (Protocol::Anthropic, _) => messages::via_openai(call).await,
    }
}

/// Serves an OpenAI-protocol request.
async fn chat_openai(call: Call<'_>) -> Result<Response, ApiError> {
    match call.provider.compiled.provider_type {
        ProviderType::Fake => fake::chat(call).await,
        ProviderType::OpenAi | ProviderType::OpenAiCompatible | ProviderType::AzureOpenAi => {
            openai::chat(call).await
        }
        ProviderType::Anthropic => anthropic::chat(call).await,
        ProviderType::Gemini => gemini::chat(call).await,
    }
}
