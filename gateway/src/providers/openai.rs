//! OpenAI, OpenAI-compatible and Azure OpenAI upstreams: pass-through.
//!
//! The client body goes upstream unchanged except for the `model` value when the route maps
//! it; the response body (JSON or SSE) comes back unchanged. Only allowlisted client headers
//! are forwarded, and the client's own credential never is: the provider's is added instead
//! (`Authorization: Bearer`, or Azure's `api-key` with the deployment URL and `api-version`).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, header};
use llm_gateway_crds::llm_provider::ProviderType;

use super::Call;
use super::sse::{PassThrough, Relay};
use super::upstream::{Reply, exchange, json_response, remaining, sse_response};
use crate::error::ApiError;
use crate::openai::UsageEnvelope;

/// Client headers passed upstream; everything else (credentials, cookies, hop-by-hop,
/// forwarding headers) stays at the gateway.
const FORWARDED_HEADERS: [HeaderName; 3] = [
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
];

/// Forwards a chat completion request (the body as the client sent it, model spliced).
pub async fn chat(call: Call<'_>) -> Result<Response, ApiError> {
    let body = call.request.with_model(&call.target.upstream_model);
    forward(&call, "chat/completions", body.into()).await
}

/// Sends an OpenAI-format `body` to `endpoint` of the call's provider and relays the reply.
pub async fn forward(
    call: &Call<'_>,
    endpoint: &str,
    body: reqwest::Body,
) -> Result<Response, ApiError> {
    let compiled = &call.provider.compiled;
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let mut request = if compiled.provider_type == ProviderType::AzureOpenAi {
        let deployment = &call.target.upstream_model;
        let version = compiled.api_version.as_deref().unwrap_or_default();
        let url =
            format!("{base}/openai/deployments/{deployment}/{endpoint}?api-version={version}");
        let request = call.provider.client.post(url);
        match &compiled.credential {
            Some(credential) => request.header("api-key", credential.expose()),
            None => request,
        }
    } else {
        let request = call.provider.client.post(format!("{base}/{endpoint}"));
        match &compiled.credential {
            Some(credential) => request.bearer_auth(credential.expose()),
            None => request,
        }
    };
    request = request
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    for name in &FORWARDED_HEADERS {
        if let Some(value) = call.client_headers.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(id) = call.client_headers.get("x-request-id") {
        request = request.header("x-request-id", id);
    }
    match exchange(call, request).await? {
        Reply::Stream(response) => {
            let relay = Relay::new(
                response.bytes_stream(),
                PassThrough::default(),
                Some(call.accounting()),
                remaining(call),
            )
            .with_idle_timeout(call.provider.compiled.timeouts.stream_idle.get());
            Ok(sse_response(Body::from_stream(relay)))
        }
        Reply::Body(status, body) => {
            if let Ok(UsageEnvelope { usage: Some(usage) }) =
                serde_json::from_slice::<UsageEnvelope>(&body)
            {
                call.accounting().usage(usage);
            }
            Ok(json_response(status, body))
        }
    }
}

/// Forwards an embeddings request (body as sent, model spliced).
pub async fn embeddings(call: Call<'_>) -> Result<Response, ApiError> {
    let body = call.request.with_model(&call.target.upstream_model);
    forward(&call, "embeddings", body.into()).await
}
