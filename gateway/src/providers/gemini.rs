//! Google Gemini upstreams: requests are encoded from the hub for
//! `models/{model}:generateContent` (or `:streamGenerateContent?alt=sse`) with the
//! `x-goog-api-key` header (never the query string), and replies (JSON or stream) decoded back
//! to it. Embeddings go to `batchEmbedContents`.

use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use reqwest::RequestBuilder;
use serde_json::json;

use super::Call;
use super::upstream::{Reply, exchange, json_response, undecodable};
use crate::embeddings::EmbeddingsRequest;
use crate::error::ApiError;
use crate::request::TokenUsage;
use crate::translate::gemini::{to_gemini, to_openai_completion};
use crate::translate::gemini_stream::GeminiToOpenAi;
use crate::translate::openai_types::ChatRequest;
use crate::translate::stream::EventTransform;

/// A hub request encoded for `models/{model}:generateContent` (or
/// `:streamGenerateContent?alt=sse` when streamed).
pub fn from_hub(call: &Call<'_>, hub: ChatRequest) -> Result<RequestBuilder, ApiError> {
    let compiled = &call.provider.compiled;
    let stream = hub.stream;
    let encoded = to_gemini(hub)?;
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
        .body(serde_json::to_vec(&encoded).unwrap_or_default());
    if let Some(credential) = &compiled.credential {
        http = http.header("x-goog-api-key", credential.expose());
    }
    Ok(http)
}

/// A `generateContent` reply decoded to a hub completion, with its usage.
pub fn json_to_hub(call: &Call<'_>, body: &[u8]) -> Result<(Bytes, TokenUsage), ApiError> {
    let (completion, usage) =
        to_openai_completion(body, &call.target.upstream_model, call.created())
            .map_err(|e| undecodable(&call.provider.compiled.name, &e))?;
    Ok((completion.into(), usage.accounting()))
}

/// The translator of a `streamGenerateContent` stream into hub chunks.
pub fn stream_to_hub(call: &Call<'_>, include_usage: bool) -> EventTransform<GeminiToOpenAi> {
    let translator =
        GeminiToOpenAi::new(&call.target.upstream_model, call.created(), include_usage);
    EventTransform::new(translator).with_max_event_bytes(call.limits.event_bytes)
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
    call.accounting().usage(TokenUsage::new(prompt_tokens, 0));
    let format = request.encoding_format.unwrap_or_default();
    let vectors = batch.embeddings.into_iter().map(|e| e.values).collect();
    Ok(json_response(
        StatusCode::OK,
        crate::embeddings::response_body(vectors, format, model, prompt_tokens),
    ))
}
