//! OpenAI chat ⇄ Anthropic Messages: the request going up and the JSON response coming back.
//!
//! Rules (the full matrix is in `docs/translation.md`): system and developer messages become the
//! top-level `system`; tool results become `tool_result` blocks in a user turn; consecutive
//! turns of one role are merged (Anthropic requires alternation); `max_tokens` is required
//! upstream and defaults to the catalogue's `maxOutputTokens` or 4096; JSON modes become
//! `output_config.format` and `reasoning_effort` becomes `output_config.effort`. Parameters
//! Anthropic cannot honour are rejected (`n > 1`, `logprobs`) or dropped when they only tune
//! sampling (`temperature`, `top_p`, `seed`, penalties: the current Messages API, as its
//! official SDK types show, takes no sampling parameters).

pub use super::anthropic_types::*;

use serde::Deserialize;
use serde_json::Value;

use super::chunks::{AssistantMessage, Completion, CompletionChoice, UsageOut};
use super::openai_types::{
    ChatRequest, Content, Message, Part, ResponseFormat, ToolCall, ToolChoice,
};
use crate::error::ApiError;

/// Used when neither the request nor the catalogue gives a completion cap.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Translates an OpenAI request; `default_max_tokens` comes from the model catalogue.
pub fn to_anthropic(
    request: ChatRequest,
    default_max_tokens: Option<u32>,
) -> Result<MessagesRequest, ApiError> {
    reject_unsupported(&request)?;
    let mut system = Vec::new();
    let mut messages: Vec<AMessage> = Vec::new();
    for (i, message) in request.messages.into_iter().enumerate() {
        let (role, blocks) = match message {
            Message::System { content } | Message::Developer { content } => {
                system.extend(system_blocks(content));
                continue;
            }
            Message::User { content } => ("user", user_blocks(&content, i)?),
            Message::Assistant {
                content,
                tool_calls,
                reasoning,
            } => {
                let mut blocks = Vec::new();
                if let Some(signed) = reasoning {
                    blocks.push(Block::Thinking {
                        thinking: signed.text,
                        signature: signed.signature,
                    });
                }
                blocks.extend(assistant_blocks(content, tool_calls, i)?);
                ("assistant", blocks)
            }
            Message::Tool {
                content,
                tool_call_id,
            } => (
                "user",
                vec![Block::ToolResult {
                    tool_use_id: tool_call_id,
                    content: content.text(),
                }],
            ),
        };
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(AMessage {
                role: role.to_owned(),
                content: blocks,
            }),
        }
    }
    let tools = request.tools.map(|tools| {
        tools
            .into_iter()
            .map(|t| ATool {
                cache_control: t.cache_control,
                name: t.function.name,
                description: t.function.description,
                input_schema: t
                    .function
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            })
            .collect()
    });
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .or(default_max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let tool_choice = tool_choice(request.tool_choice, request.parallel_tool_calls);
    let thinking = request
        .reasoning_summary
        .then(|| {
            thinking(
                request.reasoning_effort.as_deref(),
                max_tokens,
                &messages,
                &tool_choice,
            )
        })
        .flatten();
    Ok(MessagesRequest {
        model: request.model,
        max_tokens,
        messages,
        thinking,
        system: (!system.is_empty()).then_some(system),
        output_config: output_config(request.response_format, request.reasoning_effort.as_deref()),
        stop_sequences: request.stop.map(super::openai_types::Stop::into_vec),
        stream: request.stream.then_some(true),
        tool_choice,
        tools,
        metadata: request.user.map(|user_id| Metadata { user_id }),
    })
}

