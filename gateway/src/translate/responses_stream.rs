//! Hub streams (OpenAI chat chunks) written as Responses API stream events: `response.created`
//! and `response.in_progress` first; then per output item `response.output_item.added` and its
//! deltas (`response.reasoning_summary_part.added` and `response.reasoning_summary_text.delta`
//! for the upstream's reasoning, closed when the answer starts; `response.content_part.added`
//! and `response.output_text.delta` or `response.refusal.delta` for a message,
//! `response.function_call_arguments.delta` for a function call); at the end each item's `…done` events, in output order, and
//! `response.completed` (or `response.incomplete` at the output cap) with the whole response
//! and its usage. Every event has the next `sequence_number`. Function calls stay open until
//! the end, so a server that interleaves the fragments of parallel calls is followed; a message
//! closes when the first call starts. A failure ends the stream with an `error` event and
//! `response.failed`, after `response.created` if nothing was sent yet.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::hub_chunk::{HubChunk, HubToolCall};
pub use super::responses_events::error_event;
use super::responses_events::{DeltaEvent, Events, error_event_numbered};
use super::responses_reply::{Shell, Status, function_call_item, usage, zero_usage};
use super::responses_stream_message::Message;
use super::responses_stream_reasoning::Reasoning;
use super::stream::{EventTranslator, HubEvent};
use crate::request::TokenUsage;
use crate::sse::SseEvent;

