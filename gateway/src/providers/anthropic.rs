//! Anthropic upstreams: OpenAI-protocol requests are translated (request, JSON and stream);
//! Anthropic-protocol requests (`/v1/messages`) pass through with only `model` spliced. Either
//! way the provider credential goes in `x-api-key`, never the client's.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use super::Call;
use super::upstream::{Reply, exchange, json_response, remaining, sse_response, undecodable};
use crate::error::ApiError;
use crate::sse::{PassThrough, Relay};
use crate::translate::anthropic::{to_anthropic, to_openai_completion};
use crate::translate::anthropic_stream::AnthropicToOpenAi;
use crate::translate::stream::EventTransform;

/// Serves an OpenAI chat request from an Anthropic upstream.
pub async fn chat(call: Call<'_>) -> Result<Response, ApiError> {
    let compiled = &call.provider.compiled;
    let request = call.translated_request()?;
    let include_usage = request.include_usage();
    let default_max = compiled.max_output_tokens(&call.target.upstream_model);
    let upstream_request = to_anthropic(request, default_max)?;
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let mut http = call
        .provider
        .client
        .post(format!("{base}/v1/messages"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            "anthropic-version",
            compiled.api_version.as_deref().unwrap_or("2023-06-01"),
        )
        .body(serde_json::to_vec(&upstream_request).unwrap_or_default());
    if let Some(credential) = &compiled.credential {
        http = http.header("x-api-key", credential.expose());
    }
    if let Some(id) = call.client_headers.get("x-request-id") {
        http = http.header("x-request-id", id);
    }
    match exchange(&call, http).await? {
        Reply::Stream(response) => {
            let translator =
                AnthropicToOpenAi::new(&call.target.upstream_model, call.created(), include_usage);
            let transform =
                EventTransform::new(translator).with_max_event_bytes(call.limits.event_bytes);
            let relay = Relay::new(
                response.bytes_stream(),
                transform,
                Some(call.accounting()),
                remaining(&call),
            )
            .with_idle_timeout(call.provider.compiled.timeouts.stream_idle.get());
            Ok(sse_response(Body::from_stream(relay)))
        }
        Reply::Body(_, body) => {
            let (completion, usage) = to_openai_completion(&body, call.created())
                .map_err(|e| undecodable(&compiled.name, &e))?;
            call.accounting().usage(usage.accounting());
            Ok(json_response(StatusCode::OK, completion))
        }
    }
}

/// Client headers an Anthropic pass-through forwards.
const FORWARDED_HEADERS: [&str; 3] = ["anthropic-beta", "accept", "user-agent"];

/// Passes a `/v1/messages` request through to an Anthropic upstream.
pub async fn messages(call: Call<'_>) -> Result<Response, ApiError> {
    let compiled = &call.provider.compiled;
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let version = call
        .client_headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .or(compiled.api_version.as_deref())
        .unwrap_or("2023-06-01");
    let mut http = call
        .provider
        .client
        .post(format!("{base}/v1/messages"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", version)
        .body(call.request.with_model(&call.target.upstream_model));
    for name in FORWARDED_HEADERS {
        if let Some(value) = call.client_headers.get(name) {
            http = http.header(name, value);
        }
    }
    if let Some(credential) = &compiled.credential {
        http = http.header("x-api-key", credential.expose());
    }
    match exchange(&call, http).await? {
        Reply::Stream(response) => {
            let relay = Relay::new(
                response.bytes_stream(),
                PassThrough::default(),
                Some(call.accounting()),
                remaining(&call),
            )
            .with_idle_timeout(call.provider.compiled.timeouts.stream_idle.get());
            Ok(sse_response(Body::from_stream(relay)))
        }
        Reply::Body(status, body) => {
            let usage = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("usage").and_then(crate::request::Usage::from_json));
            if let Some(usage) = usage {
                call.accounting().usage(usage);
            }
            Ok(json_response(status, body))
        }
    }
}
