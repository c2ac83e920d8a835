//! Hub streams (OpenAI chat chunks) written as Responses API stream events: `response.created`
//! and `response.in_progress` first; then per output item `response.output_item.added`, its
//! deltas (`response.content_part.added` and `response.output_text.delta` or
//! `response.refusal.delta` for a message, `response.function_call_arguments.delta` for a
//! function call) and its `…done` events when the next item starts or the stream ends; last
//! `response.completed` (or `response.incomplete` at the output cap) carrying the whole
//! response and its usage. Every event has the next `sequence_number`. A failure ends the
//! stream with one `error` event.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Value, json};

use super::responses_reply::{
    Shell, Status, function_call_item, message_item, refusal_part, text_part, usage,
};
use super::stream::{EventTranslator, HubEvent};
use crate::request::TokenUsage;
use crate::sse::SseEvent;

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    /// A message; its current content part (`output_text` or `refusal`) and that part's text.
    Message {
        parts: Vec<Value>,
        kind: &'static str,
        text: String,
    },
    /// A function call: the chat tool index, call id, name and arguments so far.
    Call {
        tool_index: usize,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A delta event, written without building a JSON tree: they are nearly every event of a
/// stream, so their cost is the translator's cost per token.
#[derive(serde::Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[u8; 0]>,
}

/// Called with the whole response when a stream completes (to keep it for continuations).
pub type Keeper = Box<dyn FnOnce(&Value) + Send>;

/// Translator state for one stream.
pub struct HubToResponses {
    route_model: String,
    created: u64,
    shell: Option<Shell>,
    sequence: u64,
    output: Vec<Value>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    finished: bool,
    keeper: Option<Keeper>,
    response_id: Option<String>,
}

