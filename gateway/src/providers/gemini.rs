//! Google Gemini upstreams behind the OpenAI API: translate the request, send it to
//! `models/{model}:generateContent` (or `:streamGenerateContent?alt=sse`) with the
//! `x-goog-api-key` header (never the query string), translate the JSON or stream back.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use super::Call;
use super::upstream::{Reply, exchange, json_response, remaining, sse_response, undecodable};
use crate::embeddings::EmbeddingsRequest;
use crate::error::ApiError;
use crate::sse::Relay;
use crate::translate::gemini::{to_gemini, to_openai_completion};
use crate::translate::gemini_stream::GeminiToOpenAi;
use crate::translate::stream::EventTransform;
use serde_json::json;

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
                EventTransform::new(translator).with_max_event_bytes(call.limits.event_bytes),
                Some(call.accounting()),
                remaining(&call),
            )
            .with_idle_timeout(call.provider.compiled.timeouts.stream_idle.get());
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

/// Serves an OpenAI embeddings request with `batchEmbedContents`. Gemini reports no token
/// counts for embeddings, so usage is estimated at four bytes of input per token.
pub async fn embeddings(call: Call<'_>) -> Result<Response, ApiError> {
    let compiled = &call.provider.compiled;
    let request: EmbeddingsRequest = serde_json::from_slice(&call.request.body)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
    let texts = request.input.texts().ok_or_else(|| {
        ApiError::invalid(
            "token-array input is not supported by provider type gemini; send text",
            Some("input"),
        )
    })?;
    let model = &call.target.upstream_model;
    let requests: Vec<serde_json::Value> = texts
        .iter()
        .map(|text| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(d) = request.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let mut http = call
        .provider
        .client
        .post(format!("{base}/v1beta/models/{model}:batchEmbedContents"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(json!({"requests": requests}).to_string());
    if let Some(credential) = &compiled.credential {
        http = http.header("x-goog-api-key", credential.expose());
    }
    let Reply::Body(_, body) = exchange(&call, http).await? else {
        return Err(undecodable(
            &compiled.name,
            &serde::de::Error::custom("unexpected event stream"),
        ));
    };
    #[derive(serde::Deserialize)]
    struct Batch {
        embeddings: Vec<Values>,
    }
    #[derive(serde::Deserialize)]
    struct Values {
        values: Vec<f32>,
    }
    let batch: Batch =
        serde_json::from_slice(&body).map_err(|e| undecodable(&compiled.name, &e))?;
    let prompt_tokens = (call.request.prompt_bytes as u64).div_ceil(4);
    call.accounting().usage(crate::request::Usage {
        prompt_tokens,
        completion_tokens: 0,
    });
    let format = request.encoding_format.unwrap_or_default();
    let vectors = batch.embeddings.into_iter().map(|e| e.values).collect();
    Ok(json_response(
        StatusCode::OK,
        crate::embeddings::response_body(vectors, format, model, prompt_tokens),
    ))
}
