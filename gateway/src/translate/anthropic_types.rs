//! Anthropic Messages API request wire types, shared by the request translator and tests.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An Anthropic Messages API request.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct MessagesRequest {
    /// Upstream model.
    pub model: String,
    /// Completion cap (required by Anthropic).
    pub max_tokens: u32,
    /// Alternating user/assistant turns.
    pub messages: Vec<AMessage>,
    /// System prompt blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Vec<TextBlock>>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Whether to stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ATool>>,
    /// Tool choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<AToolChoice>,
    /// Request metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Output format and effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Value>,
    /// Extended thinking, `{"type": "enabled", "budget_tokens": …}`, when the client asked
    /// to see the model's reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
}

/// One turn.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Content blocks.
    pub content: Vec<Block>,
}

/// A system text block.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TextBlock {
    /// Always `text`.
    #[serde(rename = "type")]
    pub block_type: String,
    /// The text.
    pub text: String,
    /// Prompt-cache breakpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// A content block.
#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Prompt-cache breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// An image.
    Image {
        /// Where the image comes from.
        source: ImageSource,
        /// Prompt-cache breakpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// A tool call by the assistant.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        input: Value,
    },
    /// A tool's result.
    ToolResult {
        /// The call answered.
        tool_use_id: String,
        /// Result text.
        content: String,
    },
    /// Extended thinking: the hub's `reasoning_content` (and back, when a Responses client
    /// returns it with its signature).
    Thinking {
        /// The reasoning text.
        #[serde(default)]
        thinking: String,
        /// Anthropic's signature over it, required when it is sent back.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        signature: String,
    },
    /// Any block type the translator does not know.
    #[serde(other)]
    Other,
}

/// Image source.
#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline data.
    Base64 {
        /// e.g. `image/png`.
        media_type: String,
        /// Base64 data.
        data: String,
    },
    /// By URL.
    Url {
        /// The URL.
        url: String,
    },
}

/// A tool declaration.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ATool {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// Prompt-cache breakpoint after this tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// Tool choice.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub choice_type: String,
    /// Tool name for `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set when the client disallowed parallel calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// Request metadata.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    /// End-user id.
    pub user_id: String,
}