impl std::fmt::Debug for HubToResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubToResponses")
            .field("sequence", &self.sequence)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl HubToResponses {
    /// Names the response `id` (else it is derived from the upstream's completion id).
    pub fn with_response_id(mut self, id: String) -> Self {
        self.response_id = Some(id);
        self
    }

    /// Also hands the whole response to `keeper` when the stream completes.
    pub fn with_keeper(mut self, keeper: Option<Keeper>) -> Self {
        self.keeper = keeper;
        self
    }

    /// A translator naming `route_model` until the upstream names its model.
    pub fn new(route_model: &str, created: u64) -> Self {
        Self {
            route_model: route_model.to_owned(),
            created,
            shell: None,
            sequence: 0,
            output: Vec::new(),
            open: None,
            finish_reason: None,
            usage: None,
            finished: false,
            keeper: None,
            response_id: None,
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut BytesMut) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {data}\n\n").as_bytes());
    }

    /// Writes a delta event with the next sequence number.
    fn emit_delta(&mut self, mut event: DeltaEvent<'_>, out: &mut BytesMut) {
        event.sequence_number = self.sequence;
        self.sequence += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Serialising plain strings and numbers cannot fail.
        let _ = serde_json::to_writer(bytes::BufMut::writer(&mut *out), &event);
        out.extend_from_slice(b"\n\n");
    }

    /// The id of the output item at the current index.
    fn item_id(&self, prefix: &str) -> String {
        match &self.shell {
            Some(shell) => shell.item_id(prefix, self.index()),
            None => self.shell().item_id(prefix, self.index()),
        }
    }

    fn shell(&self) -> Shell {
        self.shell
            .clone()
            .unwrap_or_else(|| Shell::new("gateway", self.created, &self.route_model))
    }

    fn start(&mut self, chunk: &Chunk, out: &mut BytesMut) {
        if self.shell.is_some() {
            return;
        }
        let model = chunk.model.as_deref().unwrap_or(&self.route_model);
        let id = self.response_id.as_deref().or(chunk.id.as_deref());
        let shell = Shell::new(id.unwrap_or("gateway"), self.created, model);
        let response = shell.object(Status::InProgress, Vec::new(), None);
        self.shell = Some(shell);
        self.emit("response.created", json!({"response": response}), out);
        self.emit("response.in_progress", json!({"response": response}), out);
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Adds `delta` to the open message's `kind` part, opening the message or part first.
    fn message_delta(&mut self, kind: &'static str, delta: &str, out: &mut BytesMut) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(out);
            let id = self.shell().item_id("msg", self.index());
            let item = message_item(&id, "in_progress", Vec::new());
            self.emit(
                "response.output_item.added",
                json!({"output_index": self.index(), "item": item}),
                out,
            );
            self.open = Some(Open::Message {
                parts: Vec::new(),
                kind,
                text: String::new(),
            });
            self.part_added(kind, out);
        }
        if let Some(Open::Message {
            kind: open_kind, ..
        }) = &self.open
            && *open_kind != kind
        {
            self.part_done(out);
            self.part_added(kind, out);
        }
        if let Some(Open::Message { text, .. }) = &mut self.open {
            text.push_str(delta);
        }
        let (id, content_index) = self.message_position();
        let text = kind == "output_text";
        let event = DeltaEvent {
            kind: if text {
                "response.output_text.delta"
            } else {
                "response.refusal.delta"
            },
            sequence_number: 0,
            item_id: &id,
            output_index: self.index(),
            content_index: Some(content_index),
            delta,
            logprobs: text.then_some([]),
        };
        self.emit_delta(event, out);
    }

    fn message_position(&self) -> (String, usize) {
        let parts = match &self.open {
            Some(Open::Message { parts, .. }) => parts.len(),
            _ => 0,
        };
        (self.item_id("msg"), parts)
    }

    fn part_added(&mut self, kind: &'static str, out: &mut BytesMut) {
        if let Some(Open::Message {
            kind: open_kind,
            text,
            ..
        }) = &mut self.open
        {
            *open_kind = kind;
            text.clear();
        }
        let (id, content_index) = self.message_position();
        let part = if kind == "refusal" {
            refusal_part("")
        } else {
            text_part("")
        };
        self.emit("response.content_part.added", json!({"item_id": id, "output_index": self.index(), "content_index": content_index, "part": part}), out);
    }

    fn part_done(&mut self, out: &mut BytesMut) {
        let Some(Open::Message { kind, text, .. }) = &self.open else {
            return;
        };
        let (kind, text) = (*kind, text.clone());
        let (id, content_index) = self.message_position();
        let (event, field, part) = if kind == "refusal" {
            ("response.refusal.done", "refusal", refusal_part(&text))
        } else {
            ("response.output_text.done", "text", text_part(&text))
        };
        let mut data =
            json!({"item_id": id, "output_index": self.index(), "content_index": content_index});
        data[field] = json!(text);
        self.emit(event, data, out);
        self.emit("response.content_part.done", json!({"item_id": id, "output_index": self.index(), "content_index": content_index, "part": part}), out);
        if let Some(Open::Message { parts, .. }) = &mut self.open {
            parts.push(part);
        }
    }

    fn tool_delta(&mut self, call: ToolCallDelta, out: &mut BytesMut) {
        let same =
            matches!(&self.open, Some(Open::Call { tool_index, .. }) if *tool_index == call.index);
        let function = call.function.unwrap_or(FunctionDelta {
            name: None,
            arguments: None,
        });
        if !same {
            self.close(out);
            let call_id = call.id.unwrap_or_else(|| format!("call_{}", call.index));
            let name = function.name.clone().unwrap_or_default();
            let id = self.shell().item_id("fc", self.index());
            let item = function_call_item(&id, &call_id, &name, "", "in_progress");
            self.emit(
                "response.output_item.added",
                json!({"output_index": self.index(), "item": item}),
                out,
            );
            self.open = Some(Open::Call {
                tool_index: call.index,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let Some(delta) = function.arguments.filter(|a| !a.is_empty()) else {
            return;
        };
        if let Some(Open::Call { arguments, .. }) = &mut self.open {
            arguments.push_str(&delta);
        }
        let id = self.item_id("fc");
        let event = DeltaEvent {
            kind: "response.function_call_arguments.delta",
            sequence_number: 0,
            item_id: &id,
            output_index: self.index(),
            content_index: None,
            delta: &delta,
            logprobs: None,
        };
        self.emit_delta(event, out);
    }

    /// Ends the open output item with its `…done` events, `completed`.
    fn close(&mut self, out: &mut BytesMut) {
        self.close_as("completed", out);
    }

    /// Ends the open output item with its `…done` events and `status`.
    fn close_as(&mut self, status: &str, out: &mut BytesMut) {
        if matches!(self.open, Some(Open::Message { .. })) {
            self.part_done(out);
        }
        let index = self.index();
        let item = match self.open.take() {
            None => return,
            Some(Open::Message { parts, .. }) => {
                message_item(&self.shell().item_id("msg", index), status, parts)
            }
            Some(Open::Call {
                call_id,
                name,
                arguments,
                ..
            }) => {
                let arguments = if arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    arguments
                };
                let id = self.shell().item_id("fc", index);
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                    out,
                );
                function_call_item(&id, &call_id, &name, &arguments, status)
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.output.push(item);
    }

    fn finish(&mut self, out: &mut BytesMut) {
        let status = Status::of_finish(self.finish_reason.as_deref());
        self.close_as(status.item_status(), out);
        self.finished = true;
        let response =
            self.shell()
                .object(status, std::mem::take(&mut self.output), self.usage.take());
        if let Some(keep) = self.keeper.take() {
            keep(&response);
        }
        self.emit(status.terminal_event(), json!({"response": response}), out);
    }

    fn on_chunk(&mut self, chunk: Chunk, out: &mut BytesMut) {
        self.start(&chunk, out);
        if let Some(found) = chunk.usage.filter(|u| !u.is_null()) {
            self.usage = Some(usage(&found));
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.message_delta("output_text", &text, out);
            }
            if let Some(refusal) = choice.delta.refusal.filter(|t| !t.is_empty()) {
                self.message_delta("refusal", &refusal, out);
            }
            for call in choice.delta.tool_calls {
                self.tool_delta(call, out);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
    }

    fn fail(&mut self, message: &str, code: &str, out: &mut BytesMut) {
        self.finished = true;
        self.emit(
            "error",
            json!({"code": code, "message": message, "param": null}),
            out,
        );
    }
}

/// The terminal `error` event, for a layer that does not know the stream's sequence numbers
/// (the drain deadline cutting any Responses stream, passed through or translated).
pub fn error_event(message: &str, code: &str) -> Bytes {
    error_event_numbered(message, code, None)
}

fn error_event_numbered(message: &str, code: &str, sequence: Option<u64>) -> Bytes {
    let mut data = json!({"type": "error", "code": code, "message": message, "param": null});
    if let Some(sequence) = sequence {
        data["sequence_number"] = json!(sequence);
    }
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

impl EventTranslator for HubToResponses {
    fn event(&mut self, sse: &SseEvent<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        match HubEvent::<Chunk>::of(sse) {
            HubEvent::Done => {
                let started = Chunk {
                    id: None,
                    model: None,
                    choices: Vec::new(),
                    usage: None,
                };
                self.start(&started, out);
                self.finish(out);
            }
            HubEvent::Error(message) => self.fail(&message, "upstream_error", out),
            HubEvent::Chunk(chunk) => self.on_chunk(chunk, out),
            HubEvent::Undecodable => self.fail(
                "the upstream sent an undecodable stream event",
                "upstream_error",
                out,
            ),
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        if self.finish_reason.is_some() {
            self.finish(out);
        } else {
            self.fail("the upstream stream ended early", "upstream_error", out);
        }
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        error_event_numbered(message, code, Some(self.sequence))
    }

    fn usage(&self) -> Option<TokenUsage> {
        // The stage before this one read the upstream's own bytes and accounted them.
        None
    }
}
