//! OpenAI's Responses API (`POST /v1/responses`) answering like a tiny model (see
//! [`crate::smart`]): a function call when function tools are offered and no
//! `function_call_output` came back yet, a sentence quoting it when one did, a greeting
//! otherwise. JSON, or with `"stream": true` the event sequence OpenAI sends, each event
//! named and numbered. Like OpenAI it keeps what it answered (unless `store: false`), so
//! `previous_response_id` and `item_reference` work, and names it cannot resolve get OpenAI's
//! 400.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use crate::smart::{Answer, decide, pieces};

/// Conversations answered so far: each response id with its whole history (input, then
/// output), and a counter for fresh ids.
#[derive(Debug, Default)]
pub struct Kept {
    conversations: Mutex<HashMap<String, Vec<Value>>>,
    next: AtomicU64,
}

impl Kept {
    /// The request's whole conversation, or the parameter and id of a name not kept.
    fn history(&self, body: &Value) -> Result<Vec<Value>, (&'static str, String)> {
        let kept = self
            .conversations
            .lock()
            .map_err(|_| ("input", String::new()))?;
        let mut items = Vec::new();
        if let Some(previous) = body["previous_response_id"].as_str() {
            let earlier = kept
                .get(previous)
                .ok_or(("previous_response_id", previous.to_owned()))?;
            items.extend(earlier.iter().cloned());
        }
        match &body["input"] {
            Value::String(text) => items.push(json!({"role": "user", "content": text})),
            Value::Array(input) => {
                for item in input {
                    if item["type"] != "item_reference" {
                        items.push(item.clone());
                        continue;
                    }
                    let id = item["id"].as_str().unwrap_or_default();
                    let found = kept.values().flatten().find(|i| i["id"] == id);
                    items.push(found.cloned().ok_or(("input", id.to_owned()))?);
                }
            }
            _ => {}
        }
        Ok(items)
    }
}

fn not_found(param: &str, id: &str) -> Response {
    let (message, code) = match param {
        "previous_response_id" => (
            format!("Previous response with id '{id}' not found."),
            "previous_response_not_found",
        ),
        _ => (format!("Item with id '{id}' not found."), "item_not_found"),
    };
    let error = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}});
    (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
}

/// Answers one request body.
pub fn respond(body: &Value, kept: &Kept) -> Response {
    let model = body["model"].as_str().unwrap_or("smart").to_owned();
    let items = match kept.history(body) {
        Ok(items) => items,
        Err((param, id)) => return not_found(param, &id),
    };
    let n = kept.next.fetch_add(1, Ordering::Relaxed);
    let (response_id, msg_id, fc_id) = (
        format!("resp_mock_{n}"),
        format!("msg_mock_{n}"),
        format!("fc_mock_{n}"),
    );
    let tool_result = items
        .iter()
        .rev()
        .find(|item| item["type"] == "function_call_output")
        .map(|item| item["output"].as_str().unwrap_or_default().to_owned());
    let tools: Vec<String> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    let answer = decide(
        &tools,
        tool_result.as_deref(),
        None,
        crate::smart::wants_json(body),
    );
    let item = match &answer {
        Answer::Text(text) => {
            json!({"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]})
        }
        Answer::ToolCall { name, args } => {
            json!({"type": "function_call", "id": fc_id, "call_id": format!("call_mock_{n}"),
            "name": name, "arguments": args.to_string(), "status": "completed"})
        }
    };
    let usage = json!({"input_tokens": 17, "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 26});
    let response = |status: &str, output: Vec<Value>, usage: Value| {
        json!({"id": response_id, "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": model, "output": output, "usage": usage, "error": null, "incomplete_details": null,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": body["tools"].clone()})
    };
    if body["store"] != false
        && let Ok(mut conversations) = kept.conversations.lock()
    {
        let mut history = items.clone();
        history.push(item.clone());
        conversations.insert(response_id.clone(), history);
    }
    if body["stream"] != true {
        return axum::Json(response("completed", vec![item], usage)).into_response();
    }
    let mut events = vec![
        (
            "response.created",
            json!({"response": response("in_progress", vec![], Value::Null)}),
        ),
        (
            "response.in_progress",
            json!({"response": response("in_progress", vec![], Value::Null)}),
        ),
    ];
    match &answer {
        Answer::Text(text) => {
            let added = json!({"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []});
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            events.push((
                "response.content_part.added",
                json!({"item_id": msg_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            ));
            for piece in pieces(text, 6) {
                events.push(("response.output_text.delta", json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "delta": piece})));
            }
            events.push((
                "response.output_text.done",
                json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "text": text}),
            ));
            events.push((
                "response.content_part.done",
                json!({"item_id": msg_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []}}),
            ));
        }
        Answer::ToolCall { name, args } => {
            let added = json!({"type": "function_call", "id": fc_id, "call_id": format!("call_mock_{n}"), "name": name, "arguments": "", "status": "in_progress"});
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            for piece in pieces(&args.to_string(), 5) {
                events.push((
                    "response.function_call_arguments.delta",
                    json!({"item_id": fc_id, "output_index": 0, "delta": piece}),
                ));
            }
            events.push((
                "response.function_call_arguments.done",
                json!({"item_id": fc_id, "output_index": 0, "arguments": args.to_string()}),
            ));
        }
    }
    events.push((
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
    ));
    events.push((
        "response.completed",
        json!({"response": response("completed", vec![item.clone()], usage)}),
    ));
    let frames: Vec<Bytes> = events
        .into_iter()
        .enumerate()
        .map(|(number, (kind, mut data))| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(number);
            Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
        })
        .collect();
    let body = Body::from_stream(futures_util::stream::iter(
        frames.into_iter().map(Ok::<_, std::io::Error>),
    ));
    ([("content-type", "text/event-stream")], body).into_response()
}
