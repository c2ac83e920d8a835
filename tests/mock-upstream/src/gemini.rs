//! Mock Gemini API (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`).

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::smart::{Answer, decide, pieces};

/// Answers one request body for `model`; `stream` selects SSE.
pub fn respond(model: &str, body: &Value, stream: bool) -> Response {
    let answer = decide(
        &tool_names(body),
        last_function_response(body).as_deref(),
        last_image(body).as_deref(),
        crate::smart::wants_json(body),
    );
    let mut usage = json!({"promptTokenCount": 17, "candidatesTokenCount": 8, "totalTokenCount": 25, "cachedContentTokenCount": 3});
    // Gemini shows a summary of its thoughts only when asked.
    let thought = (body["generationConfig"]["thinkingConfig"]["includeThoughts"] == true)
        .then(|| json!({"text": crate::anthropic::THOUGHT.0, "thought": true}));
    if thought.is_some() {
        usage["thoughtsTokenCount"] = json!(12);
        usage["totalTokenCount"] = json!(37);
    }
    if !stream {
        let mut parts = match &answer {
            Answer::Text(text) => json!([{"text": text}]),
            Answer::ToolCall { name, args } => {
                json!([{"functionCall": {"name": name, "args": args}}])
            }
        };
        if let (Some(thought), Some(parts)) = (thought, parts.as_array_mut()) {
            parts.insert(0, thought);
        }
        return axum::Json(json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model, "responseId": "gemini-mock-1",
        }))
        .into_response();
    }
    let mut chunks = Vec::new();
    if let Some(thought) = thought {
        chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [thought]}, "index": 0}], "modelVersion": model, "responseId": "gemini-mock-1"}));
    }
    match &answer {
        Answer::Text(text) => {
            let all = pieces(text, 10);
            let last = all.len() - 1;
            for (i, piece) in all.into_iter().enumerate() {
                let mut chunk = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}], "modelVersion": model, "responseId": "gemini-mock-1"});
                if i == last {
                    chunk["candidates"][0]["finishReason"] = json!("STOP");
                    chunk["usageMetadata"] = usage.clone();
                }
                chunks.push(chunk);
            }
        }
        Answer::ToolCall { name, args } => chunks.push(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": name, "args": args}}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model, "responseId": "gemini-mock-1",
        })),
    }
    let events = chunks
        .into_iter()
        .map(|c| Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\r\n\r\n"))));
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(futures_util::stream::iter(events)),
    )
        .into_response()
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["functionDeclarations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect()
}

fn last_parts(body: &Value) -> Vec<Value> {
    body["contents"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(|c| c["parts"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn last_function_response(body: &Value) -> Option<String> {
    last_parts(body).iter().find_map(|p| {
        let response = &p["functionResponse"]["response"];
        (!response.is_null()).then(|| {
            response
                .get("output")
                .and_then(Value::as_str)
                .map_or_else(|| response.to_string(), str::to_owned)
        })
    })
}

fn last_image(body: &Value) -> Option<String> {
    last_parts(body).iter().find_map(|p| {
        p["inlineData"]["mimeType"]
            .as_str()
            .or_else(|| p["fileData"]["mimeType"].as_str())
            .map(str::to_owned)
    })
}

/// `batchEmbedContents`: one vector per request, `[characters, 0.25]` (truncated to
/// `outputDimensionality` when set).
pub fn embed(body: &Value) -> Response {
    let embeddings: Vec<Value> = body["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let text = r["content"]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default();
            let mut values = vec![text.chars().count() as f64, 0.25];
            if let Some(d) = r["outputDimensionality"].as_u64() {
                values.resize(d as usize, 0.0);
            }
            json!({"values": values})
        })
        .collect();
    axum::Json(json!({"embeddings": embeddings})).into_response()
}
