//! Hub replies (OpenAI chat completions) written as Responses API objects, for Responses
//! clients of upstreams that do not speak it. The streaming translator
//! (`responses_stream.rs`) builds its final object with the same functions.

use serde_json::{Map, Value, json};

/// The parts of a response object that do not depend on its output.
#[derive(Debug, Clone)]
pub struct Shell {
    /// `resp_…`, derived from the upstream's completion id.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model that answered.
    pub model: String,
    /// The request's fields the object repeats (see [`echo_of`]).
    pub echo: Map<String, Value>,
}

impl Shell {
    /// A shell for the completion `id` (made a `resp_` id unless it is one).
    pub fn new(id: &str, created_at: u64, model: &str) -> Self {
        let id = if id.starts_with("resp_") {
            id.to_owned()
        } else {
            format!("resp_{}", id.trim_start_matches("chatcmpl-"))
        };
        Self {
            id,
            created_at,
            model: model.to_owned(),
            echo: Map::new(),
        }
    }

    /// The id of output item `index` with `prefix` (`msg`, `fc`).
    pub fn item_id(&self, prefix: &str, index: usize) -> String {
        format!("{prefix}_{}_{index}", self.id.trim_start_matches("resp_"))
    }

    /// The response object of a failed stream: status `failed` and its `error`.
    pub fn failed(&self, output: Vec<Value>, code: &str, message: &str) -> Value {
        let mut response = self.object(Status::Completed, output, Some(zero_usage()));
        response["status"] = json!("failed");
        response["error"] = json!({"code": code, "message": message});
        response
    }

    /// The whole response object.
    pub fn object(&self, status: Status, output: Vec<Value>, usage: Option<Value>) -> Value {
        let mut object = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status.name(),
            "error": null,
            "incomplete_details": status.incomplete_reason().map(|reason| json!({"reason": reason})),
            "instructions": null,
            "max_output_tokens": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "store": false,
            "temperature": null,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": null,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        });
        echo(&mut object, &self.echo);
        object
    }
}

/// The request fields a response object repeats, as OpenAI's does.
const ECHOED: [&str; 16] = [
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "user",
];

/// What a response object repeats of `request` (a Responses body): the fields it set, and
/// `store` (true unless it said false).
pub fn echo_of(request: &Value) -> Map<String, Value> {
    let mut echoed: Map<String, Value> = ECHOED
        .iter()
        .filter_map(|field| {
            let value = request.get(*field).filter(|v| !v.is_null())?;
            Some(((*field).to_owned(), value.clone()))
        })
        .collect();
    echoed.insert("store".to_owned(), Value::Bool(request["store"] != false));
    echoed
}

/// Sets `echoed` fields on a response `object`.
pub fn echo(object: &mut Value, echoed: &Map<String, Value>) {
    if let Some(fields) = object.as_object_mut() {
        for (field, value) in echoed {
            fields.insert(field.clone(), value.clone());
        }
    }
}

/// A usage object with every count zero, for an upstream that reported none: clients read
/// `usage` as an object (the Vercel AI SDK fails without one).
pub fn zero_usage() -> Value {
    usage(&Value::Null)
}

/// Where a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still being generated (stream events before the end).
    InProgress,
    /// Finished normally (stop, tool calls).
    Completed,
    /// Cut at the output cap.
    MaxOutputTokens,
    /// Cut by the provider's content filter.
    ContentFilter,
}

impl Status {
    /// The status of a chat `finish_reason`.
    pub fn of_finish(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => Self::MaxOutputTokens,
            Some("content_filter") => Self::ContentFilter,
            _ => Self::Completed,
        }
    }

    /// The `status` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::MaxOutputTokens | Self::ContentFilter => "incomplete",
        }
    }

    /// `incomplete_details.reason`, when incomplete.
    pub fn incomplete_reason(self) -> Option<&'static str> {
        match self {
            Self::MaxOutputTokens => Some("max_output_tokens"),
            Self::ContentFilter => Some("content_filter"),
            Self::InProgress | Self::Completed => None,
        }
    }

    /// The status of the last output item: `incomplete` when the response is.
    pub fn item_status(self) -> &'static str {
        match self {
            Self::MaxOutputTokens | Self::ContentFilter => "incomplete",
            Self::InProgress | Self::Completed => "completed",
        }
    }

    /// The terminal stream event type.
    pub fn terminal_event(self) -> &'static str {
        match self {
            Self::MaxOutputTokens | Self::ContentFilter => "response.incomplete",
            Self::InProgress | Self::Completed => "response.completed",
        }
    }
}

