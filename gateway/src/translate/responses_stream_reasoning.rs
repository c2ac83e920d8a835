//! The reasoning item of a Responses stream: the upstream's reasoning (Anthropic thinking,
//! Gemini thought summaries, `reasoning_content` of OpenAI-compatible servers) as one summary
//! part, opened, extended by `response.reasoning_summary_text.delta` events and closed with
//! its `…done` events.

use bytes::BytesMut;
use serde_json::{Value, json};

use super::responses_events::{DeltaEvent, Events};
use super::responses_reply::reasoning_item;

/// A reasoning item being streamed.
#[derive(Debug)]
pub(super) struct Reasoning {
    output_index: usize,
    item_id: String,
    text: String,
    signature: Option<String>,
}

impl Reasoning {
    /// Sends `response.output_item.added` and `response.reasoning_summary_part.added` for a
    /// reasoning item at `output_index`.
    pub fn open(
        output_index: usize,
        item_id: String,
        events: &mut Events,
        out: &mut BytesMut,
    ) -> Self {
        let item = json!({"type": "reasoning", "id": item_id, "summary": []});
        events.emit(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
            out,
        );
        events.emit(
            "response.reasoning_summary_part.added",
            json!({"item_id": item_id, "output_index": output_index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}),
            out,
        );
        Self {
            output_index,
            item_id,
            text: String::new(),
            signature: None,
        }
    }

    /// Adds `delta` to the summary.
    pub fn delta(&mut self, delta: &str, events: &mut Events, out: &mut BytesMut) {
        self.text.push_str(delta);
        let event = DeltaEvent {
            kind: "response.reasoning_summary_text.delta",
            sequence_number: 0,
            item_id: &self.item_id,
            output_index: self.output_index,
            content_index: None,
            summary_index: Some(0),
            delta,
            logprobs: None,
        };
        events.emit_delta(event, out);
    }

    /// Adds a piece of the reasoning's signature.
    pub fn sign(&mut self, signature: &str) {
        self.signature
            .get_or_insert_with(String::new)
            .push_str(signature);
    }

    /// Closes the summary and the item; its output index and the finished item.
    pub fn close(self, events: &mut Events, out: &mut BytesMut) -> (usize, Value) {
        let (item_id, index) = (&self.item_id, self.output_index);
        events.emit(
            "response.reasoning_summary_text.done",
            json!({"item_id": item_id, "output_index": index, "summary_index": 0, "text": self.text}),
            out,
        );
        events.emit(
            "response.reasoning_summary_part.done",
            json!({"item_id": item_id, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": self.text}}),
            out,
        );
        let item = reasoning_item(item_id, &self.text, self.signature.as_deref());
        events.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
        (index, item)
    }
}
