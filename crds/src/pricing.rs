//! What a model's tokens cost, by the kinds providers bill apart, and the other prices some
//! providers charge for a whole request once its prompt passes a size.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prices in US dollars per million tokens of each kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// Per million prompt tokens neither read from nor written to a cache.
    #[schemars(range(min = 0.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_per_million_usd: Option<f64>,
    /// Per million completion tokens (reasoning included).
    #[schemars(range(min = 0.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_per_million_usd: Option<f64>,
    /// Per million prompt tokens read from the provider's prompt cache (Anthropic cache
    /// reads, OpenAI and Gemini cached input). Default: the input price.
    #[schemars(range(min = 0.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_million_usd: Option<f64>,
    /// Per million prompt tokens written to the prompt cache (Anthropic's 5-minute writes).
    /// Default: the input price.
    #[schemars(range(min = 0.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_million_usd: Option<f64>,
    /// Per million prompt tokens written to the prompt cache for an hour (Anthropic).
    /// Default: the cache write price.
    #[schemars(range(min = 0.0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h_per_million_usd: Option<f64>,
}

impl Prices {
    /// The prices in field order: input, output, cache read, cache write, 1-hour cache write.
    pub fn in_order(&self) -> [Option<f64>; 5] {
        [
            self.input_per_million_usd,
            self.output_per_million_usd,
            self.cache_read_per_million_usd,
            self.cache_write_per_million_usd,
            self.cache_write_1h_per_million_usd,
        ]
    }
}

/// The prices of requests whose prompt (all input tokens, cached ones included) is larger
/// than `aboveInputTokens`; a price left out is the model's own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceTier {
    /// The prompt size these prices start above, in tokens.
    #[schemars(range(min = 1))]
    pub above_input_tokens: u64,
    /// The prices above it.
    #[serde(flatten)]
    pub prices: Prices,
}
