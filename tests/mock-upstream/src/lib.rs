//! Mock LLM upstreams on 127.0.0.1 that record what they received.
//!
//! `POST /v1/chat/completions` answers in OpenAI's wire format: a `chat.completion` JSON, or
//! with `"stream": true` the SSE events of [`MockUpstream::SSE_EVENTS`] byte for byte.
//! `POST /v1/responses` speaks OpenAI's Responses API (see [`responses`]), `POST
//! /v1/completions` its legacy completions API (see [`completions`]), `POST /v1/messages`
//! Anthropic's Messages API and `POST /v1beta/models/{model}:
//! generateContent` / `:streamGenerateContent` Gemini's, answering like a tiny model (see
//! [`smart`]); so does the OpenAI API for models named `smart…`. `GET /__requests` returns every recorded request as JSON. Faults
//! are scripted per request with headers the gateway does not forward, so tests set them on
//! the mock itself with [`MockUpstream::set_fault`]. Every request is recorded (headers and
//! body), and every stream records whether it was sent to the end or dropped early.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub mod anthropic;
pub mod completions;
pub mod gemini;
pub mod openai_smart;
pub mod oversized;
pub mod responses;
pub mod smart;

/// A request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Request path.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Parsed JSON body.
    pub body: Value,
    /// Raw body bytes.
    pub raw: Bytes,
}

/// How the next requests should fail or slow down.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    /// Answer with this status and an OpenAI error body.
    pub status: Option<u16>,
    /// `Retry-After` header value to send with `status`.
    pub retry_after: Option<String>,
    /// The error message sent with `status` (default `mock failure <status>`).
    pub message: Option<String>,
    /// Delay before response headers.
    pub delay: Duration,
    /// Delay between stream events.
    pub chunk_gap: Duration,
    /// Close the connection without answering (a reset before response headers).
    pub drop_connection: bool,
    /// Break a stream after this many events (a connection lost mid-stream).
    pub truncate_after: Option<usize>,
    /// Stream this many extra content events (about 200 bytes each) before the end.
    pub extra_events: usize,
    /// Apply this fault to the next this many requests only, then answer normally (`None`:
    /// every request until the fault is changed), e.g. to fail the first attempts of a retry.
    pub times: Option<usize>,
    /// Answer with a reply too large to hold (a huge body, an event never terminated).
    pub oversized: Option<oversized::Oversized>,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    responses: responses::Kept,
    fault: Mutex<Fault>,
    streams_completed: Mutex<u32>,
    streams_aborted: Mutex<u32>,
    jwks: Mutex<Value>,
}

/// A running mock upstream.
#[derive(Debug, Clone)]
pub struct MockUpstream {
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    shared: Arc<Shared>,
}

impl MockUpstream {
    /// The streamed events, in order, exactly as sent.
    pub const SSE_EVENTS: [&'static str; 5] = [
        "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"upstream-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"upstream-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\\u00e9\"},\"finish_reason\":null}]}\r\n\r\n",
        ": keep-alive comment\n\ndata: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"upstream-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"upstream-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n",
        "data: [DONE]\n\n",
    ];

    /// Starts the mock on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts the mock on `port` of 127.0.0.1 (0 picks a free one).
    pub async fn start_on(port: u16) -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/messages", post(messages))
            .route("/v1/responses", post(responses_api))
            .route("/openai/v1/responses", post(responses_api))
            .route("/v1/completions", post(legacy_completions))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/responses/input_tokens", post(count_tokens))
            .route("/v1/embeddings", post(embeddings))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(chat),
            )
            .route(
                "/openai/deployments/{deployment}/embeddings",
                post(embeddings),
            )
            .route("/v1beta/models/{model_action}", post(generate))
            .route("/__requests", get(recorded_json))
            .route("/jwks.json", get(jwks))
            .with_state(shared.clone());
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind mock upstream");
        let address = listener.local_addr().expect("mock address");
        // Without TCP_NODELAY each small write after the first waits for the gateway's
        // acknowledgement (Nagle), which a real provider's streams do not show.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{address}/v1"),
            shared,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Sets the JSON Web Key Set served at `GET /jwks.json`.
    pub fn set_jwks(&self, jwks: Value) {
        if let Ok(mut j) = self.shared.jwks.lock() {
            *j = jwks;
        }
    }

    /// How many times `/jwks.json` was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == "/jwks.json")
            .count()
    }

    /// Scripts how the following requests behave.
    pub fn set_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.shared.fault.lock() {
            *f = fault;
        }
    }

    /// Streams sent to the end, and streams dropped before the end (client went away).
    pub fn stream_outcomes(&self) -> (u32, u32) {
        let done = self
            .shared
            .streams_completed
            .lock()
            .map(|n| *n)
            .unwrap_or(0);
        let aborted = self.shared.streams_aborted.lock().map(|n| *n).unwrap_or(0);
        (done, aborted)
    }
}

/// Records the request and applies the scripted fault; `Err` carries the fault's response.
async fn record(
    shared: &Shared,
    path: String,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<(Value, Fault), Response> {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if let Ok(mut r) = shared.requests.lock() {
        r.push(Recorded {
            path,
            headers,
            body: body.clone(),
            raw,
        });
    }
    let fault = next_fault(shared);
    // tokio sleeps at least until the timer's next 1 ms tick, even for zero: no delay asked
    // must mean none, or every answer is a millisecond late.
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    if fault.drop_connection {
        // Panicking in the handler makes hyper drop the connection with no response.
        std::panic::resume_unwind(Box::new("mock: dropping the connection"));
    }
    if let Some(status) = fault.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = fault
            .message
            .unwrap_or_else(|| format!("mock failure {status}"));
        let error = json!({"type": "error", "error": {"message": message, "type": "server_error", "param": null, "code": null}});
        let mut response = (status, axum::Json(error)).into_response();
        if let Some(value) = fault.retry_after.and_then(|v| v.parse().ok()) {
            response.headers_mut().insert("retry-after", value);
        }
        return Err(response);
    }
    if let Some(oversized) = &fault.oversized {
        return Err(oversized.response());
    }
    Ok((body, fault))
}

