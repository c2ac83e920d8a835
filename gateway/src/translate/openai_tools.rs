//! OpenAI chat tools, tool choice and response formats, as the hub carries them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A callable function.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub tool_type: String,
    /// The declaration.
    pub function: FunctionDefinition,
    /// Anthropic's prompt-cache breakpoint after this tool's definition (see
    /// `openai_types::Part`): carried to Anthropic only.
    #[serde(default, skip_serializing)]
    pub cache_control: Option<Value>,
}

/// A function declaration.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FunctionDefinition {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly (OpenAI's structured outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `auto`, `none` or `required`.
    Mode(String),
    /// One named function.
    Named {
        /// The function.
        function: NamedFunction,
    },
}

/// A function named in `tool_choice`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NamedFunction {
    /// Its name.
    pub name: String,
}

/// `response_format`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct JsonSchemaFormat {
    /// Schema name.
    pub name: String,
    /// The schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// What the format is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the output must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}
