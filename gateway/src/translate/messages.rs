//! Anthropic Messages API requests and responses as the gateway's clients send and receive
//! them (`POST /v1/messages`), translated to and from OpenAI chat for non-Anthropic upstreams.
//!
//! Request rules (matrix in `docs/translation.md`): `system` becomes a system message;
//! `tool_result` blocks become `tool` messages (before the rest of that user turn); `tool_use`
//! blocks become assistant `tool_calls`; images become `image_url` parts (base64 as data URLs);
//! `tool_choice` any/tool/none map to required/named/none and `disable_parallel_tool_use` to
//! `parallel_tool_calls: false`; `output_config.format` becomes `response_format`;
//! `metadata.user_id` becomes `user`. `thinking`, `top_k` and cache controls are dropped.

use serde::Deserialize;
use serde_json::{Value, json};

use super::anthropic::{Block, ImageSource};
use super::openai_types::{
    ChatRequest, Content, FunctionDefinition, ImageUrl, JsonSchemaFormat, Message, NamedFunction,
    Part, ResponseFormat, Stop, StreamOptions, Tool, ToolCall, ToolChoice,
};
use crate::error::ApiError;

/// A client's Messages API request (only what translation needs; unknown fields ignored).
#[derive(Debug, Deserialize)]
pub struct InboundRequest {
    /// Route model.
    pub model: String,
    /// Completion cap.
    pub max_tokens: u32,
    /// Turns.
    pub messages: Vec<InboundMessage>,
    /// System prompt: a string or text blocks.
    #[serde(default)]
    pub system: Option<Value>,
    /// Stop sequences.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Whether to stream.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling temperature (older clients).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling (older clients).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Tools.
    #[serde(default)]
    pub tools: Option<Vec<InboundTool>>,
    /// Tool choice.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Output format and effort.
    #[serde(default)]
    pub output_config: Option<Value>,
}

/// One client turn.
#[derive(Debug, Deserialize)]
pub struct InboundMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// A string or blocks.
    pub content: InboundContent,
}

/// Turn content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InboundContent {
    /// Plain text.
    Text(String),
    /// Blocks (tool results may carry a string or blocks as content).
    Blocks(Vec<Value>),
}

/// A client tool.
#[derive(Debug, Deserialize)]
pub struct InboundTool {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema.
    #[serde(default)]
    pub input_schema: Option<Value>,
}

/// Translates a client Messages request into an OpenAI chat request.
pub fn to_openai(request: InboundRequest) -> Result<ChatRequest, ApiError> {
    let mut messages = Vec::new();
    match request.system {
        Some(Value::String(text)) => messages.push(Message::System {
            content: Content::Text(text),
        }),
        Some(Value::Array(blocks)) => {
            let text = blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            messages.push(Message::System {
                content: Content::Text(text),
            });
        }
        _ => {}
    }
    for (i, message) in request.messages.into_iter().enumerate() {
        let blocks = match message.content {
            InboundContent::Text(text) => vec![json!({"type": "text", "text": text})],
            InboundContent::Blocks(blocks) => blocks,
        };
        let param = format!("messages[{i}].content");
        match message.role.as_str() {
            "user" => user_messages(blocks, &param, &mut messages)?,
            "assistant" => messages.push(assistant_message(blocks, &param)?),
            other => {
                return Err(ApiError::invalid(
                    format!("unknown role {other:?}"),
                    Some(&format!("messages[{i}].role")),
                ));
            }
        }
    }
    let stream = request.stream.unwrap_or(false);
    let (tool_choice, parallel_tool_calls) = tool_choice(request.tool_choice.as_ref());
    Ok(ChatRequest {
        model: request.model,
        messages,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: Some(true),
        }),
        max_tokens: Some(request.max_tokens),
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request.stop_sequences.map(Stop::Many),
        tools: request.tools.map(|tools| {
            tools
                .into_iter()
                .map(|t| Tool {
                    tool_type: "function".into(),
                    function: FunctionDefinition {
                        name: t.name,
                        description: t.description,
                        parameters: t.input_schema,
                        strict: None,
                    },
                    cache_control: None,
                })
                .collect()
        }),
        tool_choice,
        parallel_tool_calls,
        response_format: request
            .output_config
            .as_ref()
            .and_then(|c| c.pointer("/format/schema"))
            .map(|schema| ResponseFormat::JsonSchema {
                json_schema: JsonSchemaFormat {
                    name: "output".into(),
                    schema: Some(schema.clone()),
                    description: None,
                    strict: None,
                },
            }),
        user: request
            .metadata
            .as_ref()
            .and_then(|m| m["user_id"].as_str())
            .map(str::to_owned),
        ..ChatRequest::default()
    })
}