/// A function call being streamed.
#[derive(Debug)]
struct Call {
    tool_index: usize,
    output_index: usize,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// Called with the whole response when a stream completes (to keep it for continuations).
pub type Keeper = Box<dyn FnOnce(&Value) + Send>;

/// Translator state for one stream.
pub struct HubToResponses {
    route_model: String,
    created: u64,
    shell: Option<Shell>,
    events: Events,
    /// Finished items by output index (`None` while still open).
    output: Vec<Option<Value>>,
    reasoning: Option<Reasoning>,
    message: Option<Message>,
    calls: Vec<Call>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    finished: bool,
    keeper: Option<Keeper>,
    response_id: Option<String>,
    echo: serde_json::Map<String, Value>,
}

impl std::fmt::Debug for HubToResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubToResponses")
            .field("events", &self.events)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl HubToResponses {
    /// A translator naming `route_model` until the upstream names its model.
    pub fn new(route_model: &str, created: u64) -> Self {
        Self {
            route_model: route_model.to_owned(),
            created,
            shell: None,
            events: Events::default(),
            output: Vec::new(),
            reasoning: None,
            message: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            finished: false,
            keeper: None,
            response_id: None,
            echo: serde_json::Map::new(),
        }
    }

    /// Names the response `id` (else it is derived from the upstream's completion id).
    pub fn with_response_id(mut self, id: String) -> Self {
        self.response_id = Some(id);
        self
    }

    /// Repeats `echoed` request fields in every response object it sends.
    pub fn with_echo(mut self, echoed: serde_json::Map<String, Value>) -> Self {
        self.echo = echoed;
        self
    }

    /// Also hands the whole response to `keeper` when the stream completes.
    pub fn with_keeper(mut self, keeper: Option<Keeper>) -> Self {
        self.keeper = keeper;
        self
    }

    /// Sends `response.created` and `response.in_progress`, once.
    fn start(&mut self, id: Option<&str>, model: Option<&str>, out: &mut BytesMut) {
        if self.shell.is_some() {
            return;
        }
        let id = self.response_id.as_deref().or(id).unwrap_or("gateway");
        let mut shell = Shell::new(id, self.created, model.unwrap_or(&self.route_model));
        shell.echo = std::mem::take(&mut self.echo);
        let response = shell.object(Status::InProgress, Vec::new(), None);
        self.shell = Some(shell);
        self.events
            .emit("response.created", json!({"response": response}), out);
        self.events
            .emit("response.in_progress", json!({"response": response}), out);
    }

    fn shell(&self) -> &Shell {
        // `start` runs before anything else is written.
        self.shell
            .as_ref()
            .unwrap_or_else(|| unreachable!("started first"))
    }

    /// Reserves the next output index.
    fn next_index(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    /// Reasoning text or its signature: into the open reasoning item, or a new one.
    fn think(&mut self, text: Option<&str>, signature: Option<&str>, out: &mut BytesMut) {
        if self.reasoning.is_none() {
            let index = self.next_index();
            let id = self.shell().item_id("rs", index);
            self.reasoning = Some(Reasoning::open(index, id, &mut self.events, out));
        }
        if let Some(reasoning) = &mut self.reasoning {
            if let Some(text) = text {
                reasoning.delta(text, &mut self.events, out);
            }
            if let Some(signature) = signature {
                reasoning.sign(signature);
            }
        }
    }

    fn close_reasoning(&mut self, out: &mut BytesMut) {
        if let Some(reasoning) = self.reasoning.take() {
            let (index, item) = reasoning.close(&mut self.events, out);
            self.output[index] = Some(item);
        }
    }

    fn text(&mut self, kind: &'static str, delta: &str, out: &mut BytesMut) {
        self.close_reasoning(out);
        if self.message.is_none() {
            let index = self.next_index();
            let id = self.shell().item_id("msg", index);
            self.message = Some(Message::open(index, id, &mut self.events, out));
        }
        if let Some(message) = &mut self.message {
            message.delta(kind, delta, &mut self.events, out);
        }
    }

    fn close_message(&mut self, status: &str, out: &mut BytesMut) {
        if let Some(message) = self.message.take() {
            let (index, item) = message.close(status, &mut self.events, out);
            self.output[index] = Some(item);
        }
    }

    fn tool(&mut self, fragment: HubToolCall, out: &mut BytesMut) {
        let position = self
            .calls
            .iter()
            .position(|c| c.tool_index == fragment.index);
        let position = match position {
            Some(position) => position,
            None => self.open_call(&fragment, out),
        };
        let call = &mut self.calls[position];
        if call.name.is_empty()
            && let Some(name) = fragment.function.name
        {
            call.name = name;
        }
        let Some(delta) = fragment.function.arguments.filter(|a| !a.is_empty()) else {
            return;
        };
        call.arguments.push_str(&delta);
        let event = DeltaEvent {
            kind: "response.function_call_arguments.delta",
            sequence_number: 0,
            item_id: &call.item_id,
            output_index: call.output_index,
            content_index: None,
            summary_index: None,
            delta: &delta,
            logprobs: None,
        };
        self.events.emit_delta(event, out);
    }

    fn open_call(&mut self, fragment: &HubToolCall, out: &mut BytesMut) -> usize {
        self.close_reasoning(out);
        self.close_message("completed", out);
        let output_index = self.next_index();
        let call_id = fragment
            .id
            .clone()
            .unwrap_or_else(|| format!("call_{}", fragment.index));
        let name = fragment.function.name.clone().unwrap_or_default();
        let item_id = self.shell().item_id("fc", output_index);
        let item = function_call_item(&item_id, &call_id, &name, "", "in_progress");
        self.events.emit(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
            out,
        );
        self.calls.push(Call {
            tool_index: fragment.index,
            output_index,
            item_id,
            call_id,
            name,
            arguments: String::new(),
        });
        self.calls.len() - 1
    }

    fn close_calls(&mut self, out: &mut BytesMut) {
        for call in std::mem::take(&mut self.calls) {
            let arguments = if call.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                call.arguments
            };
            let index = call.output_index;
            self.events.emit(
                "response.function_call_arguments.done",
                json!({"item_id": call.item_id, "output_index": index, "name": call.name, "arguments": arguments}),
                out,
            );
            let item = function_call_item(
                &call.item_id,
                &call.call_id,
                &call.name,
                &arguments,
                "completed",
            );
            self.events.emit(
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
                out,
            );
            self.output[index] = Some(item);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        let status = Status::of_finish(self.finish_reason.as_deref());
        self.close_reasoning(out);
        self.close_message(status.item_status(), out);
        self.close_calls(out);
        self.finished = true;
        let output = std::mem::take(&mut self.output)
            .into_iter()
            .flatten()
            .collect();
        let usage = self.usage.take().unwrap_or_else(zero_usage);
        let response = self.shell().object(status, output, Some(usage));
        if let Some(keep) = self.keeper.take() {
            keep(&response);
        }
        self.events
            .emit(status.terminal_event(), json!({"response": response}), out);
    }

    fn on_chunk(&mut self, chunk: HubChunk, out: &mut BytesMut) {
        self.start(chunk.id.as_deref(), chunk.model(), out);
        if let Some(found) = chunk.usage.as_ref().filter(|u| !u.is_null()) {
            self.usage = Some(usage(found));
        }
        let Some(mut choice) = chunk.first_choice() else {
            return;
        };
        let reasoning = choice.delta.reasoning_text();
        let signature = choice.delta.reasoning_signature.take();
        if reasoning.is_some() || signature.is_some() {
            self.think(reasoning.as_deref(), signature.as_deref(), out);
        }
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            self.text("output_text", &text, out);
        }
        if let Some(refusal) = choice.delta.refusal.filter(|t| !t.is_empty()) {
            self.text("refusal", &refusal, out);
        }
        for fragment in choice.delta.tool_calls {
            self.tool(fragment, out);
        }
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
    }

    /// Ends the stream: an `error` event, then `response.failed` with what was produced.
    fn fail(&mut self, message: &str, code: &str, out: &mut BytesMut) {
        self.start(None, None, out);
        self.finished = true;
        self.events.emit(
            "error",
            json!({"code": code, "message": message, "param": null}),
            out,
        );
        let output = std::mem::take(&mut self.output)
            .into_iter()
            .flatten()
            .collect();
        let response = self.shell().failed(output, code, message);
        self.events
            .emit("response.failed", json!({"response": response}), out);
    }
}

impl EventTranslator for HubToResponses {
    fn event(&mut self, sse: &SseEvent<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        match HubEvent::<HubChunk>::of(sse) {
            HubEvent::Done => {
                self.start(None, None, out);
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
        error_event_numbered(message, code, self.events.sequence)
    }

    fn usage(&self) -> Option<TokenUsage> {
        // The stage before this one read the upstream's own bytes and accounted them.
        None
    }

    fn finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Transform;
    use crate::translate::stream::EventTransform;

    #[test]
    fn nothing_follows_the_terminal_event() {
        let mut transform = EventTransform::new(HubToResponses::new("m", 0));
        let stream = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let out = transform.push(Bytes::from_static(stream));
        assert!(String::from_utf8_lossy(&out).contains("response.completed"));
        assert!(transform.is_finished(), "the relay stops reading");
        assert!(transform.error_event("late", "upstream_timeout").is_empty());
    }
}
