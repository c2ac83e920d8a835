//! Prompt and completion content on spans: captured only when asked for, globally by
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the GenAI instrumentations'
//! variable) or per RoutePolicy by `spec.captureContent`, and never by default. The prompt
//! goes on the request's server span as `gen_ai.input.messages` (and
//! `gen_ai.system_instructions`) in the client's own format; the completion text as
//! `gen_ai.output.messages` (of a stream: assembled by `sse::stream_text`). Each value is cut
//! at [`MAX_CONTENT_BYTES`].

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::KeyValue;
use serde_json::{Value, json};

use crate::request::Protocol;

/// Longest value kept; a collector refuses or truncates far smaller attributes than a prompt
/// can be.
pub const MAX_CONTENT_BYTES: usize = 32 * 1024;

static GLOBAL: AtomicBool = AtomicBool::new(false);

/// Reads the global switch from the environment (at startup).
pub fn init_from_env() {
    let on = std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    GLOBAL.store(on, Ordering::Relaxed);
}

/// Whether content is captured for a route whose policy says `route_captures`.
pub fn captured(route_captures: bool) -> bool {
    super::enabled() && (route_captures || GLOBAL.load(Ordering::Relaxed))
}

/// The prompt attributes of a request `body` of `protocol`.
pub fn input(protocol: Protocol, body: &[u8]) -> Vec<KeyValue> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let (messages, system) = match protocol {
        Protocol::OpenAi | Protocol::Anthropic => ("messages", "system"),
        Protocol::Responses => ("input", "instructions"),
        Protocol::Completions => ("prompt", ""),
        Protocol::Embeddings => ("input", ""),
    };
    let mut attributes = Vec::new();
    if let Some(value) = request.get(messages) {
        attributes.push(KeyValue::new("gen_ai.input.messages", capped(value)));
    }
    if let Some(value) = request.get(system).filter(|_| !system.is_empty()) {
        attributes.push(KeyValue::new("gen_ai.system_instructions", capped(value)));
    }
    attributes
}

/// What a sampled trace records of a whole reply `body` in `protocol`'s format: its finish
/// reasons, and its completion when `text` (content capture).
pub fn body_reply(protocol: Protocol, body: &[u8], text: bool) -> Vec<KeyValue> {
    let Ok(reply) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let reasons: Vec<String> = match protocol {
        Protocol::OpenAi | Protocol::Completions => reply["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["finish_reason"].as_str().map(str::to_owned))
            .collect(),
        _ => finish_reason(protocol, &reply)
            .map(str::to_owned)
            .into_iter()
            .collect(),
    };
    let text = text.then(|| body_text(protocol, &reply));
    stream_reply(reasons, text.as_deref())
}

/// What a sampled trace records of a streamed reply: its finish reasons, and its completion
/// `text` when captured.
pub fn stream_reply(reasons: Vec<String>, text: Option<&str>) -> Vec<KeyValue> {
    let mut attributes = Vec::new();
    if !reasons.is_empty() {
        let reasons = reasons.into_iter().map(Into::into).collect();
        let array = opentelemetry::Array::String(reasons);
        let array = opentelemetry::Value::Array(array);
        attributes.push(KeyValue::new("gen_ai.response.finish_reasons", array));
    }
    if let Some(text) = text {
        let message = json!([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]);
        attributes.push(KeyValue::new("gen_ai.output.messages", capped(&message)));
    }
    attributes
}

/// The finish reason a streamed event (or a whole reply) states.
pub fn finish_reason(protocol: Protocol, event: &Value) -> Option<&str> {
    match protocol {
        Protocol::OpenAi | Protocol::Completions => event["choices"][0]["finish_reason"].as_str(),
        Protocol::Anthropic => event["delta"]["stop_reason"]
            .as_str()
            .or_else(|| event["stop_reason"].as_str()),
        Protocol::Responses => event["response"]["status"]
            .as_str()
            .or_else(|| event["status"].as_str()),
        Protocol::Embeddings => None,
    }
}

/// The completion text of a whole reply in `protocol`'s format.
fn body_text(protocol: Protocol, reply: &Value) -> String {
    let mut text = String::new();
    let mut push = |s: Option<&str>| text.push_str(s.unwrap_or_default());
    match protocol {
        Protocol::OpenAi => each(&reply["choices"], |c| {
            push(c["message"]["content"].as_str())
        }),
        Protocol::Completions => each(&reply["choices"], |c| push(c["text"].as_str())),
        Protocol::Anthropic => each(&reply["content"], |b| push(b["text"].as_str())),
        Protocol::Responses => each(&reply["output"], |item| {
            each(&item["content"], |part| push(part["text"].as_str()));
        }),
        Protocol::Embeddings => {}
    }
    text
}

fn each(array: &Value, mut f: impl FnMut(&Value)) {
    array.as_array().into_iter().flatten().for_each(&mut f);
}

/// `value` as JSON text, cut at a character boundary within [`MAX_CONTENT_BYTES`].
fn capped(value: &Value) -> String {
    let mut text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.len() > MAX_CONTENT_BYTES {
        let mut end = MAX_CONTENT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_content_is_cut_at_a_character_boundary() {
        let long = Value::String("é".repeat(MAX_CONTENT_BYTES));
        let cut = capped(&long);
        assert!(cut.len() <= MAX_CONTENT_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn whole_replies_yield_their_finish_reasons_and_text_only_when_captured() {
        let chat = br#"{"choices":[{"message":{"content":"mock answer"},"finish_reason":"stop"}]}"#;
        let seen = format!("{:?}", body_reply(Protocol::OpenAi, chat, true));
        assert!(
            seen.contains("mock answer") && seen.contains("stop"),
            "{seen}"
        );
        let seen = format!("{:?}", body_reply(Protocol::OpenAi, chat, false));
        assert!(
            !seen.contains("mock answer") && seen.contains("stop"),
            "{seen}"
        );
        let message = br#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"stop_reason":"end_turn"}"#;
        let seen = format!("{:?}", body_reply(Protocol::Anthropic, message, true));
        assert!(
            seen.contains(r#"\"content\":\"ab\""#) && seen.contains("end_turn"),
            "{seen}"
        );
    }
}
