//! The HTTP surface: [`router`] builds the whole app so tests can drive it in-process.
//!
//! Layers, outermost first:
//! 0. `drop_unsafe_request_id`: a client `x-request-id` longer than 128 bytes or outside
//!    `[A-Za-z0-9._:-]` is removed (it is echoed, forwarded upstream and logged).
//! 1. `SetRequestId`: keeps a client `x-request-id` or generates a UUID.
//! 2. `PropagateRequestId`: echoes it on the response.
//! 3. `observe`: in-flight gauge, request/error counters, duration histogram and one access-log
//!    line per request, recorded when the response body is dropped (so streams count until
//!    their last byte or the client leaving). It reads [`Served`] and
//!    [`crate::error::ErrorLabel`] from response extensions; it never sees bodies.

pub mod admission;
pub mod auth;
pub mod chat;
pub mod cors;
pub mod count_tokens;
pub mod drain;
mod events;
pub mod health;
pub mod models;
mod spans;
pub mod stored_responses;
pub mod usage;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderName, header};
use http_body_util::BodyExt;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use std::sync::Arc;

use crate::error::{ApiError, ErrorLabel};
use crate::limits::reservation::CallerLabel;
use crate::metrics::{ErrorLabels, RequestLabels, TargetLabels, unrouted};
use crate::request::Protocol;
use crate::state::AppState;

/// Response extension naming what served an API request, for metrics and the access log.
#[derive(Clone, Debug, Default)]
pub struct Served {
    /// Route model (shared with the snapshot's route).
    pub route: Arc<str>,
    /// Provider name, empty if none was reached (shared with the snapshot's provider).
    pub provider: Arc<str>,
    /// The caller (key id and owner), shared with the request's limit reservation.
    pub caller: Option<Arc<CallerLabel>>,
    /// The request's usage, completed into its usage event.
    pub meter: Option<Arc<crate::limits::Meter>>,
}

/// The API router with every layer: what clients call, plus the probes (`/health`, `/ready`).
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let cors = state.settings.cors.clone();
    let api = Router::new()
        .route(
            "/v1/chat/completions",
            post(|s, c, h, b| chat::serve(s, c, h, b, Protocol::OpenAi)),
        )
        .route(
            "/v1/messages",
            post(|s, c, h, b| chat::serve(s, c, h, b, Protocol::Anthropic)),
        )
        .route(
            "/v1/responses",
            post(|s, c, h, b| chat::serve(s, c, h, b, Protocol::Responses)),
        )
        .route("/v1/responses/input_tokens", post(count_tokens::responses))
        .route(
            "/v1/responses/{id}",
            get(stored_responses::retrieve).delete(stored_responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(stored_responses::input_items),
        )
        .route("/v1/messages/count_tokens", post(count_tokens::messages))
        .route(
            "/v1/completions",
            post(|s, c, h, b| chat::serve(s, c, h, b, Protocol::Completions)),
        )
        .route(
            "/v1/embeddings",
            post(|s, c, h, b| chat::serve(s, c, h, b, Protocol::Embeddings)),
        )
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::retrieve))
        .route("/v1/usage", get(usage::usage))
        .route("/health", get(health::live))
        .route("/ready", get(health::ready))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .map_request(drop_unsafe_request_id)
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn_with_state(state.clone(), observe)),
        )
        .with_state(state);
    // Outermost, so a preflight is answered before routing and authentication.
    match cors {
        Some(cors) => api.layer(cors),
        None => api,
    }
}

/// Longest client request id kept.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Removes a client request id that is too long or has characters outside a safe alphabet, so
/// `SetRequestId` generates one instead: the id is echoed, forwarded upstream and logged, and
/// a 350 KB id per request once took the process from 21 MB to 560 MB.
fn drop_unsafe_request_id(mut request: Request) -> Request {
    let safe = |id: &[u8]| {
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_BYTES
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    };
    let headers = request.headers_mut();
    let mut ids = headers.get_all("x-request-id").iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => true,
        (Some(id), None) => safe(id.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove("x-request-id");
    }
    request
}

/// The admin router (`ADMIN_ADDRESS`): metrics (key ids, owners) and the detailed health
/// endpoints (configuration errors, provider states) are for operators, never on the API port.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::live))
        .route("/ready", get(health::ready))
        .route("/health/detailed", get(health::detailed))
        .route("/health/system", get(health::system))
        .route("/health/circuit-breakers", get(health::circuit_breakers))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// The API's own OpenAPI 3.1 document (`gateway/src/http/openapi.json`, checked against the
/// router by a test and exercised by schemathesis in the conformance suite).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn not_found(method: http::Method, uri: http::Uri, headers: HeaderMap) -> Response {
    refusal(method, &uri, &headers, false)
}

async fn method_not_allowed(method: http::Method, uri: http::Uri, headers: HeaderMap) -> Response {
    refusal(method, &uri, &headers, true)
}

/// Whether the client speaks Anthropic's API (its SDKs always send `anthropic-version`).
fn is_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

