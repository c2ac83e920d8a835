//! Token counts an upstream reported, by the kinds providers bill apart: input (cache reads
//! and writes among it), output (reasoning among it). Read from the usage object of every API
//! the gateway relays: OpenAI chat (`prompt_tokens`, `prompt_tokens_details.cached_tokens`,
//! `completion_tokens_details.reasoning_tokens`), OpenAI Responses (`input_tokens` with
//! `input_tokens_details`, `output_tokens_details`) and Anthropic (`input_tokens` without the
//! cache, `cache_read_input_tokens`, `cache_creation_input_tokens` split into 5-minute and
//! 1-hour writes by `cache_creation`).

use serde::Deserialize;
use serde_json::Value;

/// Token counts of one upstream call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens, cached and cache-writing ones included.
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    pub completion_tokens: u64,
    /// Of the input, tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of the input, tokens written to the prompt cache for five minutes (Anthropic's
    /// default; the only kind other providers have).
    pub cache_write_tokens: u64,
    /// Of the input, tokens written to the prompt cache for an hour (Anthropic).
    pub cache_write_1h_tokens: u64,
    /// Of the output, reasoning tokens.
    pub reasoning_tokens: u64,
}

impl TokenUsage {
    /// Input and output only.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            ..Self::default()
        }
    }

    /// Input tokens billed at the plain input price: neither read from nor written to a cache.
    pub fn uncached_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
            .saturating_sub(self.cache_write_1h_tokens)
    }

    /// Reads a `usage` object in OpenAI chat, OpenAI Responses or Anthropic shape.
    pub fn from_json(usage: &Value) -> Option<Self> {
        let count = |path: &str| usage.pointer(path).and_then(Value::as_u64).unwrap_or(0);
        if usage.get("prompt_tokens").is_some_and(Value::is_u64) {
            return Some(Self {
                prompt_tokens: count("/prompt_tokens"),
                completion_tokens: count("/completion_tokens"),
                cache_read_tokens: count("/prompt_tokens_details/cached_tokens"),
                reasoning_tokens: count("/completion_tokens_details/reasoning_tokens"),
                ..Self::default()
            });
        }
        let (input, output) = (usage.get("input_tokens"), usage.get("output_tokens"));
        if !input.is_some_and(Value::is_u64) && !output.is_some_and(Value::is_u64) {
            return None;
        }
        let anthropic = ["cache_read_input_tokens", "cache_creation_input_tokens"]
            .iter()
            .any(|field| usage.get(*field).is_some());
        if !anthropic {
            // The Responses API: `input_tokens` counts cached ones too.
            return Some(Self {
                prompt_tokens: count("/input_tokens"),
                completion_tokens: count("/output_tokens"),
                cache_read_tokens: count("/input_tokens_details/cached_tokens"),
                reasoning_tokens: count("/output_tokens_details/reasoning_tokens"),
                ..Self::default()
            });
        }
        let written = count("/cache_creation_input_tokens");
        let hour = count("/cache_creation/ephemeral_1h_input_tokens").min(written);
        let read = count("/cache_read_input_tokens");
        Some(Self {
            prompt_tokens: count("/input_tokens") + read + written,
            completion_tokens: count("/output_tokens"),
            cache_read_tokens: read,
            cache_write_tokens: written - hour,
            cache_write_1h_tokens: hour,
            reasoning_tokens: 0,
        })
    }

    /// The larger of each count: streams report usage more than once (Anthropic's input at
    /// `message_start`, its output and the final input at `message_delta`), and counts only
    /// grow. Cache writes are merged as a total and its one-hour part, since a later report
    /// may give the total without the split.
    pub fn max(self, other: Self) -> Self {
        let written = |u: &Self| u.cache_write_tokens + u.cache_write_1h_tokens;
        let hour = self.cache_write_1h_tokens.max(other.cache_write_1h_tokens);
        let total = written(&self).max(written(&other)).max(hour);
        Self {
            prompt_tokens: self.prompt_tokens.max(other.prompt_tokens),
            completion_tokens: self.completion_tokens.max(other.completion_tokens),
            cache_read_tokens: self.cache_read_tokens.max(other.cache_read_tokens),
            cache_write_tokens: total - hour,
            cache_write_1h_tokens: hour,
            reasoning_tokens: self.reasoning_tokens.max(other.reasoning_tokens),
        }
    }
}

