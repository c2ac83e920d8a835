//! OpenAI's legacy completions API (`POST /v1/completions`), as code models serve it for
//! fill-in-the-middle: the completion is the prompt's last word reversed, JSON or streamed in
//! pieces, with a usage chunk when `stream_options.include_usage` is set.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::smart::pieces;

/// Answers one request body.
pub fn respond(body: &Value) -> Response {
    let model = body["model"].as_str().unwrap_or("coder").to_owned();
    let prompt = body["prompt"].as_str().unwrap_or_default();
    let text: String = prompt
        .split_whitespace()
        .last()
        .unwrap_or("empty")
        .chars()
        .rev()
        .collect();
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8});
    let chunk = |text: &str, finish: Value| {
        json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000, "model": model,
               "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]})
    };
    if body["stream"] != true {
        let mut answer = chunk(&text, json!("stop"));
        answer["usage"] = usage;
        return axum::Json(answer).into_response();
    }
    let mut events: Vec<Value> = pieces(&text, 2)
        .iter()
        .map(|piece| chunk(piece, Value::Null))
        .collect();
    events.push(chunk("", json!("stop")));
    if body["stream_options"]["include_usage"] == true {
        events.push(
            json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000,
                           "model": model, "choices": [], "usage": usage}),
        );
    }
    let mut frames: Vec<Bytes> = events
        .into_iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let body = Body::from_stream(futures_util::stream::iter(
        frames.into_iter().map(Ok::<_, std::io::Error>),
    ));
    ([("content-type", "text/event-stream")], body).into_response()
}
