//! OpenAI chat ⇄ Google Gemini `generateContent`: the request going up, the JSON response
//! coming back, and the response shape the stream translator shares.
//!
//! Rules (full matrix in `docs/translation.md`): system and developer messages become
//! `systemInstruction`; assistant turns are role `model`; tool calls become `functionCall` parts
//! and tool results `functionResponse` parts (Gemini wants the function *name*, found from the
//! assistant turn that made the call); images become `inlineData` (data URLs) or `fileData`
//! (URLs); sampling options go to `generationConfig`, JSON modes to `responseMimeType` /
//! `responseJsonSchema`. `logprobs` is rejected; `user` and `parallel_tool_calls` are dropped.

pub use super::gemini_types::*;

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::chunks::{AssistantMessage, Completion, CompletionChoice, UsageOut};
use super::openai_types::{
    ChatRequest, Content, Message, Part, ResponseFormat, ToolCall, ToolChoice,
};
use crate::error::ApiError;

/// Translates an OpenAI request.
pub fn to_gemini(request: ChatRequest) -> Result<GenerateContentRequest, ApiError> {
    if request.logprobs == Some(true) || request.top_logprobs.is_some() {
        return Err(ApiError::invalid(
            "log probabilities are not supported by provider type gemini",
            Some("logprobs"),
        ));
    }
    let mut names_by_call_id: HashMap<String, String> = HashMap::new();
    let mut system = Vec::new();
    let mut contents: Vec<GContent> = Vec::new();
    for (i, message) in request.messages.into_iter().enumerate() {
        let (role, parts) = match message {
            Message::System { content } | Message::Developer { content } => {
                system.push(GPart {
                    text: Some(content.text()),
                    ..GPart::default()
                });
                continue;
            }
            Message::User { content } => ("user", user_parts(&content, i)?),
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut parts = Vec::new();
                if let Some(text) = content.map(|c| c.text()).filter(|t| !t.is_empty()) {
                    parts.push(GPart {
                        text: Some(text),
                        ..GPart::default()
                    });
                }
                for call in tool_calls.unwrap_or_default() {
                    let args = call.arguments_json(i)?;
                    names_by_call_id.insert(call.id.clone(), call.function.name.clone());
                    let id = Some(call.id);
                    parts.push(GPart {
                        function_call: Some(GFunctionCall {
                            id,
                            name: call.function.name,
                            args,
                        }),
                        ..GPart::default()
                    });
                }
                ("model", parts)
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let name = names_by_call_id.get(&tool_call_id).cloned().ok_or_else(|| {
                    ApiError::invalid(
                        format!("tool_call_id {tool_call_id:?} does not match a tool call of an earlier assistant message"),
                        Some(&format!("messages[{i}].tool_call_id")),
                    )
                })?;
                let text = content.text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(object @ Value::Object(_)) => object,
                    _ => json!({"output": text}),
                };
                let part = json!({"id": tool_call_id, "name": name, "response": response});
                (
                    "user",
                    vec![GPart {
                        function_response: Some(part),
                        ..GPart::default()
                    }],
                )
            }
        };
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(GContent {
                role: Some(role.to_owned()),
                parts,
            }),
        }
    }
    let tools = request.tools.map(|tools| {
        let declarations = tools
            .into_iter()
            .map(|t| {
                let mut d = json!({"name": t.function.name});
                if let Some(description) = t.function.description {
                    d["description"] = Value::String(description);
                }
                if let Some(parameters) = t.function.parameters {
                    d["parametersJsonSchema"] = parameters;
                }
                d
            })
            .collect();
        vec![GTool {
            function_declarations: declarations,
        }]
    });
    let (response_mime_type, response_json_schema) = match request.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json".to_owned()), None),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            (Some("application/json".to_owned()), json_schema.schema)
        }
        _ => (None, None),
    };
    let generation_config = GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        max_output_tokens: request.max_completion_tokens.or(request.max_tokens),
        stop_sequences: request.stop.map(super::openai_types::Stop::into_vec),
        candidate_count: request.n,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        seed: request.seed,
        response_mime_type,
        response_json_schema,
        thinking_config: request
            .reasoning_summary
            .then(|| serde_json::json!({"includeThoughts": true})),
    };
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(GContent {
            role: None,
            parts: system,
        }),
        tools,
        tool_config: request.tool_choice.map(tool_config),
        generation_config: (generation_config != GenerationConfig::default())
            .then_some(generation_config),
    })
}