/// A chat `usage` object as a Responses `usage` object.
pub fn usage(chat: &Value) -> Value {
    let count = |pointer: &str| chat.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (count("/prompt_tokens"), count("/completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": count("/prompt_tokens_details/cached_tokens")},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": count("/completion_tokens_details/reasoning_tokens")},
        "total_tokens": input + output,
    })
}

/// A completed message output item.
pub fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

/// An `output_text` content part.
pub fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `refusal` content part.
pub fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

/// What marks a reasoning item's `encrypted_content` as an Anthropic thinking signature the
/// gateway put there (anything else, e.g. OpenAI's own encrypted reasoning, is not one).
pub const ANTHROPIC_SIGNATURE: &str = "lgw-anthropic-signature:";

/// A reasoning output item: the model's reasoning as its summary, and Anthropic's signature
/// over it as `encrypted_content` (so a client sending the item back continues the turn).
pub fn reasoning_item(id: &str, text: &str, signature: Option<&str>) -> Value {
    let summary: Vec<Value> = (!text.is_empty())
        .then(|| json!({"type": "summary_text", "text": text}))
        .into_iter()
        .collect();
    let mut item = json!({"type": "reasoning", "id": id, "summary": summary});
    if let Some(signature) = signature.filter(|s| !s.is_empty()) {
        item["encrypted_content"] = json!(format!("{ANTHROPIC_SIGNATURE}{signature}"));
    }
    item
}

/// A function call output item.
pub fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// Translates a chat completion JSON into a Responses object, serialised.
pub fn to_response(
    body: &[u8],
    route_model: &str,
    created: u64,
    response_id: Option<&str>,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&response_object(body, route_model, created, response_id)?)
}

/// Translates a chat completion JSON into a Responses object, with `response_id` (else an id
/// derived from the completion's).
pub fn response_object(
    body: &[u8],
    route_model: &str,
    created: u64,
    response_id: Option<&str>,
) -> Result<Value, serde_json::Error> {
    let completion: Value = serde_json::from_slice(body)?;
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let shell = Shell::new(
        response_id
            .or(completion["id"].as_str())
            .unwrap_or("gateway"),
        completion["created"].as_u64().unwrap_or(created),
        completion["model"].as_str().unwrap_or(route_model),
    );
    let status = Status::of_finish(choice["finish_reason"].as_str());
    let mut output = Vec::new();
    let reasoning = message["reasoning_content"]
        .as_str()
        .or(message["reasoning"].as_str())
        .unwrap_or_default();
    let signature = message["reasoning_signature"].as_str();
    if !reasoning.is_empty() || signature.is_some() {
        output.push(reasoning_item(
            &shell.item_id("rs", 0),
            reasoning,
            signature,
        ));
    }
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(text_part(text));
    }
    if let Some(refusal) = message["refusal"].as_str().filter(|t| !t.is_empty()) {
        content.push(refusal_part(refusal));
    }
    if !content.is_empty() {
        output.push(message_item(
            &shell.item_id("msg", output.len()),
            status.item_status(),
            content,
        ));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let call_id = call["id"].as_str().unwrap_or_default();
        output.push(function_call_item(
            &shell.item_id("fc", output.len()),
            call_id,
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or("{}"),
            "completed",
        ));
    }
    let usage = Some(
        completion
            .get("usage")
            .filter(|u| !u.is_null())
            .map_or_else(zero_usage, usage),
    );
    Ok(shell.object(status, output, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tool_calls_usage_and_the_cap_are_translated() {
        let completion = json!({
            "id": "chatcmpl-9", "created": 7, "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hi",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 3}}
        });
        let body = to_response(completion.to_string().as_bytes(), "route", 0, None).unwrap();
        let response: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(response["id"], "resp_9");
        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(response["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(response["output"][1]["call_id"], "call_1");
        assert_eq!(
            response["usage"]["input_tokens_details"]["cached_tokens"],
            3
        );
        assert_eq!(response["usage"]["total_tokens"], 7);
    }
}
