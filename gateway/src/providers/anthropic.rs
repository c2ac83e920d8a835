//! Anthropic upstreams behind the OpenAI API: translate the request, send it with
//! `x-api-key` and `anthropic-version`, translate the JSON or stream back.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use super::Call;
use super::sse::Relay;
use super::upstream::{Reply, exchange, json_response, remaining, sse_response, undecodable};
use crate::error::ApiError;
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
            let transform = EventTransform::new(translator);
            let relay = Relay::new(
                response.bytes_stream(),
                transform,
                call.accounting(),
                remaining(&call),
            );
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
