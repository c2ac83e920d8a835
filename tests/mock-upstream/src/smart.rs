//! What the Anthropic and Gemini mocks answer, decided from the request like a tiny model
//! would: a tool call when tools are offered and no tool result came back yet, a sentence
//! quoting the tool result when one did, a note about the image when one was sent, a greeting
//! otherwise. Deterministic, so tests can assert exact text.

use serde_json::Value;

/// What the mock model "decided".
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Plain text.
    Text(String),
    /// A call of the named tool with these arguments.
    ToolCall {
        /// Tool name.
        name: String,
        /// Arguments.
        args: Value,
    },
}

/// Arguments the mock passes to any tool it calls.
pub fn tool_arguments() -> Value {
    serde_json::json!({"location": "Paris", "unit": "celsius"})
}

/// Whether the request asks for JSON output, in any of the APIs the mock speaks: OpenAI
/// chat's `response_format`, Responses' `text.format`, Anthropic's `output_config.format`,
/// Gemini's `responseMimeType`.
pub fn wants_json(body: &Value) -> bool {
    let json_types = ["json_schema", "json_object"];
    [
        "/response_format/type",
        "/text/format/type",
        "/output_config/format/type",
    ]
    .iter()
    .filter_map(|path| body.pointer(path).and_then(Value::as_str))
    .any(|kind| json_types.contains(&kind))
        || body.pointer("/generationConfig/responseMimeType")
            == Some(&Value::from("application/json"))
}

/// Decides the answer from the offered tool names, the last tool result, the last image's
/// media type and whether JSON was asked for (then the tool arguments, as JSON text: they fit
/// the tests' schema).
pub fn decide(
    tools: &[String],
    tool_result: Option<&str>,
    image: Option<&str>,
    json: bool,
) -> Answer {
    if let Some(result) = tool_result {
        return Answer::Text(format!("The tool said: {result}"));
    }
    if let Some(name) = tools.first() {
        return Answer::ToolCall {
            name: name.clone(),
            args: tool_arguments(),
        };
    }
    if json {
        return Answer::Text(tool_arguments().to_string());
    }
    if let Some(media) = image {
        return Answer::Text(format!("I see an image ({media})."));
    }
    Answer::Text("Hello from the mock model.".to_owned())
}

/// Splits text into pieces of at most `size` characters (streamed deltas).
pub fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}
