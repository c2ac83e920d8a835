//! OpenAI Responses API requests (`POST /v1/responses`) as clients send them, translated to
//! the hub (OpenAI chat) for upstreams that do not speak the Responses API themselves.
//!
//! Request rules (matrix in `docs/translation.md`): `instructions` becomes a system message;
//! `input` as a string is one user message, a list of items goes through `responses_input`.
//! Function tools keep `strict`; `text.format` becomes `response_format`, `reasoning.effort`
//! `reasoning_effort` (and `reasoning.summary` asks adapters to show the reasoning),
//! `max_output_tokens` `max_completion_tokens`, `safety_identifier` (or `user`) `user`.
//! What a chat upstream cannot honour is refused with a 400 naming the field: built-in tools
//! (`web_search`, `file_search`, …), files and images by id, `item_reference` and
//! `previous_response_id` (both need stored responses).

use serde::Deserialize;
use serde_json::Value;

use super::openai_types::{
    ChatRequest, Content, FunctionDefinition, JsonSchemaFormat, Message, NamedFunction,
    ResponseFormat, StreamOptions, Tool, ToolChoice,
};
use crate::error::ApiError;

/// A client's Responses request (what translation reads; other fields are ignored).
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    /// Route model.
    pub model: String,
    /// A string, or a list of items.
    #[serde(default)]
    pub input: Option<Value>,
    /// System instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tools.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// Tool choice.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Whether several tool calls may come in one turn.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Output format (`text.format`).
    #[serde(default)]
    pub text: Option<Value>,
    /// Reasoning settings (`effort`, and `summary`: asking to see the reasoning).
    #[serde(default)]
    pub reasoning: Option<Value>,
    /// Completion cap.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Whether to stream.
    #[serde(default)]
    pub stream: Option<bool>,
    /// End-user id (older name).
    #[serde(default)]
    pub user: Option<String>,
    /// End-user id.
    #[serde(default)]
    pub safety_identifier: Option<String>,
    /// A stored earlier response to continue.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// A Conversations API conversation (state the gateway does not hold).
    #[serde(default)]
    pub conversation: Option<Value>,
    /// A stored prompt template (held by OpenAI, not the gateway).
    #[serde(default)]
    pub prompt: Option<Value>,
    /// Run in the background (needs OpenAI's response storage and polling).
    #[serde(default)]
    pub background: Option<bool>,
}

pub(super) fn refused(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::invalid(message, Some(param))
}

/// Translates a Responses request into the hub's chat request.
pub fn to_openai(request: ResponsesRequest) -> Result<ChatRequest, ApiError> {
    if request.previous_response_id.is_some() {
        return Err(refused(
            "'previous_response_id' needs a stored response, which this route's provider does not keep; send the whole conversation in 'input'",
            "previous_response_id",
        ));
    }
    for (present, field, what) in [
        (
            request.conversation.is_some(),
            "conversation",
            "conversation state",
        ),
        (request.prompt.is_some(), "prompt", "stored prompts"),
        (
            request.background == Some(true),
            "background",
            "background responses",
        ),
    ] {
        if present {
            return Err(refused(
                format!(
                    "'{field}' needs {what} kept by OpenAI, which this route's provider does not have"
                ),
                field,
            ));
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = request.instructions {
        messages.push(Message::System {
            content: Content::Text(instructions),
        });
    }
    match request.input {
        None => {}
        Some(Value::String(text)) => messages.push(Message::User {
            content: Content::Text(text),
        }),
        Some(Value::Array(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                super::responses_input::push_item(&mut messages, item, index)?;
            }
        }
        Some(_) => return Err(refused("'input' must be a string or a list", "input")),
    }
    let stream = request.stream.unwrap_or(false);
    Ok(ChatRequest {
        model: request.model,
        messages,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: Some(true),
        }),
        max_completion_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        tools: request.tools.map(tools).transpose()?,
        tool_choice: request.tool_choice.map(tool_choice).transpose()?,
        parallel_tool_calls: request.parallel_tool_calls,
        response_format: request
            .text
            .as_ref()
            .map(response_format)
            .transpose()?
            .flatten(),
        reasoning_effort: request
            .reasoning
            .as_ref()
            .and_then(|r| r["effort"].as_str())
            .map(str::to_owned),
        reasoning_summary: request
            .reasoning
            .as_ref()
            .is_some_and(|r| !r["summary"].is_null()),
        user: request.safety_identifier.or(request.user),
        ..ChatRequest::default()
    })
}