/// A routing refusal in the caller's API: Anthropic-shaped on Anthropic paths and for clients
/// that send `anthropic-version` (its SDKs do), OpenAI-shaped otherwise.
fn refusal(
    method: http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    other_method: bool,
) -> Response {
    let anthropic = uri.path().starts_with("/v1/messages") || is_anthropic(headers);
    let error = ApiError::UnknownEndpoint {
        method,
        other_method,
    };
    if anthropic {
        error.into_anthropic_response()
    } else {
        error.into_response()
    }
}

async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let metrics = state.metrics.clone();
    // Counted down when dropped: with the response body, or here if the client leaves first.
    let in_flight = InFlight::new(&metrics);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let trace = (crate::traces::enabled() && path.starts_with("/v1/"))
        .then(|| spans::start_server(&request, &path))
        .flatten();
    let trace_id = (state.usage_events.is_some() && protocol_of(&path) != "other")
        .then(|| events::trace_id(trace.as_ref(), request.headers()))
        .flatten();
    let response = match &trace {
        Some(context) => {
            use opentelemetry::context::FutureExt;
            next.run(request).with_context(context.clone()).await
        }
        None => next.run(request).await,
    };
    let status = response.status().as_u16();
    let served = response.extensions().get::<Served>().cloned();
    let error = response.extensions().get::<ErrorLabel>().copied();
    if let Some(ErrorLabel(kind)) = error {
        metrics
            .errors
            .get_or_create(&ErrorLabels { r#type: kind })
            .inc();
    }
    let is_api = path.starts_with("/v1/");
    if is_api {
        let (model, provider) = served
            .as_ref()
            .filter(|s| !s.route.is_empty())
            .map_or((unrouted(), Arc::default()), |s| {
                (s.route.clone(), s.provider.clone())
            });
        metrics
            .requests
            .get_or_create(&RequestLabels {
                protocol: protocol_of(&path),
                model,
                provider,
                status,
            })
            .inc();
    }
    let stream_api = is_api.then(|| stream_api(&path, &response)).flatten();
    let finish = Finish {
        state,
        started,
        method,
        path,
        status,
        request_id,
        served,
        error,
        is_api,
        trace,
        trace_id,
        _in_flight: in_flight,
    };
    response.map(move |body| match stream_api {
        Some(api) => {
            let deadline = finish.state.drain_deadline();
            Body::new(drain::Cutoff::new(body, deadline, api, finish))
        }
        None => Body::new(body.map_frame(move |frame| {
            let _keep_until_body_drops = &finish;
            frame
        })),
    })
}

/// The client API a path belongs to (the `protocol` label of `llm_requests_total`).
pub(super) fn protocol_of(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat",
        "/v1/responses" => "responses",
        "/v1/messages" => "messages",
        "/v1/embeddings" => "embeddings",
        "/v1/completions" => "completions",
        _ => "other",
    }
}

/// The API of a streamed (server-sent events) response, which the drain deadline ends with an
/// error event; `None` for any other response.
fn stream_api(path: &str, response: &Response) -> Option<drain::StreamApi> {
    let content_type = response.headers().get(header::CONTENT_TYPE)?.as_bytes();
    if !content_type.starts_with(b"text/event-stream") {
        return None;
    }
    Some(match protocol_of(path) {
        "messages" => drain::StreamApi::Anthropic,
        "responses" => drain::StreamApi::Responses,
        _ => drain::StreamApi::OpenAi,
    })
}

/// Recorded when the response body is dropped: after the last byte, or when the client left.
struct Finish {
    state: AppState,
    started: Instant,
    method: http::Method,
    path: String,
    status: u16,
    request_id: Option<String>,
    served: Option<Served>,
    error: Option<ErrorLabel>,
    is_api: bool,
    /// The request's server span (traces on), ended here.
    trace: Option<opentelemetry::Context>,
    /// The trace id its usage event carries (usage events on).
    trace_id: Option<String>,
    _in_flight: InFlight,
}

/// One request in `llm_requests_in_flight` while it lives.
struct InFlight(Arc<crate::metrics::Metrics>);

impl InFlight {
    fn new(metrics: &Arc<crate::metrics::Metrics>) -> Self {
        metrics.in_flight.inc();
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(context) = self.trace.take() {
            spans::end_server(&context, self.status, self.served.as_ref(), self.error);
        }
        let elapsed = self.started.elapsed();
        let served = self.served.take().unwrap_or_default();
        if let Some(sink) = self.state.usage_events.clone() {
            events::emit(&sink, self, &served, elapsed);
        }
        let metrics = &self.state.metrics;
        if self.is_api && !served.route.is_empty() {
            let labels = TargetLabels {
                model: served.route.clone(),
                provider: served.provider.clone(),
            };
            metrics
                .request_duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
        crate::access_log::AccessLine {
            method: self.method.as_str(),
            path: &self.path,
            status: self.status,
            elapsed,
            request_id: self.request_id.as_deref().unwrap_or(""),
            route: &served.route,
            provider: &served.provider,
            key_id: served.caller.as_ref().map_or("", |c| &*c.id),
            owner: served.caller.as_ref().map_or("", |c| &*c.owner),
            error: self.error.map_or("", |e| e.0),
        }
        .log();
    }
}
