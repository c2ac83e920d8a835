//! A mock OpenAI upstream built for speed: every answer is prepared once at start-up, so a
//! request costs the HTTP parsing and one write. Written on bare hyper rather than reusing
//! `tests/mock-upstream`, which records every request for assertions and would grow and slow
//! down under a benchmark's millions of requests.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the mock answers.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Data events per stream, counting the role event and the final event with usage.
    pub chunks: usize,
    /// Pause between two stream events.
    pub gap: Duration,
    /// Pause before response headers (model "thinking").
    pub first_byte_delay: Duration,
}

/// Answers prepared once and shared by every connection.
#[derive(Debug)]
struct Answers {
    completion: Bytes,
    events: Vec<Bytes>,
    config: UpstreamConfig,
}

type Body = BoxBody<Bytes, Infallible>;

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}"#;

fn event(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

fn stream_events(chunks: usize) -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str, usage: &str| {
        event(&format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]{usage}}}"#
        ))
    };
    let content = chunks.saturating_sub(2);
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null", "")];
    events.extend((0..content).map(|i| chunk(&format!(r#"{{"content":"tok{i} "}}"#), "null", "")));
    let usage = format!(
        r#","usage":{{"prompt_tokens":12,"completion_tokens":{content},"total_tokens":{}}}"#,
        content + 12
    );
    events.push(chunk("{}", r#""stop""#, &usage));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: TcpListener, config: UpstreamConfig) -> anyhow::Result<()> {
    let answers = Arc::new(Answers {
        completion: Bytes::from_static(COMPLETION.as_bytes()),
        events: stream_events(config.chunks),
        config,
    });
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(answers.clone(), request));
            // A client closing its connection is normal here; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

async fn answer(
    answers: Arc<Answers>,
    request: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let traces = request.uri().path() == "/v1/traces";
    let body = request.into_body().collect().await?.to_bytes();
    if traces {
        // An OTLP/HTTP collector's answer: an empty ExportTraceServiceResponse.
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())));
    }
    if !answers.config.first_byte_delay.is_zero() {
        tokio::time::sleep(answers.config.first_byte_delay).await;
    }
    let streaming = contains(&body, b"\"stream\":true") || contains(&body, b"\"stream\": true");
    let response = if streaming {
        sse(answers)
    } else {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(answers.completion.clone()).boxed())
    };
    Ok(response.unwrap_or_else(|_| {
        let mut failed = Response::new(Full::new(Bytes::new()).boxed());
        *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        failed
    }))
}

fn sse(answers: Arc<Answers>) -> http::Result<Response<Body>> {
    let gap = answers.config.gap;
    let events = stream::unfold(0usize, move |index| {
        let answers = answers.clone();
        async move {
            let event = answers.events.get(index)?.clone();
            if index > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((Ok(Frame::data(event)), index + 1))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(StreamBody::new(events).boxed())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_has_the_requested_events_then_done() {
        let events = stream_events(200);
        assert_eq!(events.len(), 201);
        assert!(events[0].starts_with(b"data: {"));
        assert!(
            std::str::from_utf8(&events[199])
                .unwrap_or("")
                .contains("\"usage\"")
        );
        assert_eq!(&events[200][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn the_completion_is_valid_json() {
        let value: serde_json::Value = serde_json::from_str(COMPLETION).unwrap_or_default();
        assert_eq!(value["object"], "chat.completion");
    }
}