fn block(value: Value, param: &str) -> Result<Block, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(format!("invalid content block: {e}"), Some(param)))
}

fn user_messages(blocks: Vec<Value>, param: &str, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    for value in blocks {
        let tool_result = (value["type"] == "tool_result").then(|| {
            let text = match &value["content"] {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (
                value["tool_use_id"].as_str().unwrap_or_default().to_owned(),
                text,
            )
        });
        if let Some((tool_call_id, text)) = tool_result {
            out.push(Message::Tool {
                content: Content::Text(text),
                tool_call_id,
            });
            continue;
        }
        match block(value, param)? {
            Block::Text {
                text,
                cache_control,
            } => parts.push(Part::Text {
                text,
                cache_control,
            }),
            Block::Image {
                source,
                cache_control,
            } => {
                let url = match source {
                    ImageSource::Base64 { media_type, data } => {
                        format!("data:{media_type};base64,{data}")
                    }
                    ImageSource::Url { url } => url,
                };
                parts.push(Part::ImageUrl {
                    image_url: ImageUrl { url, detail: None },
                    cache_control,
                });
            }
            Block::Thinking { .. } => {}
            _ => {
                return Err(ApiError::invalid(
                    "this content block type is not supported for this route",
                    Some(param),
                ));
            }
        }
    }
    if !parts.is_empty() {
        out.push(Message::User {
            content: Content::Parts(parts),
        });
    }
    Ok(())
}

fn assistant_message(blocks: Vec<Value>, param: &str) -> Result<Message, ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for value in blocks {
        match block(value, param)? {
            Block::Text { text: t, .. } => text.push_str(&t),
            Block::ToolUse { id, name, input } => calls.push(ToolCall::function(id, name, &input)),
            _ => {}
        }
    }
    Ok(Message::Assistant {
        content: (!text.is_empty()).then_some(Content::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        reasoning: None,
    })
}

fn tool_choice(choice: Option<&Value>) -> (Option<ToolChoice>, Option<bool>) {
    let Some(choice) = choice else {
        return (None, None);
    };
    let parallel = (choice["disable_parallel_tool_use"] == true).then_some(false);
    let mapped = match choice["type"].as_str() {
        Some("any") => ToolChoice::Mode("required".into()),
        Some("none") => ToolChoice::Mode("none".into()),
        Some("tool") => ToolChoice::Named {
            function: NamedFunction {
                name: choice["name"].as_str().unwrap_or_default().to_owned(),
            },
        },
        _ => ToolChoice::Mode("auto".into()),
    };
    (Some(mapped), parallel)
}

/// Maps an OpenAI `finish_reason` to an Anthropic `stop_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage from OpenAI counts: `input_tokens` excludes cache reads, as Anthropic reports.
pub fn usage_json(prompt: u64, completion: u64, cached: u64) -> Value {
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "output_tokens": completion,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// Translates an OpenAI `chat.completion` JSON into an Anthropic `message`.
pub fn to_anthropic_message(body: &[u8], route_model: &str) -> Result<Vec<u8>, serde_json::Error> {
    let completion: Value = serde_json::from_slice(body)?;
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    let usage = &completion["usage"];
    let id = completion["id"].as_str().unwrap_or("msg_gateway");
    serde_json::to_vec(&json!({
        "id": if id.starts_with("msg_") { id.to_owned() } else { format!("msg_{id}") },
        "type": "message",
        "role": "assistant",
        "model": completion["model"].as_str().unwrap_or(route_model),
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": usage_json(
            usage["prompt_tokens"].as_u64().unwrap_or(0),
            usage["completion_tokens"].as_u64().unwrap_or(0),
            usage.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0),
        ),
    }))
}
