//! One attempt at one target, each stage visited once and in order:
//!
//! 1. **encode** the client's request for the target ([`outgoing`], [`prepare`]): passed
//!    through with the model spliced when the target speaks the client's protocol, else
//!    decoded to the hub (OpenAI chat) and encoded by the target's adapter in `providers`; a
//!    target that cannot serve the request refuses here, before anything is sent;
//! 2. **exchange** it with the upstream (`providers::upstream`), or let the fake provider
//!    answer;
//! 3. **decode** the reply to the hub and **encode** it for the client ([`reply`]): a JSON
//!    body converted whole, a stream through one relay whose transforms chain both steps.
//!
//! Steps 2 and 3 are [`send`]. Accounting observes step 3 (usage read from the upstream's own
//! bytes); the routing that picks the target, and decides whether to try another, is
//! `proxy`'s and happens before and after, never between the stages.

pub(crate) mod continuation;
mod outgoing;
mod reply;

use axum::response::Response;
use llm_gateway_crds::llm_provider::{OpenAiProtocol, ProviderType};

use crate::error::ApiError;
use crate::providers::{Call, fake, gemini, openai, upstream};
use crate::request::Protocol;
use outgoing::Send;

/// An attempt encoded for its target, ready to go.
pub struct Prepared(Encoded);

#[expect(
    clippy::large_enum_variant,
    reason = "one per attempt, moved once; boxing would add an allocation to every request"
)]
enum Encoded {
    /// Chat, Anthropic Messages or Responses: the request for the target and how its reply
    /// comes back.
    Chat(outgoing::Outgoing),
    /// Legacy completions, passed through.
    Completions,
    /// Embeddings.
    Embeddings,
}

/// Encodes the call's request for its target; an error is a refusal: this target cannot serve
/// this request (it has no such API, or the request uses what its translation cannot carry),
/// and nothing was sent, so another target may still serve it.
pub async fn prepare(call: &Call<'_>) -> Result<Prepared, ApiError> {
    let encoded = match call.request.protocol {
        Protocol::Embeddings => {
            refuse_embeddings(call)?;
            Encoded::Embeddings
        }
        Protocol::Completions => {
            refuse_completions(call)?;
            Encoded::Completions
        }
        Protocol::OpenAi | Protocol::Anthropic | Protocol::Responses => {
            Encoded::Chat(outgoing::encode(call).await?)
        }
    };
    Ok(Prepared(encoded))
}

/// Sends a prepared request to its target and returns the client's response (JSON or SSE),
/// or an [`ApiError`] when the target failed before anything reached the client.
pub async fn send(call: Call<'_>, prepared: Prepared) -> Result<Response, ApiError> {
    let outgoing = match prepared.0 {
        Encoded::Embeddings => return embeddings(call).await,
        Encoded::Completions => return completions(call).await,
        Encoded::Chat(outgoing) => outgoing,
    };
    let (answer, usage) = match outgoing.send {
        Send::Http(request) => (upstream::exchange(&call, request).await?, None),
        Send::Fake(ask) => {
            let (answer, usage) = fake::chat(&call, ask).await?;
            (answer, Some(usage))
        }
    };
    reply::to_client(&call, answer, usage, outgoing.back).await
}

/// Legacy completions go only to upstreams that serve them (`spec.protocols`); there is
/// nothing to translate them to.
fn refuse_completions(call: &Call<'_>) -> Result<(), ApiError> {
    let compiled = &call.provider.compiled;
    if compiled.serves(OpenAiProtocol::Completions) {
        return Ok(());
    }
    Err(ApiError::invalid(
        format!(
            "model '{}' is served by provider '{}' (type {}), which does not serve the legacy completions API (list `completions` in its spec.protocols if it does)",
            call.route_model,
            compiled.name,
            compiled.provider_type.as_str()
        ),
        Some("model"),
    ))
}

/// Legacy completions, passed through.
async fn completions(call: Call<'_>) -> Result<Response, ApiError> {
    let body = call.request.with_model(&call.target.upstream_model);
    let request = openai::request(&call, openai::Endpoint::Completions, body);
    let answer = upstream::exchange(&call, request).await?;
    reply::to_client(&call, answer, None, outgoing::Back::native()).await
}

/// Anthropic has no embeddings API.
fn refuse_embeddings(call: &Call<'_>) -> Result<(), ApiError> {
    match call.provider.compiled.provider_type {
        ProviderType::Anthropic => Err(no_embeddings(call)),
        _ => Ok(()),
    }
}

fn no_embeddings(call: &Call<'_>) -> ApiError {
    ApiError::invalid(
        format!(
            "model '{}' is served by an Anthropic provider, which has no embeddings API",
            call.route_model
        ),
        Some("model"),
    )
}

/// Embeddings: one protocol in, no translation between clients; OpenAI-format upstreams get
/// the body as sent, Gemini its batch API, the fake deterministic vectors.
async fn embeddings(call: Call<'_>) -> Result<Response, ApiError> {
    match call.provider.compiled.provider_type {
        ProviderType::OpenAi | ProviderType::OpenAiCompatible | ProviderType::AzureOpenAi => {
            let body = call.request.with_model(&call.target.upstream_model);
            let request = openai::request(&call, openai::Endpoint::Embeddings, body);
            let answer = upstream::exchange(&call, request).await?;
            reply::to_client(&call, answer, None, outgoing::Back::native()).await
        }
        ProviderType::Gemini => gemini::embeddings(call).await,
        ProviderType::Fake => fake::embeddings(call).await,
        ProviderType::Anthropic => Err(no_embeddings(&call)),
    }
}