/// The fault for the request being served, counting down a fault limited by `times`.
fn next_fault(shared: &Shared) -> Fault {
    let Ok(mut fault) = shared.fault.lock() else {
        return Fault::default();
    };
    match fault.times {
        None => fault.clone(),
        Some(0) => Fault::default(),
        Some(left) => {
            fault.times = Some(left - 1);
            fault.clone()
        }
    }
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, raw: Bytes) -> Response {
    match record(&shared, "/v1/messages".to_owned(), headers, raw).await {
        Ok((body, fault)) => anthropic::respond(&body, fault.chunk_gap),
        Err(response) => response,
    }
}

/// Both count endpoints: Anthropic's answers `{"input_tokens": 42}`, OpenAI's adds its
/// `object` and answers 21, so a test tells which upstream counted.
async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    uri: http::Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    match record(&shared, path.clone(), headers, raw).await {
        Ok(_) if path.starts_with("/v1/messages") => {
            axum::Json(json!({"input_tokens": 42})).into_response()
        }
        Ok(_) => axum::Json(json!({"object": "response.input_tokens", "input_tokens": 21}))
            .into_response(),
        Err(response) => response,
    }
}

async fn legacy_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    match record(&shared, "/v1/completions".to_owned(), headers, raw).await {
        Ok((body, _)) => completions::respond(&body),
        Err(response) => response,
    }
}

async fn responses_api(
    State(shared): State<Arc<Shared>>,
    uri: http::Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    match record(&shared, uri.path().to_owned(), headers, raw).await {
        Ok((body, _)) => responses::respond(&body, &shared.responses),
        Err(response) => response,
    }
}

async fn generate(
    State(shared): State<Arc<Shared>>,
    Path(model_action): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = format!("/v1beta/models/{model_action}");
    let (model, action) = model_action.split_once(':').unwrap_or((&model_action, ""));
    let (model, action) = (model.to_owned(), action.to_owned());
    let stream = action == "streamGenerateContent";
    match record(&shared, path, headers, raw).await {
        Ok((body, _)) if action == "batchEmbedContents" => gemini::embed(&body),
        Ok((body, _)) => gemini::respond(&model, &body, stream),
        Err(response) => response,
    }
}

async fn recorded_json(State(shared): State<Arc<Shared>>) -> Response {
    let requests = shared
        .requests
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let list: Vec<Value> = requests
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value::String(v.to_str().unwrap_or("").to_owned()),
                    )
                })
                .collect();
            let raw = String::from_utf8_lossy(&r.raw);
            json!({"path": r.path, "headers": headers, "body": r.body, "raw": raw})
        })
        .collect();
    axum::Json(list).into_response()
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    uri: http::Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let path = uri.to_string();

    let (body, fault) = match record(&shared, path, headers, raw).await {
        Ok(recorded) => recorded,
        Err(response) => return response,
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if model.starts_with("smart") {
        return openai_smart::respond(&body);
    }
    if !stream {
        let completion = json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "mock answer"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        });
        return axum::Json(completion).into_response();
    }
    let guard = StreamGuard {
        shared: shared.clone(),
        finished: false,
    };
    let events = futures_util::stream::unfold((0usize, guard), move |(i, mut guard)| async move {
        let extra = fault.extra_events;
        if i == MockUpstream::SSE_EVENTS.len() + extra {
            guard.mark_finished();
            return None;
        }
        if i > 0 && !fault.chunk_gap.is_zero() {
            tokio::time::sleep(fault.chunk_gap).await;
        }
        if fault.truncate_after == Some(i) {
            return Some((
                Err(std::io::Error::other("mock: connection lost")),
                (i + 1, guard),
            ));
        }
        Some((
            Ok::<_, std::io::Error>(Bytes::from_static(
                MockUpstream::SSE_EVENTS[if i > 0 && i <= extra {
                    1
                } else {
                    i.saturating_sub(extra)
                }]
                .as_bytes(),
            )),
            (i + 1, guard),
        ))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}

struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl StreamGuard {
    fn mark_finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.shared.streams_completed
        } else {
            &self.shared.streams_aborted
        };
        if let Ok(mut n) = counter.lock() {
            *n += 1;
        }
    }
}

/// OpenAI embeddings: one 3-dimensional vector per input (`[index, characters, 0.5]`).
async fn embeddings(
    State(shared): State<Arc<Shared>>,
    uri: http::Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let (body, _) = match record(&shared, uri.to_string(), headers, raw).await {
        Ok(recorded) => recorded,
        Err(response) => return response,
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        other => vec![other.to_string()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": [i as f64, text.chars().count() as f64, 0.5]}))
        .collect();
    let tokens = inputs.iter().map(|t| t.len().div_ceil(4)).sum::<usize>();
    axum::Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
        .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    if let Ok(mut r) = shared.requests.lock() {
        r.push(Recorded {
            path: "/jwks.json".to_owned(),
            headers: HeaderMap::new(),
            body: Value::Null,
            raw: Bytes::new(),
        });
    }
    let keys = shared.jwks.lock().map(|j| j.clone()).unwrap_or(Value::Null);
    axum::Json(keys).into_response()
}
