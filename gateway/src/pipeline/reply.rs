//! Stage 3: the reply decoded to the hub and encoded for the client. A JSON body is converted
//! whole; a stream goes through one relay (deadline, idle timeout, accounting) whose
//! transform chains the upstream-to-hub and hub-to-client translators, or passes bytes
//! through untouched when the reply already speaks the client's protocol.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use http::StatusCode;

use super::outgoing::{Back, Wire};
use crate::accounting::Accounting;
use crate::error::ApiError;
use crate::providers::upstream::{Reply, json_response, remaining, sse_response, undecodable};
use crate::providers::{Call, anthropic, gemini};
use crate::request::{Protocol, TokenUsage, UsageEnvelope};
use crate::sse::{PassThrough, Relay, Then, Transform};
use crate::translate::messages::to_anthropic_message;
use crate::translate::messages_stream::OpenAiToMessages;
use crate::translate::responses_reply::response_object;
use crate::translate::responses_stream::{HubToResponses, Keeper};
use crate::translate::stream::EventTransform;
use serde_json::Value;

/// The client's response for `reply`; `usage`, when the answer's producer already knows it
/// (the fake provider), is accounted before anything else is read.
pub(super) fn to_client(
    call: &Call<'_>,
    reply: Reply,
    usage: Option<TokenUsage>,
    back: Back,
) -> Result<Response, ApiError> {
    let mut accounting = call.accounting();
    if let Some(usage) = usage {
        accounting.usage(usage);
    }
    match reply {
        Reply::Body(status, body) => json(call, status, &body, back, accounting),
        Reply::Stream(response) => Ok(relay(call, response.bytes_stream(), back, accounting)),
        Reply::Events(events) => Ok(relay(call, events, back, accounting)),
    }
}

/// A whole JSON reply: relayed as it came when native, else decoded to a hub completion and
/// encoded for the client.
fn json(
    call: &Call<'_>,
    status: StatusCode,
    body: &Bytes,
    back: Back,
    mut accounting: Accounting,
) -> Result<Response, ApiError> {
    let (hub, usage) = match back.wire {
        Wire::Native | Wire::Hub => (
            body.clone(),
            usage_in(call.request.protocol, back.wire, body),
        ),
        Wire::Anthropic => {
            let (hub, usage) = anthropic::json_to_hub(call, body)?;
            (hub, Some(usage))
        }
        Wire::Gemini => {
            let (hub, usage) = gemini::json_to_hub(call, body)?;
            (hub, Some(usage))
        }
    };
    if let Some(usage) = usage {
        accounting.usage(usage);
    }
    match (back.wire, call.request.protocol) {
        (Wire::Native, _) => Ok(json_response(status, hub)),
        (_, Protocol::Anthropic) => {
            let message = to_anthropic_message(&hub, call.route_model)
                .map_err(|e| undecodable(&call.provider.compiled.name, &e))?;
            Ok(json_response(StatusCode::OK, message))
        }
        (_, Protocol::Responses) => {
            let id = response_id();
            let response = response_object(&hub, call.route_model, call.created(), Some(&id))
                .map_err(|e| undecodable(&call.provider.compiled.name, &e))?;
            if let Some(keep) = keeper(call, back.keep) {
                keep(&response);
            }
            Ok(json_response(StatusCode::OK, response.to_string()))
        }
        (_, Protocol::OpenAi | Protocol::Completions | Protocol::Embeddings) => {
            Ok(json_response(StatusCode::OK, hub))
        }
    }
}

/// The usage block of a body in the client's own protocol (OpenAI or Anthropic names) or the
/// hub's.
fn usage_in(protocol: Protocol, wire: Wire, body: &[u8]) -> Option<TokenUsage> {
    if wire == Wire::Native && matches!(protocol, Protocol::Anthropic | Protocol::Responses) {
        let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
        return value.get("usage").and_then(TokenUsage::from_json);
    }
    serde_json::from_slice::<UsageEnvelope>(body).ok()?.usage
}

/// A streamed reply through one relay.
fn relay<S, E>(call: &Call<'_>, stream: S, back: Back, accounting: Accounting) -> Response
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let relay = Relay::new(
        stream,
        transform(call, back),
        Some(accounting),
        remaining(call),
    )
    .with_idle_timeout(call.provider.compiled.timeouts.stream_idle.get());
    sse_response(Body::from_stream(relay))
}

/// A fresh id for a translated response: kept responses are found by it, so it must never
/// repeat, whatever ids the upstream hands out.
fn response_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

/// What keeps a translated response for continuations, when its request asked (`store`).
fn keeper(call: &Call<'_>, input: Option<Vec<Value>>) -> Option<Keeper> {
    let input = input?;
    let store = call.responses.clone();
    let caller = call.caller.to_owned();
    Some(Box::new(move |response: &Value| {
        store.put(&caller, input, response);
    }))
}

/// The stream's transform: none for a native reply; else the upstream's translator to hub
/// chunks (if it is not the hub) followed by the hub's translator to the client's events (if
/// the client does not speak the hub).
fn transform(call: &Call<'_>, back: Back) -> Box<dyn Transform> {
    let to_hub: Option<Box<dyn Transform>> = match back.wire {
        Wire::Native => return Box::new(PassThrough::default()),
        Wire::Hub => None,
        Wire::Anthropic => Some(Box::new(anthropic::stream_to_hub(call, back.include_usage))),
        Wire::Gemini => Some(Box::new(gemini::stream_to_hub(call, back.include_usage))),
    };
    let limit = call.limits.event_bytes;
    let to_client: Box<dyn Transform> = match call.request.protocol {
        Protocol::OpenAi | Protocol::Completions | Protocol::Embeddings => {
            return to_hub.unwrap_or_else(|| Box::new(PassThrough::default()));
        }
        Protocol::Anthropic => Box::new(
            EventTransform::new(OpenAiToMessages::new(call.route_model))
                .with_max_event_bytes(limit),
        ),
        Protocol::Responses => {
            let translator = HubToResponses::new(call.route_model, call.created())
                .with_response_id(response_id())
                .with_keeper(keeper(call, back.keep));
            Box::new(EventTransform::new(translator).with_max_event_bytes(limit))
        }
    };
    let first = to_hub.unwrap_or_else(|| Box::new(PassThrough::default()));
    Box::new(Then::new(first, to_client))
}