/// Extended thinking for a client that asked to see the model's reasoning, with a budget for
/// the effort it asked (1024 tokens for `minimal`/`low`, 4096 by default and for `medium`,
/// 16384 for `high`), at most half of `max_tokens` (Anthropic requires less than all of it,
/// and the answer needs the rest). Left off where Anthropic would refuse it: under 1024
/// tokens of room, effort `none`, a forced tool choice, or a tool-use turn to continue whose
/// thinking was not sent back signed.
fn thinking(
    effort: Option<&str>,
    max_tokens: u32,
    messages: &[AMessage],
    tool_choice: &Option<AToolChoice>,
) -> Option<Value> {
    const MIN_BUDGET: u32 = 1024;
    let wanted = match effort {
        Some("none") => return None,
        Some("minimal" | "low") => MIN_BUDGET,
        Some("high" | "xhigh") => 16_384,
        _ => 4096,
    };
    let budget = wanted.min(max_tokens / 2);
    let forced = tool_choice
        .as_ref()
        .is_some_and(|c| matches!(c.choice_type.as_str(), "any" | "tool"));
    let unsigned_tool_turn = messages
        .iter()
        .rev()
        .find(|m| m.role == "assistant")
        .is_some_and(|turn| {
            turn.content
                .iter()
                .any(|b| matches!(b, Block::ToolUse { .. }))
                && !matches!(turn.content.first(), Some(Block::Thinking { .. }))
        });
    (budget >= MIN_BUDGET && !forced && !unsigned_tool_turn)
        .then(|| serde_json::json!({"type": "enabled", "budget_tokens": budget}))
}

/// A system or developer message as system blocks: one per text part, each keeping its
/// prompt-cache breakpoint (the usual place for one: after the long, stable instructions).
fn system_blocks(content: Content) -> impl Iterator<Item = TextBlock> {
    content.parts().into_iter().filter_map(|part| match part {
        Part::Text {
            text,
            cache_control,
        } => Some(TextBlock {
            block_type: "text".into(),
            text,
            cache_control,
        }),
        _ => None,
    })
}

fn reject_unsupported(request: &ChatRequest) -> Result<(), ApiError> {
    let reject = |param: &str, why: &str| {
        Err(ApiError::invalid(
            format!("{why} is not supported by provider type anthropic"),
            Some(param),
        ))
    };
    if request.n.is_some_and(|n| n > 1) {
        return reject("n", "more than one choice (n > 1)");
    }
    if request.logprobs == Some(true) || request.top_logprobs.is_some() {
        return reject("logprobs", "log probabilities");
    }
    Ok(())
}

fn user_blocks(content: &Content, index: usize) -> Result<Vec<Block>, ApiError> {
    content
        .parts()
        .into_iter()
        .map(|part| match part {
            Part::Text {
                text,
                cache_control,
            } => Ok(Block::Text {
                text,
                cache_control,
            }),
            Part::ImageUrl {
                image_url,
                cache_control,
            } => Ok(Block::Image {
                cache_control,
                source: match image_url.as_data() {
                    Some((media_type, data)) => ImageSource::Base64 {
                        media_type: media_type.to_owned(),
                        data: data.to_owned(),
                    },
                    None => ImageSource::Url {
                        url: image_url.url.clone(),
                    },
                },
            }),
            Part::Unsupported => Err(ApiError::invalid(
                "this content part type is not supported by provider type anthropic",
                Some(&format!("messages[{index}].content")),
            )),
        })
        .collect()
}

fn assistant_blocks(
    content: Option<Content>,
    tool_calls: Option<Vec<ToolCall>>,
    index: usize,
) -> Result<Vec<Block>, ApiError> {
    let mut blocks = Vec::new();
    let parts = content.map(|c| c.parts()).unwrap_or_default();
    for part in parts {
        if let Part::Text {
            text,
            cache_control,
        } = part
            && !text.is_empty()
        {
            blocks.push(Block::Text {
                text,
                cache_control,
            });
        }
    }
    for call in tool_calls.unwrap_or_default() {
        let input = call.arguments_json(index)?;
        blocks.push(Block::ToolUse {
            id: call.id,
            name: call.function.name,
            input,
        });
    }
    Ok(blocks)
}

