//! The OpenAI chat API answering like a tiny model (see [`crate::smart`]), for requests whose
//! model starts with `smart`: tool calls stream as an id/name fragment followed by argument
//! pieces, and a usage chunk follows when `stream_options.include_usage` is set.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::smart::{Answer, decide, pieces};

/// Answers one request body.
pub fn respond(body: &Value) -> Response {
    let model = body["model"].as_str().unwrap_or("smart").to_owned();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let tool_result =
        (last["role"] == "tool").then(|| last["content"].as_str().unwrap_or_default().to_owned());
    let image = last["content"].as_array().and_then(|parts| {
        parts.iter().find_map(|p| {
            let url = p["image_url"]["url"].as_str()?;
            Some(
                url.strip_prefix("data:")
                    .and_then(|u| u.split(';').next())
                    .unwrap_or("url")
                    .to_owned(),
            )
        })
    });
    let tools: Vec<String> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect();
    let json = crate::smart::wants_json(body);
    let answer = decide(&tools, tool_result.as_deref(), image.as_deref(), json);
    let usage = if model.contains("reason") {
        // A reasoning model on a cached prompt.
        json!({"prompt_tokens": 1200, "completion_tokens": 60, "total_tokens": 1260,
            "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 40}})
    } else {
        json!({"prompt_tokens": 13, "completion_tokens": 6, "total_tokens": 19, "prompt_tokens_details": {"cached_tokens": 2}})
    };
    if body["stream"] != true {
        let (message, finish) = match &answer {
            Answer::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
            Answer::ToolCall { name, args } => (
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_smart_1", "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}),
                "tool_calls",
            ),
        };
        return axum::Json(json!({
            "id": "chatcmpl-smart", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-smart", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let finish = match &answer {
        Answer::Text(text) => {
            chunks.extend(
                pieces(text, 6)
                    .into_iter()
                    .map(|p| chunk(json!({"content": p}), Value::Null)),
            );
            "stop"
        }
        Answer::ToolCall { name, args } => {
            let head = json!({"tool_calls": [{"index": 0, "id": "call_smart_1", "type": "function", "function": {"name": name, "arguments": ""}}]});
            chunks.push(chunk(head, Value::Null));
            for piece in pieces(&args.to_string(), 5) {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
            "tool_calls"
        }
    };
    chunks.push(chunk(json!({}), json!(finish)));
    if body["stream_options"]["include_usage"] == true {
        chunks.push(json!({"id": "chatcmpl-smart", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model, "choices": [], "usage": usage}));
    }
    let mut events: Vec<Bytes> = chunks
        .into_iter()
        .map(|c| Bytes::from(format!("data: {c}\n\n")))
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let body = Body::from_stream(futures_util::stream::iter(
        events.into_iter().map(Ok::<_, std::io::Error>),
    ));
    ([("content-type", "text/event-stream")], body).into_response()
}
