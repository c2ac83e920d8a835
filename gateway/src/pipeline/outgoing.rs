//! Stage 1: the client's request encoded for the target, and how its reply comes back.

use llm_gateway_crds::llm_provider::{OpenAiProtocol, ProviderType};
use reqwest::RequestBuilder;

use crate::error::ApiError;
use crate::providers::{Call, anthropic, fake, gemini, openai};
use crate::request::Protocol;
use crate::translate::messages::InboundRequest;
use crate::translate::openai_types::{ChatRequest, Content, Message};
use serde_json::{Map, Value};

use super::continuation::{self, KeptInput};
use crate::translate::responses::ResponsesRequest;
use crate::translate::{messages, responses, responses_reply};
use bytes::Bytes;

/// What goes to the target.
#[expect(
    clippy::large_enum_variant,
    reason = "one per attempt, moved once; boxing would add an allocation to every request"
)]
pub(super) enum Send {
    /// An HTTP request for the upstream.
    Http(RequestBuilder),
    /// A question for the built-in fake provider.
    Fake(fake::Ask),
}

/// The wire format a reply comes back in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wire {
    /// The client's own protocol: relayed as it came (its usage read in passing).
    Native,
    /// OpenAI chat, the hub (an Anthropic client served by an OpenAI-format target).
    Hub,
    /// Anthropic Messages, for a client of another protocol.
    Anthropic,
    /// Gemini `generateContent`.
    Gemini,
}

/// How the reply comes back to the client.
#[derive(Debug)]
pub(super) struct Back {
    /// The reply's wire format.
    pub wire: Wire,
    /// Whether a hub stream ends with a usage chunk (what a translated stream reports).
    pub include_usage: bool,
    /// A Responses request's whole input, when its response is to be kept (`store` not
    /// false) for continuations.
    pub keep: Option<KeptInput>,
    /// A translated Responses request's fields its response object repeats.
    pub echo: Option<Map<String, Value>>,
}

/// What a translated Responses reply needs from its request.
#[derive(Debug, Default)]
struct FromRequest {
    keep: Option<KeptInput>,
    echo: Option<Map<String, Value>>,
}

impl Back {
    /// A reply in the client's own protocol.
    pub fn native() -> Self {
        Self {
            wire: Wire::Native,
            include_usage: false,
            keep: None,
            echo: None,
        }
    }
}

/// The encoded request, ready for the exchange.
pub struct Outgoing {
    pub send: Send,
    pub back: Back,
}

/// Encodes the call's request for its target: the client's own body when the target speaks
/// the client's protocol, else the hub form encoded by the target's adapter.
pub(super) async fn encode(call: &Call<'_>) -> Result<Outgoing, ApiError> {
    let request = call.request;
    let native = |send| Outgoing {
        send,
        back: Back::native(),
    };
    match (request.protocol, call.provider.compiled.provider_type) {
        (Protocol::OpenAi, ProviderType::OpenAi)
        | (Protocol::OpenAi, ProviderType::OpenAiCompatible)
        | (Protocol::OpenAi, ProviderType::AzureOpenAi) => {
            let body = request.with_model(&call.target.upstream_model);
            Ok(native(Send::Http(openai::request(
                call,
                openai::Endpoint::Chat,
                body,
            ))))
        }
        (Protocol::OpenAi, ProviderType::Fake) => Ok(native(Send::Fake(fake::Ask {
            stream: request.stream,
            include_usage: request.include_usage,
        }))),
        (
            Protocol::Responses,
            ProviderType::OpenAi | ProviderType::OpenAiCompatible | ProviderType::AzureOpenAi,
        ) if call.provider.compiled.serves(OpenAiProtocol::Responses) => {
            native_responses(call).await
        }
        (Protocol::Anthropic, ProviderType::Anthropic) => {
            Ok(native(Send::Http(anthropic::native(call))))
        }
        _ => {
            let (hub, from_request) = to_hub(call).await?;
            from_hub(call, hub, from_request)
        }
    }
}