fn output_config(format: Option<ResponseFormat>, effort: Option<&str>) -> Option<Value> {
    let format = match format {
        Some(ResponseFormat::JsonObject) => {
            Some(serde_json::json!({"type": "json_schema", "schema": {"type": "object"}}))
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(serde_json::json!({
            "type": "json_schema",
            "schema": json_schema.schema.unwrap_or_else(|| serde_json::json!({"type": "object"})),
        })),
        _ => None,
    };
    let mut config = serde_json::Map::new();
    if let Some(format) = format {
        config.insert("format".into(), format);
    }
    if let Some(effort) = effort.and_then(anthropic_effort) {
        config.insert("effort".into(), Value::String(effort.to_owned()));
    }
    (!config.is_empty()).then_some(Value::Object(config))
}

/// Anthropic's effort for an OpenAI `reasoning_effort`: its lowest (`low`) stands for OpenAI's
/// `none` and `minimal` (Anthropic has no level without effort), and a value Anthropic does
/// not know is dropped rather than sent to be refused.
fn anthropic_effort(effort: &str) -> Option<&'static str> {
    match effort {
        "none" | "minimal" | "low" => Some("low"),
        "medium" => Some("medium"),
        "high" => Some("high"),
        "xhigh" => Some("xhigh"),
        "max" => Some("max"),
        _ => None,
    }
}

fn tool_choice(choice: Option<ToolChoice>, parallel: Option<bool>) -> Option<AToolChoice> {
    let disable_parallel = (parallel == Some(false)).then_some(true);
    let (choice_type, name) = match choice {
        None if disable_parallel.is_some() => ("auto", None),
        None => return None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" => ("none", None),
            "required" => ("any", None),
            _ => ("auto", None),
        },
        Some(ToolChoice::Named { function }) => ("tool", Some(function.name)),
    };
    Some(AToolChoice {
        choice_type: choice_type.to_owned(),
        name,
        disable_parallel_tool_use: disable_parallel,
    })
}

/// An Anthropic Messages API response.
#[derive(Debug, Deserialize)]
pub struct MessagesResponse {
    /// Message id.
    pub id: String,
    /// Model that answered.
    pub model: String,
    /// Content blocks.
    pub content: Vec<Block>,
    /// Why generation stopped.
    pub stop_reason: Option<String>,
    /// Token usage.
    pub usage: AUsage,
}

/// Anthropic usage.
#[derive(Debug, Default, Deserialize, Clone, Copy)]
pub struct AUsage {
    /// Uncached prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// Prompt tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// The cache writes split by how long they last.
    #[serde(default)]
    pub cache_creation: Option<CacheCreation>,
}

/// Anthropic's cache writes by lifetime.
#[derive(Debug, Default, Deserialize, Clone, Copy)]
pub struct CacheCreation {
    /// Written for an hour (billed at about twice the input price, against 1.25× for 5 minutes).
    #[serde(default)]
    pub ephemeral_1h_input_tokens: u64,
}

impl AUsage {
    /// OpenAI usage: prompt tokens include cached and cache-creation tokens; the writes are
    /// kept apart for the accounting.
    pub fn to_openai(self) -> UsageOut {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        let hour = self
            .cache_creation
            .map_or(0, |c| c.ephemeral_1h_input_tokens)
            .min(written);
        let prompt = self.input_tokens + cached + written;
        UsageOut::new(prompt, self.output_tokens, cached, 0).with_cache_writes(written - hour, hour)
    }
}

/// Maps `stop_reason` to `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Translates a JSON response; `created` is the Unix time to report.
pub fn to_openai_completion(
    body: &[u8],
    created: u64,
) -> Result<(Vec<u8>, UsageOut), serde_json::Error> {
    let response: MessagesResponse = serde_json::from_slice(body)?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let (mut reasoning, mut signature) = (String::new(), String::new());
    for block in response.content {
        match block {
            Block::Text { text: t, .. } => text.push_str(&t),
            Block::Thinking {
                thinking,
                signature: signed,
            } => {
                reasoning.push_str(&thinking);
                signature = signed;
            }
            Block::ToolUse { id, name, input } => {
                tool_calls.push(ToolCall::function(id, name, &input))
            }
            _ => {}
        }
    }
    let usage = response.usage.to_openai();
    let completion = Completion {
        id: &response.id,
        object: "chat.completion",
        created,
        model: &response.model,
        choices: vec![CompletionChoice {
            index: 0,
            message: AssistantMessage::new(text, tool_calls).with_reasoning(reasoning, signature),
            logprobs: None,
            finish_reason: Some(finish_reason(response.stop_reason.as_deref())),
        }],
        usage,
    };
    Ok((serde_json::to_vec(&completion)?, usage))
}
