//! Writing OpenAI responses: the `chat.completion` object and `chat.completion.chunk` SSE
//! events that translated upstreams are turned into. Typed and borrowed, so a streamed event
//! costs one small serialisation and no intermediate JSON tree.

use bytes::Bytes;
use serde::Serialize;

use super::openai_types::ToolCall;

/// Token usage in OpenAI's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageOut {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning included.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Cached prompt tokens, when the upstream reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
    /// Reasoning tokens, when the upstream reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionDetails>,
    /// Prompt tokens written to the cache for five minutes and for an hour (Anthropic): billed
    /// apart, but OpenAI's usage has no field for them, so only the accounting sees them.
    #[serde(skip)]
    pub cache_writes: (u64, u64),
}

/// `usage.prompt_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PromptDetails {
    /// Tokens served from the provider's prompt cache.
    pub cached_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CompletionDetails {
    /// Tokens spent on hidden reasoning.
    pub reasoning_tokens: u64,
}

impl UsageOut {
    /// Builds usage from counts; zero details are left out.
    pub fn new(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: (cached > 0).then_some(PromptDetails {
                cached_tokens: cached,
            }),
            completion_tokens_details: (reasoning > 0).then_some(CompletionDetails {
                reasoning_tokens: reasoning,
            }),
            cache_writes: (0, 0),
        }
    }

    /// The same usage with prompt tokens written to the cache, for five minutes and an hour.
    pub fn with_cache_writes(mut self, five_minutes: u64, hour: u64) -> Self {
        self.cache_writes = (five_minutes, hour);
        self
    }

    /// The gateway's accounting view.
    pub fn accounting(&self) -> crate::request::TokenUsage {
        crate::request::TokenUsage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cache_read_tokens: self.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            cache_write_tokens: self.cache_writes.0,
            cache_write_1h_tokens: self.cache_writes.1,
            reasoning_tokens: self
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
        }
    }
}

/// A non-streamed completion.
#[derive(Debug, Serialize)]
pub struct Completion<'a> {
    /// Response id.
    pub id: &'a str,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// Upstream model.
    pub model: &'a str,
    /// One choice per candidate.
    pub choices: Vec<CompletionChoice>,
    /// Token usage.
    pub usage: UsageOut,
}

/// One choice of a completion.
#[derive(Debug, Serialize)]
pub struct CompletionChoice {
    /// Choice index.
    pub index: u32,
    /// The assistant message.
    pub message: AssistantMessage,
    /// Always null (log probabilities are not translated).
    pub logprobs: Option<()>,
    /// Why generation stopped.
    pub finish_reason: Option<&'static str>,
}

/// The assistant message of a choice.
#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// Text, or null when the turn is only tool calls.
    pub content: Option<String>,
    /// Tool calls, when any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Always null.
    pub refusal: Option<()>,
    /// The model's reasoning (Anthropic thinking, Gemini thought summaries), under the name
    /// OpenAI-compatible servers give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The signature Anthropic puts on its thinking (a gateway extension: a Responses client
    /// gets it back as the reasoning item's `encrypted_content`, to continue the turn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_signature: Option<String>,
}

impl AssistantMessage {
    /// The assistant turn: `content` is null only when the turn is tool calls alone.
    pub fn new(text: String, tool_calls: Vec<ToolCall>) -> Self {
        let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
        Self {
            role: "assistant",
            content,
            tool_calls,
            refusal: None,
            reasoning_content: None,
            reasoning_signature: None,
        }
    }

    /// The turn with the model's reasoning, when there was any.
    pub fn with_reasoning(mut self, text: String, signature: String) -> Self {
        self.reasoning_content = (!text.is_empty()).then_some(text);
        self.reasoning_signature = (!signature.is_empty()).then_some(signature);
        self
    }
}

/// One streamed chunk.
#[derive(Debug, Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

/// One choice of a streamed chunk.
#[derive(Debug, Default, Serialize)]
pub struct ChunkChoice<'a> {
    /// Choice index.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta<'a>,
    /// Always null.
    pub logprobs: Option<()>,
    /// Set on the last chunk of the choice.
    pub finish_reason: Option<&'static str>,
}

/// `delta` of a chunk.
#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    /// `assistant` on the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text fragment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Tool-call fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    /// Reasoning text fragment (see [`AssistantMessage::reasoning_content`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// The reasoning's signature (see [`AssistantMessage::reasoning_signature`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_signature: Option<&'a str>,
}

/// A fragment of one tool call.
#[derive(Debug, Default, Serialize)]
pub struct ToolCallDelta<'a> {
    /// Position of the call in the message.
    pub index: u32,
    /// Call id (first fragment only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// `function` (first fragment only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub call_type: Option<&'static str>,
    /// Name and argument text.
    pub function: FunctionDelta<'a>,
}

/// Function fragment of a tool-call delta.
#[derive(Debug, Default, Serialize)]
pub struct FunctionDelta<'a> {
    /// Name (first fragment only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Next piece of the JSON argument text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
}

/// Writes the chunks of one streamed response.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    /// Response id.
    pub id: String,
    /// Upstream model.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
}

impl ChunkWriter {
    /// One `data:` event carrying `choices`.
    pub fn choices(&self, choices: &[ChunkChoice<'_>]) -> Bytes {
        self.event(choices, None)
    }

    /// A single-choice event.
    pub fn delta(&self, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Bytes {
        self.choices(&[ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }])
    }

    /// The usage chunk (`choices: []`) sent before `[DONE]` when the client asked for it.
    pub fn usage(&self, usage: UsageOut) -> Bytes {
        self.event(&[], Some(usage))
    }

    /// The `[DONE]` sentinel.
    pub fn done() -> Bytes {
        Bytes::from_static(b"data: [DONE]\n\n")
    }

    fn event(&self, choices: &[ChunkChoice<'_>], usage: Option<UsageOut>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"data: ");
        // Serialising these plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &chunk);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}
