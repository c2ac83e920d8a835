//! Anthropic upstreams. A `/v1/messages` client's body passes through with only `model`
//! spliced; anything else is encoded from the hub, and replies are decoded back to it (JSON
//! and stream). Either way the provider credential goes in `x-api-key`, never the client's.

use bytes::Bytes;
use http::header;
use reqwest::RequestBuilder;

use super::Call;
use super::upstream::undecodable;
use crate::error::ApiError;
use crate::request::TokenUsage;
use crate::translate::anthropic::{to_anthropic, to_openai_completion};
use crate::translate::anthropic_stream::AnthropicToOpenAi;
use crate::translate::openai_types::ChatRequest;
use crate::translate::stream::EventTransform;

/// The Messages API version sent when neither the client nor the provider names one.
const DEFAULT_VERSION: &str = "2023-06-01";

/// Client headers an Anthropic pass-through forwards.
const FORWARDED_HEADERS: [&str; 3] = ["anthropic-beta", "accept", "user-agent"];

/// The client's own Messages request (model spliced), with its `anthropic-version` and beta
/// headers kept.
pub fn native(call: &Call<'_>) -> RequestBuilder {
    let body = call.request.with_model(&call.target.upstream_model);
    native_at(call, "/v1/messages", body)
}

/// The client's own request to another Messages API endpoint (`path`, e.g.
/// `/v1/messages/count_tokens`), with its version and beta headers kept.
pub fn native_at(call: &Call<'_>, path: &str, body: Bytes) -> RequestBuilder {
    let version = call
        .client_headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .or(call.provider.compiled.api_version.as_deref())
        .unwrap_or(DEFAULT_VERSION);
    let mut http = post_to(call, path, version).body(body);
    for name in FORWARDED_HEADERS {
        if let Some(value) = call.client_headers.get(name) {
            http = http.header(name, value);
        }
    }
    http
}

/// A hub request encoded as a Messages request.
pub fn from_hub(call: &Call<'_>, hub: ChatRequest) -> Result<RequestBuilder, ApiError> {
    let compiled = &call.provider.compiled;
    let default_max = compiled.max_output_tokens(&call.target.upstream_model);
    let encoded = to_anthropic(hub, default_max)?;
    let version = compiled.api_version.as_deref().unwrap_or(DEFAULT_VERSION);
    let mut http = post(call, version).body(serde_json::to_vec(&encoded).unwrap_or_default());
    if let Some(id) = call.client_headers.get("x-request-id") {
        http = http.header("x-request-id", id);
    }
    Ok(http)
}

fn post(call: &Call<'_>, version: &str) -> RequestBuilder {
    post_to(call, "/v1/messages", version)
}

fn post_to(call: &Call<'_>, path: &str, version: &str) -> RequestBuilder {
    let compiled = &call.provider.compiled;
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let mut http = call
        .provider
        .client
        .post(format!("{base}{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", version);
    if let Some(credential) = &compiled.credential {
        http = http.header("x-api-key", credential.expose());
    }
    http
}

/// A Messages reply decoded to a hub completion, with its usage.
pub fn json_to_hub(call: &Call<'_>, body: &[u8]) -> Result<(Bytes, TokenUsage), ApiError> {
    let (completion, usage) = to_openai_completion(body, call.created())
        .map_err(|e| undecodable(&call.provider.compiled.name, &e))?;
    Ok((completion.into(), usage.accounting()))
}

/// The translator of a Messages stream into hub chunks.
pub fn stream_to_hub(call: &Call<'_>, include_usage: bool) -> EventTransform<AnthropicToOpenAi> {
    let translator =
        AnthropicToOpenAi::new(&call.target.upstream_model, call.created(), include_usage);
    EventTransform::new(translator).with_max_event_bytes(call.limits.event_bytes)
}
