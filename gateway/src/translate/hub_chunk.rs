//! The hub's stream chunks (OpenAI `chat.completion.chunk`) as the translators to client
//! protocols read them. Lenient where servers differ: a field sent as `null` reads as absent
//! (OpenAI-compatible servers send `"delta": null` or `"tool_calls": null`), unknown fields
//! are ignored.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A field's value, or its default when it is absent or `null`.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One chunk.
#[derive(Debug, Default, Deserialize)]
pub struct HubChunk {
    /// The completion id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that answered (empty strings, as Azure's first chunk sends, are ignored).
    #[serde(default)]
    pub model: Option<String>,
    /// Choices; only choice 0 is translated (the client protocols have one answer).
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<HubChoice>,
    /// The usage report, on the last chunk.
    #[serde(default)]
    pub usage: Option<Value>,
}

impl HubChunk {
    /// The model, unless empty.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref().filter(|m| !m.is_empty())
    }

    /// Choice 0's parts of this chunk.
    pub fn first_choice(self) -> Option<HubChoice> {
        self.choices.into_iter().find(|c| c.index == 0)
    }
}

/// One choice of a chunk.
#[derive(Debug, Default, Deserialize)]
pub struct HubChoice {
    /// Which choice.
    #[serde(default, deserialize_with = "null_default")]
    pub index: u32,
    /// What this chunk adds.
    #[serde(default, deserialize_with = "null_default")]
    pub delta: HubDelta,
    /// Why generation stopped, on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a chunk adds to a choice.
#[derive(Debug, Default, Deserialize)]
pub struct HubDelta {
    /// Text.
    #[serde(default)]
    pub content: Option<String>,
    /// Refusal text.
    #[serde(default)]
    pub refusal: Option<String>,
    /// Tool call fragments.
    #[serde(default, deserialize_with = "null_default")]
    pub tool_calls: Vec<HubToolCall>,
    /// Reasoning text, as OpenAI-compatible servers (vLLM, DeepSeek) and the gateway's own
    /// translators name it.
    #[serde(default)]
    pub reasoning_content: Option<String>,
    /// Reasoning text under the newer name some servers use instead (vLLM, OpenRouter).
    #[serde(default)]
    pub reasoning: Option<String>,
    /// The signature Anthropic puts on its thinking (a gateway extension).
    #[serde(default)]
    pub reasoning_signature: Option<String>,
}

impl HubDelta {
    /// The reasoning text this chunk adds, under either name.
    pub fn reasoning_text(&mut self) -> Option<String> {
        let text = self.reasoning_content.take().or(self.reasoning.take());
        text.filter(|t| !t.is_empty())
    }
}

/// A fragment of one tool call.
#[derive(Debug, Default, Deserialize)]
pub struct HubToolCall {
    /// Which call of the turn.
    #[serde(default, deserialize_with = "null_default")]
    pub index: usize,
    /// The call id, on its first fragment.
    #[serde(default)]
    pub id: Option<String>,
    /// Name and argument text.
    #[serde(default, deserialize_with = "null_default")]
    pub function: HubFunction,
}

/// Name and argument text of a tool call fragment.
#[derive(Debug, Default, Deserialize)]
pub struct HubFunction {
    /// The function name, usually on the first fragment.
    #[serde(default)]
    pub name: Option<String>,
    /// More argument text.
    #[serde(default)]
    pub arguments: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_read_as_absent_and_other_choices_are_set_aside() {
        let chunk: HubChunk = serde_json::from_str(
            r#"{"id":"c","model":"","choices":[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a","tool_calls":null},"finish_reason":null}],"usage":null}"#,
        )
        .unwrap();
        assert_eq!(chunk.model(), None);
        let choice = chunk.first_choice().unwrap();
        assert_eq!(choice.delta.content.as_deref(), Some("a"));
        let empty: HubChunk =
            serde_json::from_str(r#"{"choices":[{"index":0,"delta":null}]}"#).unwrap();
        assert!(empty.first_choice().unwrap().delta.tool_calls.is_empty());
    }
}