fn user_parts(content: &Content, index: usize) -> Result<Vec<GPart>, ApiError> {
    content
        .parts()
        .into_iter()
        .map(|part| match part {
            Part::Text { text, .. } => Ok(GPart { text: Some(text), ..GPart::default() }),
            Part::ImageUrl { image_url, .. } => Ok(match image_url.as_data() {
                Some((mime, data)) => GPart { inline_data: Some(json!({"mimeType": mime, "data": data})), ..GPart::default() },
                None => GPart { file_data: Some(json!({"mimeType": guess_image_type(&image_url.url), "fileUri": image_url.url})), ..GPart::default() },
            }),
            Part::Unsupported => Err(ApiError::invalid(
                "this content part type is not supported by provider type gemini",
                Some(&format!("messages[{index}].content")),
            )),
        })
        .collect()
}

fn guess_image_type(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    }
}

fn tool_config(choice: ToolChoice) -> Value {
    let config = match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            _ => json!({"mode": "AUTO"}),
        },
        ToolChoice::Named { function } => {
            json!({"mode": "ANY", "allowedFunctionNames": [function.name]})
        }
    };
    json!({"functionCallingConfig": config})
}

/// A `generateContent` response (also each streamed chunk).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// Candidates.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Token usage.
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    /// Model that answered.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Response id.
    #[serde(default)]
    pub response_id: Option<String>,
}

/// One candidate.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Content.
    #[serde(default)]
    pub content: Option<GContent>,
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Candidate index.
    #[serde(default)]
    pub index: Option<u32>,
}

/// Gemini usage.
#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_token_count: u64,
    /// Answer tokens.
    #[serde(default)]
    pub candidates_token_count: u64,
    /// Cached prompt tokens.
    #[serde(default)]
    pub cached_content_token_count: u64,
    /// Thinking tokens.
    #[serde(default)]
    pub thoughts_token_count: u64,
    /// Prompt tokens of tool results (billed as input, outside `promptTokenCount`).
    #[serde(default)]
    pub tool_use_prompt_token_count: u64,
}

impl UsageMetadata {
    /// OpenAI usage: completion tokens include thinking tokens.
    pub fn to_openai(self) -> UsageOut {
        let completion = self.candidates_token_count + self.thoughts_token_count;
        UsageOut::new(
            self.prompt_token_count + self.tool_use_prompt_token_count,
            completion,
            self.cached_content_token_count,
            self.thoughts_token_count,
        )
    }
}

/// Maps `finishReason` (and whether the turn called functions) to `finish_reason`.
pub fn finish_reason(reason: Option<&str>, called_functions: bool) -> &'static str {
    if called_functions {
        return "tool_calls";
    }
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => "content_filter",
        _ => "stop",
    }
}

/// A tool-call id for a function call: the model's own id, else one made from its position.
pub fn call_id(call: &GFunctionCall, position: usize) -> String {
    call.id
        .clone()
        .unwrap_or_else(|| format!("call_{position}_{}", call.name))
}

/// Translates a JSON response.
pub fn to_openai_completion(
    body: &[u8],
    model: &str,
    created: u64,
) -> Result<(Vec<u8>, UsageOut), serde_json::Error> {
    let response: GenerateContentResponse = serde_json::from_slice(body)?;
    let id = response
        .response_id
        .clone()
        .unwrap_or_else(|| format!("chatcmpl-gemini-{created}"));
    let choices = response
        .candidates
        .iter()
        .enumerate()
        .map(|(i, candidate)| {
            let parts = candidate
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or_default();
            let text_of = |thought: bool| -> String {
                parts
                    .iter()
                    .filter(|p| (p.thought == Some(true)) == thought)
                    .filter_map(|p| p.text.as_deref())
                    .collect()
            };
            let (text, reasoning) = (text_of(false), text_of(true));
            let tool_calls: Vec<ToolCall> = parts
                .iter()
                .filter_map(|p| p.function_call.as_ref())
                .enumerate()
                .map(|(n, call)| {
                    ToolCall::function(call_id(call, n), call.name.clone(), &call.args)
                })
                .collect();
            let finish = finish_reason(candidate.finish_reason.as_deref(), !tool_calls.is_empty());
            CompletionChoice {
                index: candidate.index.unwrap_or(u32::try_from(i).unwrap_or(0)),
                message: AssistantMessage::new(text, tool_calls)
                    .with_reasoning(reasoning, String::new()),
                logprobs: None,
                finish_reason: Some(finish),
            }
        })
        .collect();
    let usage = response.usage_metadata.unwrap_or_default().to_openai();
    let model = response.model_version.as_deref().unwrap_or(model);
    let completion = Completion {
        id: &id,
        object: "chat.completion",
        created,
        model,
        choices,
        usage,
    };
    Ok((serde_json::to_vec(&completion)?, usage))
}
