//! What a sampled trace records of a streamed reply, read from the events sent to the client:
//! the finish reasons (`gen_ai.response.finish_reasons`) and, only while content is captured
//! (`traces::content`), the completion text. Only events that can hold either are parsed.

use bytes::BytesMut;
use serde_json::Value;

use crate::request::Protocol;
use crate::traces::content::{MAX_CONTENT_BYTES, finish_reason};

/// The finish reasons and text of a stream so far.
#[derive(Debug)]
pub struct Transcript {
    protocol: Protocol,
    pending: BytesMut,
    /// `None` unless content is captured.
    text: Option<String>,
    finish_reasons: Vec<String>,
}

impl Transcript {
    /// Nothing seen yet of a stream in `protocol`'s format; `text` keeps the completion too.
    pub fn new(protocol: Protocol, text: bool) -> Self {
        Self {
            protocol,
            pending: BytesMut::new(),
            text: text.then(String::new),
            finish_reasons: Vec::new(),
        }
    }

    /// Reads the events in `bytes` (an event may span calls).
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(event) = super::next_event(&mut self.pending) {
            let wanted = self.text.is_some() || finish_key(self.protocol, &event);
            let Some(parsed) = wanted.then(|| super::parse_event(&event)).flatten() else {
                continue;
            };
            if let Ok(value) = serde_json::from_str::<Value>(&parsed.data) {
                self.read(&value);
            }
        }
    }

    fn read(&mut self, event: &Value) {
        if let Some(reason) = finish_reason(self.protocol, event) {
            self.finish_reasons.push(reason.to_owned());
        }
        if let Some(text) = self.text.as_mut().filter(|t| t.len() < MAX_CONTENT_BYTES) {
            text.push_str(delta(self.protocol, event).unwrap_or_default());
        }
    }

    /// The completion text, when captured.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The finish reasons seen, in order.
    pub fn finish_reasons(&self) -> &[String] {
        &self.finish_reasons
    }
}

/// Whether an event may carry a finish reason (checked before parsing it).
fn finish_key(protocol: Protocol, event: &[u8]) -> bool {
    let key: &[u8] = match protocol {
        Protocol::OpenAi | Protocol::Completions => b"\"finish_reason\":\"",
        Protocol::Anthropic => b"\"stop_reason\":\"",
        Protocol::Responses => b"\"response.completed\"",
        Protocol::Embeddings => return false,
    };
    memchr::memmem::find(event, key).is_some()
}

/// The text one streamed event adds.
fn delta(protocol: Protocol, event: &Value) -> Option<&str> {
    match protocol {
        Protocol::OpenAi => event["choices"][0]["delta"]["content"].as_str(),
        Protocol::Completions => event["choices"][0]["text"].as_str(),
        Protocol::Anthropic => (event["type"] == "content_block_delta")
            .then(|| event["delta"]["text"].as_str())
            .flatten(),
        Protocol::Responses => (event["type"] == "response.output_text.delta")
            .then(|| event["delta"].as_str())
            .flatten(),
        Protocol::Embeddings => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_assembled_across_reads_in_each_format() {
        let mut openai = Transcript::new(Protocol::OpenAi, true);
        openai.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choi");
        openai.push(b"ces\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n");
        openai.push(b"data: [DONE]\n\n");
        assert_eq!(openai.text(), Some("Hello"));
        assert_eq!(openai.finish_reasons(), ["stop"]);
        let mut anthropic = Transcript::new(Protocol::Anthropic, true);
        anthropic.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n");
        anthropic.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n");
        assert_eq!(anthropic.text(), Some("Hi"));
        assert_eq!(anthropic.finish_reasons(), ["end_turn"]);
        let mut responses = Transcript::new(Protocol::Responses, true);
        responses.push(b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"Yo\"}\n\n");
        assert_eq!(responses.text(), Some("Yo"));
    }

    #[test]
    fn without_capture_only_finish_reasons_are_kept() {
        let mut openai = Transcript::new(Protocol::OpenAi, false);
        openai.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"secret\"},\"finish_reason\":null}]}\n\n");
        openai.push(b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
        assert_eq!(openai.text(), None);
        assert_eq!(openai.finish_reasons(), ["length"]);
    }
}
