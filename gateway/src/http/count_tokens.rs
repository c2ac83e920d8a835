//! `POST /v1/messages/count_tokens` (Anthropic's, which Claude Code calls) and
//! `POST /v1/responses/input_tokens` (OpenAI's): how many input tokens a request would use,
//! without generating anything or counting as usage.
//!
//! The route's first available target decides: an upstream with the endpoint itself (Anthropic
//! for messages; one serving the Responses API for responses) is asked, body passed through
//! with the model spliced, and the answer is `x-llm-gateway-token-count: exact`. Anywhere else
//! the gateway counts with OpenAI's `o200k_base` tokenizer: `tokenizer` for OpenAI-format
//! upstreams (their models' own tokenizer), `estimate` for the others (a stand-in for a
//! tokenizer the gateway does not have). The count covers message text (3 tokens of framing
//! per message), system instructions and tool definitions (their JSON). A Responses request's
//! `previous_response_id` and `item_reference`s count too: resolved from the gateway's kept
//! responses wherever the counter cannot resolve them itself.
//!
//! Authenticated and held to the request rates and concurrency limits of the caller and the
//! route, like every call; it reserves no tokens and counts as no usage.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use llm_gateway_crds::llm_provider::{OpenAiProtocol, ProviderType};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::admission::admit_request_only;
use super::chat::{allowed_route, read_authenticated};
use crate::auth_throttle::ClientAddress;
use crate::config::ProviderRuntime;
use crate::error::ApiError;
use crate::limits::Meter;
use crate::pipeline::continuation::{expand, for_native};
use crate::providers::upstream::{Reply, exchange, json_response};
use crate::providers::{Call, anthropic, openai};
use crate::request::{ClientRequest, Protocol, decode, model_of};
use crate::state::AppState;

/// The response header saying how the count was made.
const HOW: &str = "x-llm-gateway-token-count";

/// `POST /v1/messages/count_tokens`.
pub async fn messages(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count(&state, client, &headers, body, Protocol::Anthropic)
        .await
        .unwrap_or_else(ApiError::into_anthropic_response)
}

/// `POST /v1/responses/input_tokens`.
pub async fn responses(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count(&state, client, &headers, body, Protocol::Responses)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
}

async fn count(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    body: Body,
    protocol: Protocol,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let snapshot = state.snapshots.load().ok_or(ApiError::NotReady)?;
    let (key, body) = read_authenticated(state, &snapshot, client, headers, body, protocol).await?;
    let view: View<'_> = decode(&body)?;
    let (model, model_span) = model_of(&body, view.model)?;
    let route = allowed_route(&snapshot, key.as_ref(), &model)?;
    let admitted = admit_request_only(state, key.as_ref(), route).await?;
    let caller = key.as_ref().map(|k| k.id()).unwrap_or_default();
    let (index, target, provider) = first_available(&snapshot, route, &model)?;
    let mut request = ClientRequest {
        protocol,
        body,
        model,
        model_span,
        stream: false,
        include_usage: false,
        prompt_bytes: 0,
        other_prompt_bytes: 0,
        max_tokens: None,
        choices: 1,
        keep: false,
        affinity: crate::affinity::Affinity::default(),
    };
    let exact = upstream_counts(provider, protocol);
    if protocol == Protocol::Responses
        && let Some(whole) = spelt_out(state, &caller, &request, provider, exact).await?
    {
        request.body = whole;
        request.model_span = model_of(&request.body, decode::<View<'_>>(&request.body)?.model)?.1;
    }
    let call = Call {
        request: &request,
        route_model: &route.model,
        slots: &route.metrics[index],
        target,
        provider,
        client_headers: headers,
        started,
        metrics: &state.metrics,
        meter: &Arc::new(Meter::default()),
        limits: state.settings.upstream_limits,
        responses: &state.responses,
        caller: &caller,
        trace: None,
        capture_content: false,
    };
    let response = count_with(&call, exact).await?;
    Ok(admitted.attach(response))
}

/// The count: the upstream's own when `exact`, else the gateway's.
async fn count_with(call: &Call<'_>, exact: bool) -> Result<Response, ApiError> {
    let (protocol, provider) = (call.request.protocol, call.provider);
    if exact {
        let Reply::Body(status, answer) = exchange(call, upstream_request(call)).await? else {
            return Err(ApiError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: format!("upstream {} streamed a token count", provider.compiled.name),
                retry_after: None,
            });
        };
        return Ok(counted(json_response(status, answer), "exact"));
    }
    let how = if is_openai_format(provider) {
        "tokenizer"
    } else {
        "estimate"
    };
    let text = call.request.body.clone();
    let tokens = tokio::task::spawn_blocking(move || estimate(&text, protocol))
        .await
        .unwrap_or(0);
    let answer = match protocol {
        Protocol::Responses => json!({"object": "response.input_tokens", "input_tokens": tokens}),
        _ => json!({"input_tokens": tokens}),
    };
    Ok(counted(
        json_response(StatusCode::OK, answer.to_string()),
        how,
    ))
}

