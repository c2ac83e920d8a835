//! Mock Anthropic Messages API (`POST /v1/messages`), JSON and SSE, with the real event
//! sequence: message_start, ping, content_block_start/delta/stop, message_delta, message_stop.
//! With `thinking` enabled it thinks first (a signed `thinking` block) and, like Anthropic,
//! refuses a tool-use turn to continue whose thinking was not sent back with its signature.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::smart::{Answer, decide, pieces};

/// The mock's thinking, and the signature it puts on it.
pub const THOUGHT: (&str, &str) = ("Let me think about this.", "sig-mock-0123");

/// The usage of a request that set prompt-cache breakpoints: a coding agent's turn, mostly
/// read from the cache, some of it written for five minutes and for an hour.
pub fn cached_usage() -> Value {
    json!({"input_tokens": 50, "cache_read_input_tokens": 9000, "cache_creation_input_tokens": 950,
        "cache_creation": {"ephemeral_5m_input_tokens": 700, "ephemeral_1h_input_tokens": 250}, "output_tokens": 9})
}

/// The usage the mock reports for `body`.
fn usage_for(body: &Value) -> Value {
    if body.to_string().contains("\"cache_control\"") {
        cached_usage()
    } else {
        json!({"input_tokens": 21, "output_tokens": 9, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0})
    }
}

/// Answers one request body.
pub fn respond(body: &Value, gap: std::time::Duration) -> Response {
    let model = body["model"].as_str().unwrap_or("claude-mock").to_owned();
    let thinks = body["thinking"]["type"] == "enabled";
    if thinks && let Err(message) = thinking_allowed(body) {
        let error = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
        return (http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let answer = decide(
        &tool_names(body),
        last_tool_result(body).as_deref(),
        last_image(body).as_deref(),
        crate::smart::wants_json(body),
    );
    if body["stream"].as_bool() == Some(true) {
        let events = stream_events(&model, &answer, thinks, usage_for(body));
        let paced = futures_util::StreamExt::then(
            futures_util::stream::iter(events),
            move |e| async move {
                tokio::time::sleep(gap).await;
                Ok::<_, std::io::Error>(e)
            },
        );
        let body = Body::from_stream(paced);
        return ([("content-type", "text/event-stream")], body).into_response();
    }
    let (mut content, stop_reason) = match &answer {
        Answer::Text(text) => (json!([{"type": "text", "text": text}]), "end_turn"),
        Answer::ToolCall { name, args } => (
            json!([{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": args}]),
            "tool_use",
        ),
    };
    if thinks && let Some(blocks) = content.as_array_mut() {
        blocks.insert(
            0,
            json!({"type": "thinking", "thinking": THOUGHT.0, "signature": THOUGHT.1}),
        );
    }
    axum::Json(json!({
        "id": "msg_mock_1", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": usage_for(body),
    }))
    .into_response()
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Anthropic's checks on a request with thinking: a budget of at least 1024 tokens below
/// `max_tokens`, and a final assistant tool-use turn that starts with its signed thinking.
fn thinking_allowed(body: &Value) -> Result<(), String> {
    let budget = body["thinking"]["budget_tokens"].as_u64().unwrap_or(0);
    if budget < 1024 || budget >= body["max_tokens"].as_u64().unwrap_or(0) {
        return Err(
            "thinking.budget_tokens: must be at least 1024 and less than max_tokens".into(),
        );
    }
    let turns = body["messages"].as_array().cloned().unwrap_or_default();
    let Some(turn) = turns.iter().rev().find(|m| m["role"] == "assistant") else {
        return Ok(());
    };
    let blocks = turn["content"].as_array().cloned().unwrap_or_default();
    let uses_tools = blocks.iter().any(|b| b["type"] == "tool_use");
    let first = blocks.first().cloned().unwrap_or_default();
    if uses_tools && (first["type"] != "thinking" || first["signature"] != THOUGHT.1) {
        return Err("Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block.".into());
    }
    Ok(())
}

fn stream_events(model: &str, answer: &Answer, thinks: bool, usage: Value) -> Vec<Bytes> {
    let mut started = usage.clone();
    started["output_tokens"] = json!(1);
    let mut events = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": "msg_mock_1", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": started}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let index = usize::from(thinks);
    if thinks {
        events.push(event("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})));
        for piece in pieces(THOUGHT.0, 9) {
            events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}})));
        }
        events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": THOUGHT.1}})));
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    let stop_reason = match answer {
        Answer::Text(text) => {
            events.push(event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
            for piece in pieces(text, 8) {
                events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
            }
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
            "end_turn"
        }
        Answer::ToolCall { name, args } => {
            events.push(event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {}}})));
            events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}})));
            for piece in pieces(&args.to_string(), 7) {
                events.push(event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
            "tool_use"
        }
    };
    events.push(event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": usage["output_tokens"]}})));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn last_blocks(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn last_tool_result(body: &Value) -> Option<String> {
    last_blocks(body)
        .iter()
        .find(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

fn last_image(body: &Value) -> Option<String> {
    last_blocks(body)
        .iter()
        .find(|b| b["type"] == "image")
        .map(|b| {
            b["source"]["media_type"]
                .as_str()
                .map_or_else(|| "url".to_owned(), str::to_owned)
        })
}
