//! Anthropic-protocol requests (`/v1/messages`) served by non-Anthropic upstreams: translate
//! the request to OpenAI, serve it through the OpenAI-protocol adapters, translate the JSON or
//! stream back into Anthropic's shapes.

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};

use super::upstream::{json_response, remaining, sse_response, undecodable};
use super::{Call, chat_openai};
use crate::error::ApiError;
use crate::request::ChatRequest;
use crate::sse::Relay;
use crate::translate::messages::{InboundRequest, to_anthropic_message, to_openai};
use crate::translate::messages_stream::OpenAiToMessages;
use crate::translate::stream::EventTransform;

/// Serves the call's Anthropic-protocol request through the OpenAI-protocol path.
pub async fn via_openai(call: Call<'_>) -> Result<Response, ApiError> {
    let inbound: InboundRequest = serde_json::from_slice(&call.request.body)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
    let openai = to_openai(inbound)?;
    let body = serde_json::to_vec(&openai)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
    let translated = ChatRequest::parse(body.into())?;
    let inner = Call {
        request: &translated,
        ..call
    };
    let remaining = remaining(&inner);
    let limits = inner.limits;
    let route_model = inner.route_model.to_owned();
    let provider = inner.provider.compiled.name.clone();
    let response = chat_openai(inner).await?;
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = response.into_body();
    if is_sse {
        let transform = EventTransform::new(OpenAiToMessages::new(&route_model))
            .with_max_event_bytes(limits.event_bytes);
        let relay = Relay::new(body.into_data_stream(), transform, None, remaining);
        return Ok(sse_response(Body::from_stream(relay)));
    }
    // The inner adapter already read the upstream reply under the same cap.
    let bytes = axum::body::to_bytes(body, limits.body_bytes)
        .await
        .map_err(|_| {
            ApiError::UpstreamTimeout(format!("upstream {provider} response could not be read"))
        })?;
    let message =
        to_anthropic_message(&bytes, &route_model).map_err(|e| undecodable(&provider, &e))?;
    Ok(json_response(StatusCode::OK, message))
}
