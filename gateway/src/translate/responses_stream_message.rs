//! The message item of a Responses stream: its content parts (`output_text`, `refusal`), each
//! opened, extended by deltas and closed with its `…done` events.

use bytes::BytesMut;
use serde_json::{Value, json};

use super::responses_events::{DeltaEvent, Events};
use super::responses_reply::{message_item, refusal_part, text_part};

/// A message item being streamed.
#[derive(Debug)]
pub(super) struct Message {
    output_index: usize,
    item_id: String,
    parts: Vec<Value>,
    /// The open part: `output_text` or `refusal`, and its text so far.
    open: Option<(&'static str, String)>,
}

impl Message {
    /// Sends `response.output_item.added` for a message at `output_index`.
    pub fn open(
        output_index: usize,
        item_id: String,
        events: &mut Events,
        out: &mut BytesMut,
    ) -> Self {
        let item = message_item(&item_id, "in_progress", Vec::new());
        events.emit(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
            out,
        );
        Self {
            output_index,
            item_id,
            parts: Vec::new(),
            open: None,
        }
    }

    /// Adds `delta` to the `kind` part, opening it (and closing another kind) first.
    pub fn delta(
        &mut self,
        kind: &'static str,
        delta: &str,
        events: &mut Events,
        out: &mut BytesMut,
    ) {
        if self.open.as_ref().is_some_and(|(open, _)| *open != kind) {
            self.close_part(events, out);
        }
        if self.open.is_none() {
            let part = if kind == "refusal" {
                refusal_part("")
            } else {
                text_part("")
            };
            events.emit(
                "response.content_part.added",
                json!({"item_id": self.item_id, "output_index": self.output_index, "content_index": self.parts.len(), "part": part}),
                out,
            );
            self.open = Some((kind, String::new()));
        }
        if let Some((_, text)) = &mut self.open {
            text.push_str(delta);
        }
        let text = kind == "output_text";
        let event = DeltaEvent {
            kind: if text {
                "response.output_text.delta"
            } else {
                "response.refusal.delta"
            },
            sequence_number: 0,
            item_id: &self.item_id,
            output_index: self.output_index,
            content_index: Some(self.parts.len()),
            summary_index: None,
            delta,
            logprobs: text.then_some([]),
        };
        events.emit_delta(event, out);
    }

    fn close_part(&mut self, events: &mut Events, out: &mut BytesMut) {
        let Some((kind, text)) = self.open.take() else {
            return;
        };
        let index = self.parts.len();
        let (event, mut data, part) = if kind == "refusal" {
            (
                "response.refusal.done",
                json!({"refusal": text}),
                refusal_part(&text),
            )
        } else {
            (
                "response.output_text.done",
                json!({"text": text, "logprobs": []}),
                text_part(&text),
            )
        };
        data["item_id"] = json!(self.item_id);
        data["output_index"] = json!(self.output_index);
        data["content_index"] = json!(index);
        events.emit(event, data, out);
        events.emit(
            "response.content_part.done",
            json!({"item_id": self.item_id, "output_index": self.output_index, "content_index": index, "part": part}),
            out,
        );
        self.parts.push(part);
    }

    /// Closes the open part and the item; its output index and the finished item.
    pub fn close(
        mut self,
        status: &str,
        events: &mut Events,
        out: &mut BytesMut,
    ) -> (usize, Value) {
        self.close_part(events, out);
        let item = message_item(&self.item_id, status, self.parts);
        events.emit(
            "response.output_item.done",
            json!({"output_index": self.output_index, "item": item}),
            out,
        );
        (self.output_index, item)
    }
}
