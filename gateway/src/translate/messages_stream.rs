//! OpenAI `chat.completion.chunk` stream → Anthropic Messages stream events, for clients of
//! `POST /v1/messages` served by a non-Anthropic upstream.
//!
//! The first chunk opens `message_start`; text deltas go into a text block, each new tool call
//! (a delta with an id) closes the open block and opens a `tool_use` block whose argument
//! fragments become `input_json_delta`s (a tool block closed without any input text gets one
//! `{}`, the input the JSON response gives such a call, so clients that join the fragments
//! themselves parse an object rather than an empty string); `[DONE]` closes the open block and
//! sends `message_delta` (stop reason and usage from the usage chunk, which the gateway always
//! asks the upstream for) and `message_stop`. An OpenAI error event becomes an Anthropic
//! `error` event.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::hub_chunk::HubChunk;
use super::messages::{stop_reason, usage_json};
use super::stream::{EventTranslator, HubEvent};
use crate::request::TokenUsage;
use crate::sse::SseEvent;

#[derive(Debug, PartialEq)]
enum OpenBlock {
    None,
    Text,
    Tool,
}

/// Translator state for one stream.
#[derive(Debug)]
pub struct OpenAiToMessages {
    route_model: String,
    started: bool,
    block_index: u32,
    open: OpenBlock,
    /// Whether the open tool block got input text other than whitespace.
    tool_input: bool,
    finish_reason: Option<String>,
    usage: (u64, u64, u64),
    finished: bool,
}

/// Formats one Anthropic SSE event.
pub fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The Anthropic-format terminal error event.
pub fn error_event(error_type: &str, message: &str) -> Bytes {
    event(
        "error",
        &json!({"type": "error", "error": {"type": error_type, "message": message}}),
    )
}

impl OpenAiToMessages {
    /// A translator reporting `route_model` until the upstream names its model.
    pub fn new(route_model: &str) -> Self {
        Self {
            route_model: route_model.to_owned(),
            started: false,
            block_index: 0,
            open: OpenBlock::None,
            tool_input: false,
            finish_reason: None,
            usage: (0, 0, 0),
            finished: false,
        }
    }

    fn start(&mut self, chunk: &HubChunk, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let id = chunk.id.as_deref().unwrap_or("gateway");
        let message = json!({
            "id": if id.starts_with("msg_") { id.to_owned() } else { format!("msg_{id}") },
            "type": "message", "role": "assistant",
            "model": chunk.model().unwrap_or(&self.route_model),
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage_json(0, 0, 0),
        });
        out.extend_from_slice(&event(
            "message_start",
            &json!({"type": "message_start", "message": message}),
        ));
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if self.open == OpenBlock::Tool && !self.tool_input {
            self.input_delta("{}", out);
        }
        if self.open != OpenBlock::None {
            out.extend_from_slice(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.block_index}),
            ));
            self.block_index += 1;
            self.open = OpenBlock::None;
        }
    }

    fn on_chunk(&mut self, chunk: HubChunk, out: &mut BytesMut) {
        self.start(&chunk, out);
        if let Some(usage) = &chunk.usage {
            let cached = usage
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            self.usage = (
                usage["prompt_tokens"].as_u64().unwrap_or(0),
                usage["completion_tokens"].as_u64().unwrap_or(0),
                cached,
            );
        }
        let Some(choice) = chunk.first_choice() else {
            return;
        };
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            if self.open != OpenBlock::Text {
                self.close_block(out);
                self.open = OpenBlock::Text;
                let start = json!({"type": "content_block_start", "index": self.block_index, "content_block": {"type": "text", "text": ""}});
                out.extend_from_slice(&event("content_block_start", &start));
            }
            let delta = json!({"type": "content_block_delta", "index": self.block_index, "delta": {"type": "text_delta", "text": text}});
            out.extend_from_slice(&event("content_block_delta", &delta));
        }
        for call in choice.delta.tool_calls {
            let function = call.function;
            if let Some(id) = call.id {
                self.close_block(out);
                self.open = OpenBlock::Tool;
                self.tool_input = false;
                let block = json!({"type": "tool_use", "id": id, "name": function.name.unwrap_or_default(), "input": {}});
                let start = json!({"type": "content_block_start", "index": self.block_index, "content_block": block});
                out.extend_from_slice(&event("content_block_start", &start));
            }
            if let Some(arguments) = function
                .arguments
                .filter(|a| !a.is_empty() && self.open == OpenBlock::Tool)
            {
                self.tool_input |= !arguments.trim().is_empty();
                self.input_delta(&arguments, out);
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason);
        }
    }

    /// One `input_json_delta` of the open tool block.
    fn input_delta(&self, partial_json: &str, out: &mut BytesMut) {
        let delta = json!({"type": "content_block_delta", "index": self.block_index, "delta": {"type": "input_json_delta", "partial_json": partial_json}});
        out.extend_from_slice(&event("content_block_delta", &delta));
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.finished = true;
        self.close_block(out);
        let (prompt, completion, cached) = self.usage;
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null},
            "usage": usage_json(prompt, completion, cached),
        });
        out.extend_from_slice(&event("message_delta", &delta));
        out.extend_from_slice(&event("message_stop", &json!({"type": "message_stop"})));
    }
}

impl EventTranslator for OpenAiToMessages {
    fn event(&mut self, sse: &SseEvent<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let failure = match HubEvent::<HubChunk>::of(sse) {
            HubEvent::Done => {
                let synthetic = HubChunk::default();
                self.start(&synthetic, out);
                return self.finish(out);
            }
            HubEvent::Chunk(chunk) => return self.on_chunk(chunk, out),
            HubEvent::Error(message) => message,
            HubEvent::Undecodable => "the upstream sent an undecodable stream event".to_owned(),
        };
        self.finished = true;
        out.extend_from_slice(&error_event("api_error", &failure));
    }

    fn end(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        if self.finish_reason.is_some() {
            self.finish(out);
        } else {
            self.finished = true;
            out.extend_from_slice(&error_event("api_error", "the upstream stream ended early"));
        }
    }

    fn error_event(&self, message: &str, _code: &str) -> Bytes {
        error_event("api_error", message)
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn usage(&self) -> Option<TokenUsage> {
        // The inner OpenAI-format relay already accounted these tokens.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::stream::translate_all;

    /// The `partial_json` texts sent for the stream's first tool block.
    fn tool_input(arguments_deltas: &[&str]) -> Vec<String> {
        let open = r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"now","arguments":""}}]}}]}"#;
        let mut input = format!("data: {open}\n\n");
        for arguments in arguments_deltas {
            let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}}]});
            input.push_str(&format!("data: {chunk}\n\n"));
        }
        input.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n");
        let output = translate_all(OpenAiToMessages::new("m"), input.as_bytes(), usize::MAX);
        String::from_utf8_lossy(&output)
            .split("\n\n")
            .filter_map(|e| e.split_once("\ndata: "))
            .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
            .filter_map(|e| e["delta"]["partial_json"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_tool_call_without_arguments_gets_empty_object_input() {
        assert_eq!(tool_input(&[]), ["{}"]);
        assert_eq!(tool_input(&[""]), ["{}"]);
        assert_eq!(tool_input(&["{\"a\":", "1}"]), ["{\"a\":", "1}"]);
    }
}
