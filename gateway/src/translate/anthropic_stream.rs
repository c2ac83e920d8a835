//! Anthropic Messages stream → OpenAI `chat.completion.chunk` events.
//!
//! `message_start` opens the assistant turn; text deltas become `content`, thinking deltas
//! `reasoning_content` (and the thinking's signature `reasoning_signature`); a `tool_use` block
//! becomes a tool call (id and name on its first fragment, then `input_json_delta` pieces as
//! `arguments`), numbered in order of appearance; a tool block that closes without any
//! argument text (a no-argument call: `input: {}` and no `input_json_delta`, or only empty
//! ones) gets `{}` as its arguments, as the JSON response has, so a client that appends the
//! streamed message can send it back; `message_delta` carries the stop reason and output
//! tokens; `message_stop` emits the finish chunk, the usage chunk when asked for, and `[DONE]`.
//! `ping` becomes an SSE comment (keeps proxies from timing out); an `error` event becomes the
//! terminal OpenAI error event, with no `[DONE]`.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::anthropic::{AUsage, finish_reason};
use super::anthropic_events::{BlockDelta, Event, StartBlock};
use super::chunks::{ChunkWriter, Delta, FunctionDelta, ToolCallDelta, UsageOut};
use super::stream::EventTranslator;
use crate::request::TokenUsage;
use crate::sse::{SseEvent, error_event};

/// A `tool_use` block still open: its OpenAI tool-call index, and whether any argument text
/// other than whitespace went out for it (if none did, `{}` is sent when it closes).
#[derive(Debug, Clone, Copy)]
struct ToolBlock {
    call: u32,
    has_arguments: bool,
}

/// Translator state for one stream.
#[derive(Debug)]
pub struct AnthropicToOpenAi {
    writer: ChunkWriter,
    include_usage: bool,
    /// Open `tool_use` blocks by Anthropic block index.
    tool_blocks: HashMap<u32, ToolBlock>,
    /// Tool calls opened so far: the OpenAI index of the next one.
    tool_calls: u32,
    usage: AUsage,
    stop_reason: Option<String>,
    started: bool,
    finished: bool,
}

impl AnthropicToOpenAi {
    /// A translator writing chunks for `model`, dated `created`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter {
                id: String::new(),
                model: model.to_owned(),
                created,
            },
            include_usage,
            tool_blocks: HashMap::new(),
            tool_calls: 0,
            usage: AUsage::default(),
            stop_reason: None,
            started: false,
            finished: false,
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&self.writer.delta(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                },
                None,
            ));
        }
    }

    fn on(&mut self, event: Event, out: &mut BytesMut) {
        match event {
            Event::MessageStart { message } => {
                self.writer.id = message.id;
                self.writer.model = message.model;
                self.usage = message.usage;
                self.start(out);
            }
            Event::ContentBlockStart {
                index,
                content_block: StartBlock::ToolUse { id, name },
            } => self.open_tool(index, &id, &name, out),
            Event::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
                ..
            } => {
                self.start(out);
                out.extend_from_slice(&self.writer.delta(
                    Delta {
                        content: Some(&text),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            Event::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJsonDelta { partial_json },
            } => self.tool_arguments(index, &partial_json, out),
            Event::ContentBlockDelta {
                delta: BlockDelta::ThinkingDelta { thinking },
                ..
            } => self.reasoning(
                Delta {
                    reasoning_content: Some(&thinking),
                    ..Delta::default()
                },
                out,
            ),
            Event::ContentBlockDelta {
                delta: BlockDelta::SignatureDelta { signature },
                ..
            } => self.reasoning(
                Delta {
                    reasoning_signature: Some(&signature),
                    ..Delta::default()
                },
                out,
            ),
            Event::ContentBlockStop { index: Some(index) } => {
                if let Some(block) = self.tool_blocks.remove(&index) {
                    self.close_tool(block, out);
                }
            }
            Event::MessageDelta { delta, usage } => {
                self.stop_reason = delta.stop_reason;
                if let Some(usage) = usage {
                    self.final_usage(&usage);
                }
            }
            Event::MessageStop {} => self.finish(out),
            Event::Ping {} => out.extend_from_slice(b": ping\n\n"),
            Event::Error { error } => {
                self.finished = true;
                out.extend_from_slice(&error_event(
                    &format!(
                        "upstream error ({}): {}",
                        error.error_type,
                        crate::sanitize::sanitize(&error.message, None)
                    ),
                    &error.error_type,
                ));
            }
            Event::ContentBlockStart { .. }
            | Event::ContentBlockDelta { .. }
            | Event::ContentBlockStop { .. }
            | Event::Unknown => {}
        }
    }

    /// `message_delta`'s counts: the output, and the input ones only ever grow.
    fn final_usage(&mut self, delta: &super::anthropic_events::DeltaUsage) {
        let usage = &mut self.usage;
        if let Some(tokens) = delta.output_tokens {
            usage.output_tokens = tokens;
        }
        usage.input_tokens = usage.input_tokens.max(delta.input_tokens.unwrap_or(0));
        let grow = |count: &mut Option<u64>, later: Option<u64>| {
            if let Some(later) = later {
                *count = Some(count.unwrap_or(0).max(later));
            }
        };
        grow(
            &mut usage.cache_read_input_tokens,
            delta.cache_read_input_tokens,
        );
        grow(
            &mut usage.cache_creation_input_tokens,
            delta.cache_creation_input_tokens,
        );
    }

    /// A fragment of the model's thinking, or its signature.
    fn reasoning(&mut self, delta: Delta<'_>, out: &mut BytesMut) {
        self.start(out);
        out.extend_from_slice(&self.writer.delta(delta, None));
    }

    /// A `tool_use` block opens: the call's first fragment (id, name, empty arguments).
    fn open_tool(&mut self, index: u32, id: &str, name: &str, out: &mut BytesMut) {
        self.start(out);
        let call = self.tool_calls;
        self.tool_calls = self.tool_calls.saturating_add(1);
        self.tool_blocks.insert(
            index,
            ToolBlock {
                call,
                has_arguments: false,
            },
        );
        let delta = ToolCallDelta {
            index: call,
            id: Some(id),
            call_type: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments: Some(""),
            },
        };
        self.tool_call_chunk(delta, out);
    }

    /// An `input_json_delta` of an open tool block: the next piece of its arguments.
    fn tool_arguments(&mut self, index: u32, partial_json: &str, out: &mut BytesMut) {
        let Some(block) = self.tool_blocks.get_mut(&index) else {
            return;
        };
        if partial_json.is_empty() {
            return;
        }
        block.has_arguments |= !partial_json.trim().is_empty();
        let call = block.call;
        self.arguments_chunk(call, partial_json, out);
    }

    /// A tool block ends: a call that got no argument text gets `{}` (what the JSON response
    /// says for `input: {}`), since an empty `arguments` string is not JSON.
    fn close_tool(&self, block: ToolBlock, out: &mut BytesMut) {
        if !block.has_arguments {
            self.arguments_chunk(block.call, "{}", out);
        }
    }

    fn arguments_chunk(&self, call: u32, arguments: &str, out: &mut BytesMut) {
        let delta = ToolCallDelta {
            index: call,
            function: FunctionDelta {
                arguments: Some(arguments),
                ..FunctionDelta::default()
            },
            ..ToolCallDelta::default()
        };
        self.tool_call_chunk(delta, out);
    }

    fn tool_call_chunk(&self, delta: ToolCallDelta<'_>, out: &mut BytesMut) {
        out.extend_from_slice(&self.writer.delta(
            Delta {
                tool_calls: Some([delta]),
                ..Delta::default()
            },
            None,
        ));
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.start(out);
        self.finished = true;
        // Blocks the upstream never closed still get their arguments before the finish chunk.
        let mut open: Vec<ToolBlock> = std::mem::take(&mut self.tool_blocks)
            .into_values()
            .collect();
        open.sort_by_key(|b| b.call);
        for block in open {
            self.close_tool(block, out);
        }
        let reason = finish_reason(self.stop_reason.as_deref());
        out.extend_from_slice(&self.writer.delta(Delta::default(), Some(reason)));
        if self.include_usage {
            out.extend_from_slice(&self.writer.usage(self.openai_usage()));
        }
        out.extend_from_slice(&ChunkWriter::done());
    }

    fn openai_usage(&self) -> UsageOut {
        self.usage.to_openai()
    }
}