/// A Responses request for an upstream that speaks it: the client's body (model spliced), or
/// the conversation spelt out when it continues what another upstream answered.
async fn native_responses(call: &Call<'_>) -> Result<Outgoing, ApiError> {
    let provider = &call.provider.compiled.name;
    let sent = continuation::for_native(call.request, call.responses, call.caller, provider);
    let sent = sent.await?;
    let body = match sent.spelt_out {
        None => call.request.with_model(&call.target.upstream_model),
        Some(mut body) => {
            body["model"] = Value::from(call.target.upstream_model.as_str());
            Bytes::from(body.to_string())
        }
    };
    let request = openai::request(call, openai::Endpoint::Responses, body);
    Ok(Outgoing {
        send: Send::Http(request),
        back: Back {
            keep: sent.keep,
            ..Back::native()
        },
    })
}

/// The client's request decoded to the hub, with the target's model; for a Responses request
/// also its whole input (continuations spelt out), when its response is to be kept.
async fn to_hub(call: &Call<'_>) -> Result<(ChatRequest, FromRequest), ApiError> {
    let invalid = |e: serde_json::Error| ApiError::invalid(format!("invalid request: {e}"), None);
    let body = &call.request.body;
    let mut hub: ChatRequest = match call.request.protocol {
        Protocol::OpenAi => serde_json::from_slice(body).map_err(invalid)?,
        Protocol::Anthropic => {
            messages::to_openai(serde_json::from_slice::<InboundRequest>(body).map_err(invalid)?)?
        }
        Protocol::Responses => {
            let mut request: Value = serde_json::from_slice(body).map_err(invalid)?;
            let echo = Some(responses_reply::echo_of(&request));
            let input = continuation::expand(&mut request, call.responses, call.caller).await?;
            let request: ResponsesRequest = serde_json::from_value(request).map_err(invalid)?;
            let mut hub = responses::to_openai(request)?;
            hub.model.clone_from(&call.target.upstream_model);
            let keep = call.request.keep.then_some(KeptInput::Items(input));
            return Ok((hub, FromRequest { keep, echo }));
        }
        Protocol::Embeddings | Protocol::Completions => {
            return Err(ApiError::invalid("this API has no chat form", None));
        }
    };
    hub.model.clone_from(&call.target.upstream_model);
    Ok((hub, FromRequest::default()))
}

/// Turns `developer` messages into `system` ones: the chat templates of many OpenAI-compatible
/// servers (vLLM, Ollama, TGI) know only `system`, and a translated request may carry
/// `developer` (a Responses or Messages client's instructions) that the client never sent as
/// chat.
fn developer_as_system(hub: &mut ChatRequest) {
    for message in &mut hub.messages {
        if let Message::Developer { content } = message {
            *message = Message::System {
                content: std::mem::replace(content, Content::Text(String::new())),
            };
        }
    }
}

/// A hub request encoded by the target's adapter.
fn from_hub(
    call: &Call<'_>,
    hub: ChatRequest,
    from_request: FromRequest,
) -> Result<Outgoing, ApiError> {
    let include_usage = hub.include_usage();
    let (send, wire) = match call.provider.compiled.provider_type {
        ProviderType::OpenAi | ProviderType::OpenAiCompatible | ProviderType::AzureOpenAi => {
            let mut hub = hub;
            if call.provider.compiled.provider_type == ProviderType::OpenAiCompatible {
                developer_as_system(&mut hub);
            }
            let body = serde_json::to_vec(&hub)
                .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
            let request = openai::request(call, openai::Endpoint::Chat, body);
            (Send::Http(request), Wire::Hub)
        }
        ProviderType::Anthropic => (Send::Http(anthropic::from_hub(call, hub)?), Wire::Anthropic),
        ProviderType::Gemini => (Send::Http(gemini::from_hub(call, hub)?), Wire::Gemini),
        ProviderType::Fake => {
            let ask = fake::Ask {
                stream: hub.stream,
                include_usage,
            };
            (Send::Fake(ask), Wire::Hub)
        }
    };
    Ok(Outgoing {
        send,
        back: Back {
            wire,
            include_usage,
            keep: from_request.keep,
            echo: from_request.echo,
        },
    })
}
