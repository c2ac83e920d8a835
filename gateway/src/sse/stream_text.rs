//! The completion text of a stream, assembled from the events sent to the client, for
//! content capture on traces (`traces::content`).

use bytes::BytesMut;
use serde_json::Value;

use crate::request::Protocol;
use crate::traces::content::MAX_CONTENT_BYTES;

/// The completion text of a stream, assembled from the events sent to the client.
#[derive(Debug)]
pub struct StreamText {
    protocol: Protocol,
    pending: BytesMut,
    text: String,
}

impl StreamText {
    /// Nothing seen yet of a stream in `protocol`'s format.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            pending: BytesMut::new(),
            text: String::new(),
        }
    }

    /// Reads the text deltas of the events in `bytes` (events may span calls).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.text.len() >= MAX_CONTENT_BYTES {
            return;
        }
        self.pending.extend_from_slice(bytes);
        while let Some(event) = super::next_event(&mut self.pending) {
            let Some(parsed) = super::parse_event(&event) else {
                continue;
            };
            if let Ok(value) = serde_json::from_str::<Value>(&parsed.data) {
                self.text
                    .push_str(delta(self.protocol, &value).unwrap_or_default());
            }
        }
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }
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
    fn stream_text_is_assembled_across_reads_in_each_format() {
        let mut openai = StreamText::new(Protocol::OpenAi);
        openai.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choi");
        openai.push(b"ces\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n");
        assert_eq!(openai.text(), "Hello");
        let mut anthropic = StreamText::new(Protocol::Anthropic);
        anthropic.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n");
        assert_eq!(anthropic.text(), "Hi");
        let mut responses = StreamText::new(Protocol::Responses);
        responses.push(b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"Yo\"}\n\n");
        assert_eq!(responses.text(), "Yo");
    }
}
