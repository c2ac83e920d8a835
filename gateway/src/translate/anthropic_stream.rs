//! Anthropic Messages stream → OpenAI `chat.completion.chunk` events.
//!
//! `message_start` opens the assistant turn; text deltas become `content`; a `tool_use` block
//! becomes a tool call (id and name on its first fragment, then `input_json_delta` pieces as
//! `arguments`), numbered in order of appearance; `message_delta` carries the stop reason and
//! output tokens; `message_stop` emits the finish chunk, the usage chunk when asked for, and
//! `[DONE]`. `ping` becomes an SSE comment (keeps proxies from timing out); an `error` event
//! becomes the terminal OpenAI error event, with no `[DONE]`.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::anthropic::{AUsage, finish_reason};
use super::chunks::{ChunkWriter, Delta, FunctionDelta, ToolCallDelta, UsageOut};
use super::stream::EventTranslator;
use crate::openai::Usage;
use crate::providers::sse::{SseEvent, error_event};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<DeltaUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    id: String,
    model: String,
    #[serde(default)]
    usage: AUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct DeltaUsage {
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    error_type: String,
    message: String,
}

/// Translator state for one stream.
#[derive(Debug)]
pub struct AnthropicToOpenAi {
    writer: ChunkWriter,
    include_usage: bool,
    /// Anthropic block index → OpenAI tool-call index.
    tool_indexes: HashMap<u32, u32>,
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
            tool_indexes: HashMap::new(),
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
            } => {
                self.start(out);
                let call_index = u32::try_from(self.tool_indexes.len()).unwrap_or(u32::MAX);
                self.tool_indexes.insert(index, call_index);
                let call = ToolCallDelta {
                    index: call_index,
                    id: Some(&id),
                    call_type: Some("function"),
                    function: FunctionDelta {
                        name: Some(&name),
                        arguments: Some(""),
                    },
                };
                out.extend_from_slice(&self.writer.delta(
                    Delta {
                        tool_calls: Some([call]),
                        ..Delta::default()
                    },
                    None,
                ));
            }
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
            } => {
                let Some(&call_index) = self.tool_indexes.get(&index) else {
                    return;
                };
                if partial_json.is_empty() {
                    return;
                }
                let call = ToolCallDelta {
                    index: call_index,
                    function: FunctionDelta {
                        arguments: Some(&partial_json),
                        ..FunctionDelta::default()
                    },
                    ..ToolCallDelta::default()
                };
                out.extend_from_slice(&self.writer.delta(
                    Delta {
                        tool_calls: Some([call]),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            Event::MessageDelta { delta, usage } => {
                self.stop_reason = delta.stop_reason;
                if let Some(tokens) = usage.and_then(|u| u.output_tokens) {
                    self.usage.output_tokens = tokens;
                }
            }
            Event::MessageStop {} => self.finish(out),
            Event::Ping {} => out.extend_from_slice(b": ping\n\n"),
            Event::Error { error } => {
                self.finished = true;
                out.extend_from_slice(&error_event(
                    &format!("upstream error ({}): {}", error.error_type, error.message),
                    &error.error_type,
                ));
            }
            Event::ContentBlockStart { .. }
            | Event::ContentBlockDelta { .. }
            | Event::ContentBlockStop {}
            | Event::Unknown => {}
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.start(out);
        self.finished = true;
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

    fn usage(&self) -> Option<Usage> {
        self.started.then(|| self.openai_usage().accounting())
    }
}
