//! Writing Responses stream events: each numbered with the stream's next `sequence_number`,
//! delta events (nearly every event of a stream) serialised without a JSON tree.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

/// A delta event, written without building a JSON tree: they are nearly every event of a
/// stream, so their cost is the translator's cost per token.
#[derive(serde::Serialize)]
pub(super) struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub sequence_number: u64,
    pub item_id: &'a str,
    pub output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_index: Option<usize>,
    pub delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<[u8; 0]>,
}

/// Where events go: numbered in order.
#[derive(Debug, Default)]
pub(super) struct Events {
    pub(super) sequence: u64,
}

impl Events {
    /// Writes an event built as JSON.
    pub fn emit(&mut self, kind: &str, mut data: Value, out: &mut BytesMut) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    /// Writes a delta event.
    pub fn emit_delta(&mut self, mut event: DeltaEvent<'_>, out: &mut BytesMut) {
        event.sequence_number = self.sequence;
        self.sequence += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serialising plain strings and numbers cannot fail.
        let _ = serde_json::to_writer(bytes::BufMut::writer(&mut *out), &event);
        out.extend_from_slice(b"\n\n");
    }
}

/// The terminal `error` event for a layer that does not know the stream's sequence numbers
/// (the drain deadline cutting any Responses stream, passed through or translated): numbered
/// 0, as clients require a number.
pub fn error_event(message: &str, code: &str) -> Bytes {
    error_event_numbered(message, code, 0)
}

pub(super) fn error_event_numbered(message: &str, code: &str, sequence: u64) -> Bytes {
    let data = json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": sequence});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}
