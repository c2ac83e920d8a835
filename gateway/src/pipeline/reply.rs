//! Stage 3: the reply decoded to the hub and encoded for the client. A JSON body is converted
//! whole; a stream goes through one relay (deadline, idle timeout, accounting) whose
//! transform chains the upstream-to-hub and hub-to-client translators, or passes bytes
//! through untouched when the reply already speaks the client's protocol.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use http::StatusCode;

use super::continuation::KeptInput;
use super::outgoing::{Back, Wire};
use crate::accounting::Accounting;
use crate::error::ApiError;
use crate::providers::upstream::{Reply, json_response, remaining, sse_response, undecodable};
use crate::providers::{Call, anthropic, gemini};
use crate::request::{Protocol, TokenUsage, UsageEnvelope};
use crate::response_store::{ResponseStore, Written};
use crate::sse::{Hold, PassThrough, Relay, Then, Transform};
use crate::translate::messages::to_anthropic_message;
use crate::translate::messages_stream::OpenAiToMessages;
use crate::translate::responses_reply::{echo, response_object};
use crate::translate::responses_stream::{HubToResponses, Keeper};
use crate::translate::stream::EventTransform;
use serde_json::Value;
use std::sync::Arc;

/// The client's response for `reply`; `usage`, when the answer's producer already knows it
/// (the fake provider), is accounted before anything else is read.
pub(super) async fn to_client(
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
        Reply::Body(status, body) => json(call, status, &body, back, accounting).await,
        Reply::Stream(response) => {
            let chunks = http_body_util::BodyDataStream::new(response.into_body());
            Ok(relay(call, chunks, back, accounting))
        }
        Reply::Events(events) => Ok(relay(call, events, back, accounting)),
    }
}

/// A whole JSON reply: relayed as it came when native, else decoded to a hub completion and
/// encoded for the client.
async fn json(
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
    let format = match back.wire {
        Wire::Native => call.request.protocol,
        _ => Protocol::OpenAi,
    };
    accounting.replied(format, &hub);
    match (back.wire, call.request.protocol) {
        (Wire::Native, Protocol::Responses) if status.is_success() => {
            if let Some(keeping) = Keeping::new(call, back.keep, back.wire)
                && let Ok(response) = serde_json::from_slice::<Value>(&hub)
                && let Some(written) = keeping.keep(&response)
            {
                written.await;
            }
            Ok(json_response(status, hub))
        }
        (Wire::Native, _) => Ok(json_response(status, hub)),
        (_, Protocol::Anthropic) => {
            let message = to_anthropic_message(&hub, call.route_model)
                .map_err(|e| undecodable(&call.provider.compiled.name, &e))?;
            Ok(json_response(StatusCode::OK, message))
        }
        (_, Protocol::Responses) => {
            let id = response_id();
            let mut response = response_object(&hub, call.route_model, call.created(), Some(&id))
                .map_err(|e| undecodable(&call.provider.compiled.name, &e))?;
            if let Some(echoed) = &back.echo {
                echo(&mut response, echoed);
            }
            if let Some(keeping) = Keeping::new(call, back.keep, back.wire)
                && let Some(written) = keeping.keep(&response)
            {
                written.await;
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
    serde_json::from_slice::<UsageEnvelope>(body).ok()?.usage()
}

/// A streamed reply through one relay.
fn relay<S, E>(call: &Call<'_>, stream: S, back: Back, accounting: Accounting) -> Response
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let hold = back.keep.is_some().then(Hold::default);
    let relay = Relay::new(
        stream,
        transform(call, back, hold.as_ref()),
        Some(accounting),
        remaining(call),
    )
    .with_idle_timeout(call.provider.compiled.timeouts.stream_idle.get())
    .with_hold(hold);
    sse_response(Body::from_stream(relay))
}

/// A fresh id for a translated response: kept responses are found by it, so it must never
/// repeat, whatever ids the upstream hands out.
fn response_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

/// Keeps a Responses response for continuations, when its request asked (`store`): one the
/// upstream answered natively is marked with the provider, which keeps it too.
struct Keeping {
    store: Arc<ResponseStore>,
    caller: String,
    input: KeptInput,
    upstream: Option<String>,
}

impl Keeping {
    fn new(call: &Call<'_>, input: Option<KeptInput>, wire: Wire) -> Option<Self> {
        Some(Self {
            store: call.responses.clone(),
            caller: call.caller.to_owned(),
            input: input?,
            upstream: (wire == Wire::Native).then(|| call.provider.compiled.name.clone()),
        })
    }

    /// Keeps `response`; the write still landing, if any.
    fn keep(self, response: &Value) -> Option<Written> {
        let input = self.input.into_items();
        let upstream = self.upstream.as_deref();
        self.store.put(&self.caller, input, response, upstream)
    }

    /// The keeping as a stream's side effect, its write registered in `hold` for the relay
    /// to wait on before the bytes that completed the response go out.
    fn in_stream(self, hold: Option<&Hold>) -> Keeper {
        let hold = hold.cloned();
        Box::new(move |response: &Value| {
            if let Some(written) = self.keep(response)
                && let Some(hold) = &hold
                && let Ok(mut slot) = hold.lock()
            {
                *slot = Some(written);
            }
        })
    }
}

/// The stream's keeper, if its response is to be kept.
fn keeper(call: &Call<'_>, back: &mut Back, hold: Option<&Hold>) -> Option<Keeper> {
    Keeping::new(call, back.keep.take(), back.wire).map(|keeping| keeping.in_stream(hold))
}

/// The stream's transform: none for a native reply; else the upstream's translator to hub
/// chunks (if it is not the hub) followed by the hub's translator to the client's events (if
/// the client does not speak the hub).
fn transform(call: &Call<'_>, mut back: Back, hold: Option<&Hold>) -> Box<dyn Transform> {
    let to_hub: Option<Box<dyn Transform>> = match back.wire {
        Wire::Native => {
            return match keeper(call, &mut back, hold) {
                Some(keep) => Box::new(PassThrough::watching(Box::new(move |data: &Value| {
                    keep(&data["response"]);
                }))),
                None => Box::new(PassThrough::default()),
            };
        }
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
                .with_echo(back.echo.take().unwrap_or_default())
                .with_keeper(keeper(call, &mut back, hold));
            Box::new(EventTransform::new(translator).with_max_event_bytes(limit))
        }
    };
    let first = to_hub.unwrap_or_else(|| Box::new(PassThrough::default()));
    Box::new(Then::new(first, to_client))
}
