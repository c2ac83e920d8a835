//! OpenAI's Responses API (`POST /v1/responses`) answering like a tiny model (see
//! [`crate::smart`]): a function call when function tools are offered and no
//! `function_call_output` came back yet, a sentence quoting it when one did, a greeting
//! otherwise. JSON, or with `"stream": true` the event sequence OpenAI sends, each event
//! named and numbered.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::smart::{Answer, decide, pieces};

/// Answers one request body.
pub fn respond(body: &Value) -> Response {
    let model = body["model"].as_str().unwrap_or("smart").to_owned();
    let items = body["input"].as_array().cloned().unwrap_or_default();
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
    let answer = decide(&tools, tool_result.as_deref(), None);
    let item = match &answer {
        Answer::Text(text) => {
            json!({"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]})
        }
        Answer::ToolCall { name, args } => {
            json!({"type": "function_call", "id": "fc_mock", "call_id": "call_mock_1",
            "name": name, "arguments": args.to_string(), "status": "completed"})
        }
    };
    let usage = json!({"input_tokens": 17, "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 26});
    let response = |status: &str, output: Vec<Value>, usage: Value| {
        json!({"id": "resp_mock", "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": model, "output": output, "usage": usage, "error": null, "incomplete_details": null,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": body["tools"].clone()})
    };
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
            let added = json!({"type": "message", "id": "msg_mock", "status": "in_progress", "role": "assistant", "content": []});
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            events.push((
                "response.content_part.added",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            ));
            for piece in pieces(text, 6) {
                events.push(("response.output_text.delta", json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": piece})));
            }
            events.push((
                "response.output_text.done",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "text": text}),
            ));
            events.push((
                "response.content_part.done",
                json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []}}),
            ));
        }
        Answer::ToolCall { name, args } => {
            let added = json!({"type": "function_call", "id": "fc_mock", "call_id": "call_mock_1", "name": name, "arguments": "", "status": "in_progress"});
            events.push((
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ));
            for piece in pieces(&args.to_string(), 5) {
                events.push((
                    "response.function_call_arguments.delta",
                    json!({"item_id": "fc_mock", "output_index": 0, "delta": piece}),
                ));
            }
            events.push((
                "response.function_call_arguments.done",
                json!({"item_id": "fc_mock", "output_index": 0, "arguments": args.to_string()}),
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
