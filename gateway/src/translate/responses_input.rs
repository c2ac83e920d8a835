//! Responses input items as hub messages: message items keep their role, their
//! `input_text`/`output_text` parts become text and `input_image` URLs `image_url` parts;
//! consecutive `function_call` items become one assistant turn's `tool_calls` and
//! `function_call_output` items `tool` messages; a `reasoning` item the gateway produced from
//! Anthropic thinking (its signature in `encrypted_content`) opens the next assistant turn as
//! signed reasoning, any other reasoning item is dropped (it is the upstream's own, encrypted
//! or summarised).

use serde_json::Value;

use super::openai_types::{
    Content, FunctionCall, ImageUrl, Message, Part, SignedReasoning, ToolCall,
};
use super::responses::refused;
use super::responses_reply::ANTHROPIC_SIGNATURE;
use crate::error::ApiError;

/// Appends the hub message(s) of input item `index`.
pub(super) fn push_item(
    messages: &mut Vec<Message>,
    item: Value,
    index: usize,
) -> Result<(), ApiError> {
    let param = format!("input[{index}]");
    let kind = item["type"]
        .as_str()
        .unwrap_or(if item.get("role").is_some() {
            "message"
        } else {
            ""
        });
    match kind {
        "message" => {
            let message = message(&item, &param)?;
            match (messages.last_mut(), message) {
                // The answer that followed signed reasoning: one assistant turn.
                (
                    Some(Message::Assistant {
                        content: turn @ None,
                        tool_calls: None,
                        reasoning: Some(_),
                    }),
                    Message::Assistant { content, .. },
                ) => *turn = content,
                (_, message) => messages.push(message),
            }
        }
        "function_call" => {
            let field = |name: &str| {
                item[name].as_str().map(str::to_owned).ok_or_else(|| {
                    refused(
                        format!("'{name}' must be a string"),
                        &format!("{param}.{name}"),
                    )
                })
            };
            let call = ToolCall {
                id: field("call_id")?,
                call_type: "function".into(),
                function: FunctionCall {
                    name: field("name")?,
                    arguments: field("arguments")?,
                },
            };
            match messages.last_mut() {
                Some(Message::Assistant {
                    tool_calls: Some(calls),
                    ..
                }) => calls.push(call),
                Some(Message::Assistant { tool_calls, .. }) => *tool_calls = Some(vec![call]),
                _ => messages.push(Message::Assistant {
                    content: None,
                    tool_calls: Some(vec![call]),
                    reasoning: None,
                }),
            }
        }
        "function_call_output" => {
            let call_id = item["call_id"].as_str().filter(|id| !id.is_empty());
            let call_id = call_id.ok_or_else(|| {
                refused(
                    "'call_id' must name the call answered",
                    &format!("{param}.call_id"),
                )
            })?;
            messages.push(Message::Tool {
                content: Content::Text(output_text(&item["output"], &param)?),
                tool_call_id: call_id.to_owned(),
            });
        }
        "reasoning" => {
            if let Some(reasoning) = signed_reasoning(&item) {
                messages.push(Message::Assistant {
                    content: None,
                    tool_calls: None,
                    reasoning: Some(reasoning),
                });
            }
        }
        other => {
            return Err(refused(
                format!("input items of type '{other}' cannot be sent to this route's provider"),
                &format!("{param}.type"),
            ));
        }
    }
    Ok(())
}

/// A message item as a hub message.
fn message(item: &Value, param: &str) -> Result<Message, ApiError> {
    let content = match &item["content"] {
        Value::String(text) => Content::Text(text.clone()),
        Value::Array(parts) => Content::Parts(
            parts
                .iter()
                .enumerate()
                .map(|(i, part)| content_part(part, &format!("{param}.content[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            let param = format!("{param}.content");
            return Err(refused("'content' must be a string or a list", &param));
        }
    };
    match item["role"].as_str() {
        Some("user") => Ok(Message::User { content }),
        Some("assistant") => Ok(Message::Assistant {
            content: Some(Content::Text(content.text())),
            tool_calls: None,
            reasoning: None,
        }),
        Some("system") => Ok(Message::System { content }),
        Some("developer") => Ok(Message::Developer { content }),
        _ => Err(refused(
            "'role' must be user, assistant, system or developer",
            &format!("{param}.role"),
        )),
    }
}

fn content_part(part: &Value, param: &str) -> Result<Part, ApiError> {
    match part["type"].as_str() {
        Some("input_text" | "output_text") => Ok(Part::text(
            part["text"].as_str().unwrap_or_default().to_owned(),
        )),
        Some("refusal") => Ok(Part::text(
            part["refusal"].as_str().unwrap_or_default().to_owned(),
        )),
        Some("input_image") => match part["image_url"].as_str() {
            Some(url) => Ok(Part::ImageUrl {
                image_url: ImageUrl {
                    url: url.to_owned(),
                    detail: part["detail"].as_str().map(str::to_owned),
                },
                cache_control: None,
            }),
            None => Err(refused(
                "images by 'file_id' cannot be sent to this route's provider; send 'image_url'",
                param,
            )),
        },
        other => Err(refused(
            format!(
                "content parts of type '{}' cannot be sent to this route's provider",
                other.unwrap_or("(none)")
            ),
            &format!("{param}.type"),
        )),
    }
}

/// A `function_call_output`'s `output`: a string, or text parts joined; images and files in
/// it are refused rather than dropped (a chat tool message carries text only).
fn output_text(output: &Value, param: &str) -> Result<String, ApiError> {
    Ok(match output {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (index, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("input_text" | "output_text") | None, Some(text)) => texts.push(text),
                    _ => {
                        return Err(refused(
                            "only text tool outputs can be sent to this route's provider",
                            &format!("{param}.output[{index}]"),
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// The signed reasoning of a `reasoning` item the gateway made of Anthropic thinking: its
/// summary text, and the signature behind the gateway's mark in `encrypted_content`.
fn signed_reasoning(item: &Value) -> Option<SignedReasoning> {
    let signature = item["encrypted_content"]
        .as_str()?
        .strip_prefix(ANTHROPIC_SIGNATURE)?;
    let text = item["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .collect();
    Some(SignedReasoning {
        text,
        signature: signature.to_owned(),
    })
}