fn tools(tools: Vec<Value>) -> Result<Vec<Tool>, ApiError> {
    tools
        .into_iter()
        .enumerate()
        .map(|(index, tool)| {
            let kind = tool["type"].as_str().unwrap_or("(none)");
            if kind != "function" {
                return Err(refused(
                    format!("built-in tool '{kind}' is not available on this route's provider; only function tools are translated"),
                    &format!("tools[{index}].type"),
                ));
            }
            let name = tool["name"].as_str().ok_or_else(|| {
                refused("'name' must be a string", &format!("tools[{index}].name"))
            })?;
            Ok(Tool {
                tool_type: "function".into(),
                function: FunctionDefinition {
                    name: name.to_owned(),
                    description: tool["description"].as_str().map(str::to_owned),
                    parameters: tool.get("parameters").filter(|p| !p.is_null()).cloned(),
                    strict: tool["strict"].as_bool(),
                },
                cache_control: None,
            })
        })
        .collect()
}

fn tool_choice(choice: Value) -> Result<ToolChoice, ApiError> {
    match (&choice, choice["type"].as_str(), choice["name"].as_str()) {
        (Value::String(mode), _, _) => Ok(ToolChoice::Mode(mode.clone())),
        (_, Some("function"), Some(name)) => Ok(ToolChoice::Named {
            function: NamedFunction {
                name: name.to_owned(),
            },
        }),
        _ => Err(refused(
            "only 'auto', 'none', 'required' or a named function can be sent to this route's provider",
            "tool_choice",
        )),
    }
}

fn response_format(text: &Value) -> Result<Option<ResponseFormat>, ApiError> {
    let format = &text["format"];
    match format["type"].as_str() {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => Ok(Some(ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: format["name"].as_str().unwrap_or("output").to_owned(),
                schema: format.get("schema").cloned(),
                description: format["description"].as_str().map(str::to_owned),
                strict: format["strict"].as_bool(),
            },
        })),
        Some(other) => Err(refused(
            format!("text format '{other}' cannot be sent to this route's provider"),
            "text.format.type",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn translate(body: Value) -> Result<Value, ApiError> {
        let request: ResponsesRequest = serde_json::from_value(body).unwrap();
        to_openai(request).map(|r| serde_json::to_value(r).unwrap())
    }

    #[test]
    fn a_tool_round_trip_becomes_one_assistant_turn_and_tool_messages() {
        let chat = translate(json!({
            "model": "m", "instructions": "be brief", "max_output_tokens": 50,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "time in Paris and Rome?"}]},
                {"type": "function_call", "call_id": "c1", "name": "now", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "now", "arguments": "{\"city\":\"Rome\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "10:00"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "10:00"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []}
            ],
            "tools": [{"type": "function", "name": "now", "parameters": {"type": "object"}, "strict": true}],
            "text": {"format": {"type": "json_schema", "name": "t", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}, "safety_identifier": "u1"
        }))
        .unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 5, "{chat}");
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(messages[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            messages[4],
            json!({"role": "tool", "content": "10:00", "tool_call_id": "c2"})
        );
        assert_eq!(chat["max_completion_tokens"], 50);
        assert_eq!(chat["tools"][0]["function"]["strict"], true);
        assert_eq!(chat["response_format"]["json_schema"]["strict"], true);
        assert_eq!(chat["reasoning_effort"], "low");
        assert_eq!(chat["user"], "u1");
    }

    #[test]
    fn what_a_chat_upstream_cannot_honour_is_refused_naming_the_field() {
        for (body, param) in [
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
                "input[0].type",
            ),
            (
                json!({"model": "m", "input": "hi", "conversation": "conv_1"}),
                "conversation",
            ),
            (
                json!({"model": "m", "input": "hi", "prompt": {"id": "pmpt_1"}}),
                "prompt",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0].output[0]",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
                "input[0].content[0]",
            ),
        ] {
            let error = translate(body).unwrap_err();
            let ApiError::InvalidRequest {
                param: Some(got), ..
            } = &error
            else {
                panic!("{error:?}");
            };
            assert_eq!(got, param);
        }
    }

    #[test]
    fn a_string_input_streams_with_usage() {
        let chat = translate(json!({"model": "m", "input": "hi", "stream": true})).unwrap();
        assert_eq!(chat["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(chat["stream_options"]["include_usage"], true);
    }
}
