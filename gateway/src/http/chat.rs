//! The model APIs (chat completions, messages, responses, completions, embeddings), one
//! handler parameterised by `Protocol`: authenticate → read and validate the body → resolve
//! the route → check the key may use it → try targets in pick order → stamp provenance
//! headers. Errors are rendered in the protocol the client speaks.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::Served;
use super::admission::admit;
use super::auth::{Caller, authenticate};
use crate::auth_throttle::ClientAddress;
use crate::config::{RouteRuntime, Snapshot};
use crate::error::ApiError;
use crate::limits::Meter;
use crate::limits::reservation::CallerLabel;
use crate::request::{ClientRequest, Protocol};
use crate::state::AppState;

/// Renders an error in the protocol the client speaks.
fn render(error: ApiError, protocol: Protocol) -> Response {
    match protocol {
        Protocol::OpenAi | Protocol::Responses | Protocol::Completions | Protocol::Embeddings => {
            error.into_response()
        }
        Protocol::Anthropic => error.into_anthropic_response(),
    }
}

/// Serves one request of `protocol`, streamed or not; the router binds one per endpoint.
pub async fn serve(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    body: Body,
    protocol: Protocol,
) -> Response {
    handle(&state, client, &headers, body, protocol)
        .await
        .unwrap_or_else(|error| render(error, protocol))
}

async fn handle(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    body: Body,
    protocol: Protocol,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let snapshot = state.snapshots.load().ok_or(ApiError::NotReady)?;
    let (key, bytes) =
        read_authenticated(state, &snapshot, client, headers, body, protocol).await?;
    let label = key.as_ref().map(Caller::label);
    let meter = Arc::new(Meter::default());
    let caller = Authenticated {
        key: key.as_ref(),
        label,
        meter,
    };
    // A refusal past authentication still names its caller (access line, usage event).
    let unrouted = caller.served(Arc::default(), Arc::default());
    let routed = route_and_serve(state, &snapshot, headers, bytes, protocol, caller, started);
    Ok(routed.await.unwrap_or_else(|error| {
        let mut response = render(error, protocol);
        response.extensions_mut().insert(unrouted);
        response
    }))
}

/// An authenticated request's caller and usage meter.
struct Authenticated<'k, 'c> {
    key: Option<&'k Caller<'c>>,
    label: Option<Arc<CallerLabel>>,
    meter: Arc<Meter>,
}

impl Authenticated<'_, '_> {
    fn served(&self, route: Arc<str>, provider: Arc<str>) -> Served {
        Served {
            route,
            provider,
            caller: self.label.clone(),
            meter: Some(self.meter.clone()),
        }
    }
}

/// Parses the body, resolves the route, admits and serves the request.
async fn route_and_serve(
    state: &AppState,
    snapshot: &Snapshot,
    headers: &HeaderMap,
    bytes: Bytes,
    protocol: Protocol,
    caller: Authenticated<'_, '_>,
    started: Instant,
) -> Result<Response, ApiError> {
    let mut request = match protocol {
        Protocol::OpenAi => ClientRequest::parse(bytes)?,
        Protocol::Anthropic => ClientRequest::parse_messages(bytes)?,
        Protocol::Responses => ClientRequest::parse_responses(bytes)?,
        Protocol::Completions => ClientRequest::parse_completions(bytes)?,
        Protocol::Embeddings => ClientRequest::parse_embeddings(bytes)?,
    };
    let route = allowed_route(snapshot, caller.key, &request.model)?;
    if crate::traces::recording() {
        annotate_request(&request, snapshot.generation);
        if crate::traces::content::captured(route.compiled.capture_content) {
            let prompt = crate::traces::content::input(request.protocol, &request.body);
            crate::traces::annotate(&opentelemetry::Context::current(), || prompt);
        }
    }
    let label = caller.label.clone();
    if protocol == Protocol::Responses {
        // A continuation's kept history is input too: admission reserves tokens for it.
        let caller = label.as_ref().map_or("", |c| &*c.id);
        request.other_prompt_bytes += state.responses.referred_bytes(caller, &request.body).await;
    }
    let meter = &caller.meter;
    let admitted = admit(
        state,
        snapshot,
        caller.key,
        label.clone(),
        route,
        &request,
        meter,
    )
    .await?;
    let incoming = crate::proxy::Incoming {
        request: &request,
        headers,
        started,
        meter,
        caller: label.as_ref().map_or("", |c| &*c.id),
    };
    let (result, provider) = crate::proxy::serve(state, snapshot, route, incoming).await;
    let served = caller.served(route.model.clone(), provider.cloned().unwrap_or_default());
    let mut response = admitted.attach(result.unwrap_or_else(|error| render(error, protocol)));
    stamp_provenance(&mut response, &served, snapshot.generation);
    response.extensions_mut().insert(served);
    Ok(response)
}

