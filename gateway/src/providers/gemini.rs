//! Google Gemini upstreams behind the OpenAI API: translate the request, send it to
//! `models/{model}:generateContent` (or `:streamGenerateContent?alt=sse`) with the
//! `x-goog-api-key` header (never the query string), translate the JSON or stream back.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use super::Call;
use super::sse::Relay;
use super::upstream::{Reply, exchange, json_response, remaining, sse_response, undecodable};
use crate::error::ApiError;
use crate::translate::gemini::{to_gemini, to_openai_completion};
use crate::translate::gemini_stream::GeminiToOpenAi;
use crate::translate::stream::EventTransform;

/// Serves an OpenAI chat request from a Gemini upstream.
pub async fn chat(call: Call<'_>) -> Result<Response, ApiError> {
    let compiled = &call.provider.compiled;
    let request = call.translated_request()?;
    let (stream, include_usage) = (request.stream, request.include_usage());
    let upstream_request = to_gemini(request)?;
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let model = &call.target.upstream_model;
    let url = if stream {
        format!("{base}/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{base}/v1beta/models/{model}:generateContent")
    };
    let mut http = call
        .provider
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&upstream_request).unwrap_or_default());
    if let Some(credential) = &compiled.credential {
        http = http.header("x-goog-api-key", credential.expose());
    }
    match exchange(&call, http).await? {
        Reply::Stream(response) => {
            let translator = GeminiToOpenAi::new(model, call.created(), include_usage);
            let relay = Relay::new(
                response.bytes_stream(),
                EventTransform::new(translator),
                Some(call.accounting()),
                remaining(&call),
            );
            Ok(sse_response(Body::from_stream(relay)))
        }
        Reply::Body(_, body) => {
            let (completion, usage) = to_openai_completion(&body, model, call.created())
                .map_err(|e| undecodable(&compiled.name, &e))?;
            call.accounting().usage(usage.accounting());
            Ok(json_response(StatusCode::OK, completion))
        }
    }
}
