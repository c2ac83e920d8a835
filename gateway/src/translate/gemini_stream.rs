//! Gemini `streamGenerateContent?alt=sse` → OpenAI `chat.completion.chunk` events.
//!
//! Every upstream event is a partial `GenerateContentResponse`. The first one opens the turn
//! (`role: assistant`); text parts become `content` deltas (thought summaries become
//! `reasoning_content`); a `functionCall` part arrives whole and becomes one tool-call delta with id, name and all
//! arguments (`{}` when it has no `args`, as in the JSON response). Gemini has no terminal
//! event: when the upstream ends after a candidate reported a `finishReason`, the finish chunk,
//! the usage chunk (when asked for) and `[DONE]` follow; a stream that ends without one, or an
//! `{"error": …}` event, ends with an OpenAI error event.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::chunks::{ChunkChoice, ChunkWriter, Delta, FunctionDelta, ToolCallDelta};
use super::gemini::{GenerateContentResponse, UsageMetadata, call_id, finish_reason};
use super::openai_types::arguments_text;
use super::stream::EventTranslator;
use crate::request::TokenUsage;
use crate::sse::{SseEvent, error_event};

#[derive(Debug, Default)]
struct CandidateState {
    started: bool,
    tool_calls: u32,
    finish: Option<String>,
}

/// Translator state for one stream.
#[derive(Debug)]
pub struct GeminiToOpenAi {
    writer: ChunkWriter,
    include_usage: bool,
    candidates: BTreeMap<u32, CandidateState>,
    usage: Option<UsageMetadata>,
    finished: bool,
}

impl GeminiToOpenAi {
    /// A translator writing chunks for `model`, dated `created`.
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            writer: ChunkWriter {
                id: format!("chatcmpl-gemini-{created}"),
                model: model.to_owned(),
                created,
            },
            include_usage,
            candidates: BTreeMap::new(),
            usage: None,
            finished: false,
        }
    }

    fn on(&mut self, response: GenerateContentResponse, out: &mut BytesMut) {
        if let Some(id) = response.response_id.filter(|_| self.candidates.is_empty()) {
            self.writer.id = id;
        }
        if let Some(usage) = response.usage_metadata {
            self.usage = Some(usage);
        }
        for (position, candidate) in response.candidates.into_iter().enumerate() {
            let index = candidate
                .index
                .unwrap_or(u32::try_from(position).unwrap_or(0));
            let state = self.candidates.entry(index).or_default();
            if !state.started {
                state.started = true;
                let delta = Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                };
                out.extend_from_slice(&self.writer.choices(&[choice(index, delta, None)]));
            }
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                    let delta = if part.thought == Some(true) {
                        Delta {
                            reasoning_content: Some(text),
                            ..Delta::default()
                        }
                    } else {
                        Delta {
                            content: Some(text),
                            ..Delta::default()
                        }
                    };
                    out.extend_from_slice(&self.writer.choices(&[choice(index, delta, None)]));
                }
                if let Some(call) = part.function_call {
                    let id = call_id(&call, state.tool_calls as usize);
                    let arguments = arguments_text(&call.args);
                    let tool = ToolCallDelta {
                        index: state.tool_calls,
                        id: Some(&id),
                        call_type: Some("function"),
                        function: FunctionDelta {
                            name: Some(&call.name),
                            arguments: Some(&arguments),
                        },
                    };
                    state.tool_calls += 1;
                    let delta = Delta {
                        tool_calls: Some([tool]),
                        ..Delta::default()
                    };
                    out.extend_from_slice(&self.writer.choices(&[choice(index, delta, None)]));
                }
            }
            if let Some(reason) = candidate.finish_reason {
                state.finish = Some(reason);
            }
        }
    }
}

fn choice<'a>(
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
) -> ChunkChoice<'a> {
    ChunkChoice {
        index,
        delta,
        logprobs: None,
        finish_reason,
    }
}

impl EventTranslator for GeminiToOpenAi {
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let value: serde_json::Value = match serde_json::from_str(&event.data) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable Gemini stream event");
                self.finished = true;
                out.extend_from_slice(&error_event(
                    "the upstream sent an undecodable stream event",
                    "upstream_error",
                ));
                return;
            }
        };
        if let Some(message) = value.pointer("/error/message").and_then(|m| m.as_str()) {
            self.finished = true;
            out.extend_from_slice(&error_event(
                &format!(
                    "upstream error: {}",
                    crate::sanitize::sanitize(message, None)
                ),
                "upstream_error",
            ));
            return;
        }
        match serde_json::from_value::<GenerateContentResponse>(value) {
            Ok(response) => self.on(response, out),
            Err(e) => {
                tracing::warn!(error = %e, "unexpected Gemini stream event");
                self.finished = true;
                out.extend_from_slice(&error_event(
                    "the upstream sent an unexpected stream event",
                    "upstream_error",
                ));
            }
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.candidates.is_empty() || self.candidates.values().any(|c| c.finish.is_none()) {
            out.extend_from_slice(&error_event(
                "the upstream stream ended before a finish reason",
                "upstream_error",
            ));
            return;
        }
        for (&index, state) in &self.candidates {
            let reason = finish_reason(state.finish.as_deref(), state.tool_calls > 0);
            out.extend_from_slice(&self.writer.choices(&[choice(
                index,
                Delta::default(),
                Some(reason),
            )]));
        }
        if self.include_usage {
            out.extend_from_slice(
                &self
                    .writer
                    .usage(self.usage.unwrap_or_default().to_openai()),
            );
        }
        out.extend_from_slice(&ChunkWriter::done());
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        error_event(message, code)
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage.map(|u| u.to_openai().accounting())
    }
}