/// An OpenAI chat response or chunk that may carry usage, read without a JSON tree (the
/// pass-through hot path).
#[derive(Debug, Deserialize)]
pub struct UsageEnvelope {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

impl UsageEnvelope {
    /// The usage, when present and not null.
    pub fn usage(self) -> Option<TokenUsage> {
        self.usage.map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cache_read_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            reasoning_tokens: u
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
            ..TokenUsage::default()
        })
    }
}

#[derive(Debug, Deserialize)]
struct OpenAiUsage {
    #[serde(default, deserialize_with = "zero_if_null")]
    prompt_tokens: u64,
    #[serde(default, deserialize_with = "zero_if_null")]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default, deserialize_with = "zero_if_null")]
    cached_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct CompletionDetails {
    #[serde(default, deserialize_with = "zero_if_null")]
    reasoning_tokens: u64,
}

/// A count sent as `null` (some OpenAI-compatible servers do) reads as zero.
fn zero_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_api_reports_its_kinds() {
        let chat = json!({"prompt_tokens": 100, "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 80}, "completion_tokens_details": {"reasoning_tokens": 30}});
        let read = TokenUsage::from_json(&chat).unwrap();
        assert_eq!((read.cache_read_tokens, read.reasoning_tokens), (80, 30));
        assert_eq!(read.uncached_tokens(), 20);
        let envelope: UsageEnvelope = serde_json::from_value(json!({"usage": chat})).unwrap();
        assert_eq!(envelope.usage(), Some(read));

        let responses = json!({"input_tokens": 100, "output_tokens": 50,
            "input_tokens_details": {"cached_tokens": 80}, "output_tokens_details": {"reasoning_tokens": 30}});
        assert_eq!(TokenUsage::from_json(&responses), Some(read));

        let anthropic = json!({"input_tokens": 20, "output_tokens": 50, "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 80, "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 20}});
        let read = TokenUsage::from_json(&anthropic).unwrap();
        assert_eq!(read.prompt_tokens, 1000);
        assert_eq!(
            (read.cache_write_tokens, read.cache_write_1h_tokens),
            (60, 20)
        );
        assert_eq!(read.uncached_tokens(), 20);
        let older =
            json!({"input_tokens": 20, "output_tokens": 5, "cache_creation_input_tokens": 80});
        assert_eq!(
            TokenUsage::from_json(&older).unwrap().cache_write_tokens,
            80
        );
        assert_eq!(TokenUsage::from_json(&json!({"total": 3})), None);
    }

    #[test]
    fn a_later_report_without_the_split_adds_no_cache_write() {
        let start = json!({"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 80, "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 20}});
        let delta = json!({"input_tokens": 20, "output_tokens": 50, "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 80});
        let merged = TokenUsage::from_json(&start)
            .unwrap()
            .max(TokenUsage::from_json(&delta).unwrap());
        assert_eq!(
            (merged.cache_write_tokens, merged.cache_write_1h_tokens),
            (60, 20)
        );
        assert_eq!((merged.prompt_tokens, merged.completion_tokens), (1000, 50));
        assert_eq!(merged.uncached_tokens(), 20);
        let envelope: UsageEnvelope = serde_json::from_value(json!({"usage": {"prompt_tokens": 5,
            "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": null}}}))
        .unwrap();
        assert_eq!(
            envelope.usage().unwrap().cache_read_tokens,
            0,
            "null reads as zero"
        );
    }
}