/// The route's first target whose provider is available, in pick order.
fn first_available<'s>(
    snapshot: &'s crate::config::Snapshot,
    route: &'s crate::config::RouteRuntime,
    model: &str,
) -> Result<
    (
        usize,
        &'s llm_gateway_crds::compiled::CompiledTarget,
        &'s ProviderRuntime,
    ),
    ApiError,
> {
    route
        .pick_order(None)
        .into_iter()
        .map(|index| (index, route.target(index).0))
        .map(|(index, target)| (index, target, &snapshot.providers[target.provider]))
        .find(|(_, _, provider)| provider.compiled.unavailable.is_none())
        .ok_or_else(|| ApiError::ServiceUnavailable {
            message: format!("no target can count tokens for model '{model}' now"),
            retry_after: None,
        })
}

/// A Responses body with its continuation spelt out from the kept responses, where the one
/// counting cannot resolve it: the gateway (`exact` false), or an upstream that did not answer
/// what it refers to.
async fn spelt_out(
    state: &AppState,
    caller: &str,
    request: &ClientRequest,
    provider: &ProviderRuntime,
    exact: bool,
) -> Result<Option<Bytes>, ApiError> {
    let store = &state.responses;
    let whole = if exact {
        let sent = for_native(request, store, caller, &provider.compiled.name).await?;
        sent.spelt_out
    } else if crate::response_store::referred(&request.body).is_empty() {
        None
    } else {
        let mut body: Value = serde_json::from_slice(&request.body)
            .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
        expand(&mut body, store, caller).await?;
        Some(body)
    };
    Ok(whole.map(|body| Bytes::from(body.to_string())))
}

fn counted(mut response: Response, how: &'static str) -> Response {
    response
        .headers_mut()
        .insert(HOW, HeaderValue::from_static(how));
    response
}

fn is_openai_format(provider: &ProviderRuntime) -> bool {
    matches!(
        provider.compiled.provider_type,
        ProviderType::OpenAi | ProviderType::AzureOpenAi | ProviderType::OpenAiCompatible
    )
}

/// Whether `provider` has a count endpoint for `protocol` (then its count is exact).
fn upstream_counts(provider: &ProviderRuntime, protocol: Protocol) -> bool {
    let compiled = &provider.compiled;
    match protocol {
        Protocol::Anthropic => compiled.provider_type == ProviderType::Anthropic,
        Protocol::Responses => {
            is_openai_format(provider) && compiled.serves(OpenAiProtocol::Responses)
        }
        _ => false,
    }
}

/// The request for the upstream's own count endpoint (see [`upstream_counts`]).
fn upstream_request(call: &Call<'_>) -> reqwest::RequestBuilder {
    let body = call.request.with_model(&call.target.upstream_model);
    match call.request.protocol {
        Protocol::Anthropic => anthropic::native_at(call, "/v1/messages/count_tokens", body),
        _ => openai::request(call, openai::Endpoint::ResponsesInputTokens, body),
    }
}

/// The token count of a request body's input: message text, instructions and tools.
pub fn estimate(body: &Bytes, protocol: Protocol) -> u64 {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let bpe = tiktoken_rs::o200k_base_singleton();
    let tokens = |text: &str| bpe.encode_ordinary(text).len() as u64;
    let mut total = 0;
    let add_strings = |value: &Value| {
        let mut texts = Vec::new();
        strings(value, &mut texts);
        texts.iter().map(|t| tokens(t)).sum::<u64>()
    };
    let (turns, instructions) = match protocol {
        Protocol::Responses => ("input", "instructions"),
        _ => ("messages", "system"),
    };
    match &value[turns] {
        Value::Array(items) => {
            for item in items {
                total += 3 + add_strings(item);
            }
        }
        other => total += add_strings(other),
    }
    total += add_strings(&value[instructions]);
    if let Some(tools) = value.get("tools").filter(|t| !t.is_null()) {
        total += tokens(&tools.to_string());
    }
    total
}

/// Every string value inside `value`, skipping the `type`, `role`, `id` and `call_id` tags
/// that frame content rather than carry it.
fn strings<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(fields) => fields
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "type" | "role" | "id" | "call_id"))
            .for_each(|(_, item)| strings(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_with_openais_tokenizer_and_framing_per_turn() {
        let body = Bytes::from(
            r#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":"Hello world"},{"role":"assistant","content":[{"type":"text","text":"Hi"}]}]}"#,
        );
        // "Be brief." 3 + "Hello world" 2 + "Hi" 1, plus 3 per turn.
        assert_eq!(estimate(&body, Protocol::Anthropic), 3 + 2 + 1 + 2 * 3);
        let responses =
            Bytes::from(r#"{"model":"m","input":"Hello world","instructions":"Be brief."}"#);
        assert_eq!(estimate(&responses, Protocol::Responses), 2 + 3);
    }
}