/// The sampling parameters of a request body, for its server span.
#[derive(serde::Deserialize)]
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
}

/// Puts what the client asked for on the request's server span (the current context).
fn annotate_request(request: &ClientRequest, generation: u64) {
    use opentelemetry::KeyValue;
    let mut attributes = vec![
        KeyValue::new("gen_ai.request.model", request.model.clone()),
        KeyValue::new("llm_gateway.stream", request.stream),
        KeyValue::new(
            "llm_gateway.generation",
            i64::try_from(generation).unwrap_or(i64::MAX),
        ),
    ];
    if let Some(max_tokens) = request.max_tokens {
        attributes.push(KeyValue::new(
            "gen_ai.request.max_tokens",
            i64::from(max_tokens),
        ));
    }
    // Read again only while traced: the request path does not need them.
    if let Ok(sampling) = serde_json::from_slice::<Sampling>(&request.body) {
        for (key, value) in [
            ("gen_ai.request.temperature", sampling.temperature),
            ("gen_ai.request.top_p", sampling.top_p),
        ] {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value));
            }
        }
    }
    crate::traces::annotate(&opentelemetry::Context::current(), || attributes);
}

/// The caller (authenticated first, so an unknown caller learns nothing of the body's fate)
/// and the body, read within `MAX_REQUEST_BODY_BYTES` and `BODY_READ_TIMEOUT`. `x-api-key` is
/// accepted on the Anthropic API only.
pub(super) async fn read_authenticated<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    client: ClientAddress,
    headers: &HeaderMap,
    body: Body,
    protocol: Protocol,
) -> Result<(Option<Caller<'s>>, Bytes), ApiError> {
    let accept_x_api_key = protocol == Protocol::Anthropic;
    let key = authenticate(state, snapshot, headers, accept_x_api_key, client)?;
    check_content_type(headers)?;
    let settings = &state.settings;
    let limit = settings.max_body_bytes;
    let bytes = read_body(headers, body, limit, settings.body_read_timeout).await?;
    Ok((key, bytes))
}

/// The route serving `model`, if there is one and the caller may use it.
pub(super) fn allowed_route<'s>(
    snapshot: &'s Snapshot,
    key: Option<&Caller<'_>>,
    model: &str,
) -> Result<&'s RouteRuntime, ApiError> {
    let route = snapshot
        .routes
        .get(model)
        .ok_or_else(|| ApiError::ModelNotFound {
            model: model.to_owned(),
        })?;
    if key.is_some_and(|k| !k.allows_model(model)) {
        return Err(ApiError::ModelNotAllowed {
            model: model.to_owned(),
        });
    }
    Ok(route)
}

fn stamp_provenance(response: &mut Response, served: &Served, generation: u64) {
    let headers = response.headers_mut();
    for (name, value) in [
        (ROUTE_HEADER, &*served.route),
        (PROVIDER_HEADER, &*served.provider),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers.insert(
        HeaderName::from_static(GENERATION_HEADER),
        HeaderValue::from(generation),
    );
}

// Names made from a `&str` at run time are parsed and copied on every request; static ones
// are not.
const ROUTE_HEADER: &str = "x-llm-gateway-route";
const PROVIDER_HEADER: &str = "x-llm-gateway-provider";
const GENERATION_HEADER: &str = "x-llm-gateway-generation";

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default())
    {
        None => Ok(()),
        Some(value) if contains_ignoring_case(value.as_bytes(), b"json") => Ok(()),
        Some(value) => Err(ApiError::invalid(
            format!("unsupported Content-Type {value:?}; send application/json"),
            None,
        )),
    }
}

/// Whether `haystack` contains the lowercase ASCII `needle` in any case (no copy).
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Reads the body, refusing at once when `Content-Length` is over the limit and otherwise
/// reading no further than the limit.
/// `BODY_READ_TIMEOUT` bounds the whole read, so a body dripped a byte at a time cannot hold a
/// connection and its buffer for as long as the client likes.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::invalid(
                format!(
                    "the request body did not arrive within BODY_READ_TIMEOUT ({})",
                    humantime::format_duration(timeout)
                ),
                None,
            )
        })?;
    read.map_err(|e| {
        let over_limit = e
            .source()
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if over_limit {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::invalid(format!("failed to read the request body: {e}"), None)
        }
    })
}