impl EventTranslator for AnthropicToOpenAi {
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        match serde_json::from_str::<Event>(&event.data) {
            Ok(parsed) => self.on(parsed, out),
            Err(e) => {
                self.finished = true;
                tracing::warn!(error = %e, "undecodable Anthropic stream event");
                out.extend_from_slice(&error_event(
                    "the upstream sent an undecodable stream event",
                    "upstream_error",
                ));
            }
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if !self.finished {
            self.finished = true;
            out.extend_from_slice(&error_event(
                "the upstream stream ended before message_stop",
                "upstream_error",
            ));
        }
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        error_event(message, code)
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.started.then(|| self.openai_usage().accounting())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::stream::translate_all;

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}"#;
    const TOOL: &str = r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_time","input":{}}}"#;
    const EMPTY: &str = r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#;
    const ARGS: &str = r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"tz\":1}"}}"#;
    const CLOSE: &str = r#"{"type":"content_block_stop","index":0}"#;
    const DELTA: &str = r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"}}"#;
    const STOP: &str = r#"{"type":"message_stop"}"#;

    /// The `arguments` pieces of the stream's tool call, checking none follows the finish chunk.
    fn streamed_arguments(events: &[&str]) -> Vec<String> {
        let input: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        let translator = AnthropicToOpenAi::new("claude", 0, false);
        let output = translate_all(translator, input.as_bytes(), usize::MAX);
        let text = String::from_utf8_lossy(&output);
        let (mut pieces, mut finished) = (Vec::new(), false);
        for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
            let Ok(chunk) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            let choice = &chunk["choices"][0];
            assert!(!finished, "a chunk after the finish chunk: {data}");
            finished = choice["finish_reason"].is_string();
            let call = &choice["delta"]["tool_calls"][0];
            if let Some(piece) = call["function"]["arguments"].as_str() {
                pieces.push(piece.to_owned());
            }
        }
        assert!(finished, "no finish chunk in {text}");
        pieces
    }

    #[test]
    fn a_tool_call_without_argument_text_streams_empty_object_arguments() {
        // No input_json_delta, only an empty one, and a block never closed before message_stop.
        for events in [
            &[START, TOOL, CLOSE, DELTA, STOP][..],
            &[START, TOOL, EMPTY, CLOSE, DELTA, STOP][..],
            &[START, TOOL, EMPTY, DELTA, STOP][..],
        ] {
            assert_eq!(streamed_arguments(events), ["", "{}"], "{events:?}");
        }
        let with_arguments = streamed_arguments(&[START, TOOL, EMPTY, ARGS, CLOSE, DELTA, STOP]);
        assert_eq!(with_arguments.concat(), r#"{"tz":1}"#);
    }
}
