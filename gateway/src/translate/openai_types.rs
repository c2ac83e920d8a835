//! OpenAI chat wire types used when a request or response must be translated (the
//! pass-through path never builds these). Deserialisation is strict about shapes and lenient
//! about unknown fields, like the OpenAI API itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::openai_tools::{
    FunctionDefinition, JsonSchemaFormat, NamedFunction, ResponseFormat, Tool, ToolChoice,
};

/// A whole chat completion request.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ChatRequest {
    /// Model name (already the upstream model when handed to a translator).
    pub model: String,
    /// Conversation.
    pub messages: Vec<Message>,
    /// Whether to stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Streaming options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Legacy completion cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Completion cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature (0–2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Callable functions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Whether and which tool must be called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Whether to return log probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Log probabilities per token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Reasoning effort for reasoning models (`minimal`, `low`, `medium`, `high`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Whether the client asked to see the model's reasoning (a Responses `reasoning.summary`):
    /// adapters whose upstream shows it only when asked ask for it. Never sent as such.
    #[serde(skip)]
    pub reasoning_summary: bool,
}

impl ChatRequest {
    /// The completion cap the client asked for, under either name.
    pub fn completion_cap(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether the client wants a final usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or several.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// One conversation message.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    /// Instructions.
    System {
        /// Text.
        content: Content,
    },
    /// Instructions (newer name for system).
    Developer {
        /// Text.
        content: Content,
    },
    /// The user's turn.
    User {
        /// Text and images.
        content: Content,
    },
    /// The model's turn.
    Assistant {
        /// Text, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Content>,
        /// Tool calls, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
        /// The turn's signed reasoning, from a Responses reasoning item the gateway made of
        /// Anthropic thinking: only Anthropic reads it back. Never sent to OpenAI-format
        /// upstreams (some refuse reasoning in input messages).
        #[serde(skip)]
        reasoning: Option<SignedReasoning>,
    },
    /// A tool's result.
    Tool {
        /// The result.
        content: Content,
        /// The call it answers.
        tool_call_id: String,
    },
}

/// Reasoning with the signature its upstream put on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReasoning {
    /// The reasoning text.
    pub text: String,
    /// The upstream's signature over it.
    pub signature: String,
}

/// Message content: a string or typed parts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<Part>),
}

impl Content {
    /// All text parts joined (non-text parts skipped).
    pub fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The parts, with plain text as one text part.
    pub fn parts(&self) -> Vec<Part> {
        match self {
            Self::Text(t) => vec![Part::text(t.clone())],
            Self::Parts(p) => p.clone(),
        }
    }
}

/// One content part.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Anthropic's prompt-cache breakpoint (`{"type": "ephemeral"}`), as OpenAI-format
        /// clients of Anthropic models send it: carried to Anthropic, never sent to an
        /// OpenAI-format upstream.
        #[serde(default, skip_serializing)]
        cache_control: Option<Value>,
    },
    /// An image by URL or data URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
        /// See `Text`.
        #[serde(default, skip_serializing)]
        cache_control: Option<Value>,
    },
    /// A part type the translators do not handle (audio, files, refusals).
    #[serde(other)]
    Unsupported,
}

impl Part {
    /// A text part without a cache breakpoint.
    pub fn text(text: String) -> Self {
        Self::Text {
            text,
            cache_control: None,
        }
    }
}

/// `image_url`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ImageUrl {
    /// `https://...` or `data:<mime>;base64,<data>`.
    pub url: String,
    /// Detail hint (dropped by translators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// `(media type, base64 data)` when this is a base64 data URL.
    pub fn as_data(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (meta, data) = rest.split_once(',')?;
        let media = meta.strip_suffix(";base64")?;
        Some((media, data))
    }
}

/// A tool call made by the assistant.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    /// Id the tool result refers back to.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub call_type: String,
    /// The function and its JSON arguments.
    pub function: FunctionCall,
}

impl ToolCall {
    /// A function call with JSON `input` as its argument text.
    pub fn function(id: String, name: String, input: &Value) -> Self {
        Self {
            id,
            call_type: function_type(),
            function: FunctionCall {
                name,
                arguments: arguments_text(input),
            },
        }
    }

    /// The arguments parsed as JSON; a 400 naming `messages[index].tool_calls` otherwise.
    ///
    /// Empty (or blank) arguments mean a call without arguments, `{}`: OpenAI-compatible
    /// servers stream no-argument calls that way, and clients that append the streamed message
    /// to the conversation send it back verbatim on the next turn.
    pub fn arguments_json(&self, index: usize) -> Result<Value, crate::error::ApiError> {
        if self.function.arguments.trim().is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        serde_json::from_str(&self.function.arguments).map_err(|_| {
            crate::error::ApiError::invalid(
                "tool call arguments must be a JSON object",
                Some(&format!("messages[{index}].tool_calls")),
            )
        })
    }
}

fn function_type() -> String {
    "function".to_owned()
}

/// The OpenAI `arguments` text for a provider's structured tool input: an absent input (JSON
/// `null`, as Gemini's `args` when a function takes none) is `{}`, so every call a client gets
/// back, streamed or not, carries a JSON object it can send on the next turn.
pub fn arguments_text(input: &Value) -> String {
    if input.is_null() {
        "{}".to_owned()
    } else {
        input.to_string()
    }
}

/// Function name and arguments.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text.
    pub arguments: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(arguments: &str) -> ToolCall {
        ToolCall {
            id: "call_1".into(),
            call_type: function_type(),
            function: FunctionCall {
                name: "get_time".into(),
                arguments: arguments.into(),
            },
        }
    }

    #[test]
    fn empty_arguments_are_an_empty_object() {
        for blank in ["", "  ", "\n"] {
            let parsed = call(blank)
                .arguments_json(1)
                .expect("blank is no arguments");
            assert_eq!(parsed, serde_json::json!({}), "{blank:?}");
        }
        assert!(call("{\"a\":").arguments_json(1).is_err());
    }

    #[test]
    fn absent_input_becomes_an_empty_object() {
        assert_eq!(arguments_text(&Value::Null), "{}");
        assert_eq!(arguments_text(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
    }
}
