//! A gateway priced like the providers' invoices: Claude Sonnet 4.5, an OpenAI reasoning
//! model and Gemini 2.5 Flash at their list prices for every token kind, behind one caller
//! key, and what one turn on each costs (the mock upstream reports fixed usage).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Gateway;
use super::manifests::{caller_key, join};

/// Anthropic's, OpenAI's and Google's list prices for the three models (US dollars per
/// million tokens).
pub fn config(mock: &str, key: &str) -> String {
    let provider = |name: &str, spec: &str, model: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}}}\nspec: {{{spec}, allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}, models: [{model}]}}\n"
        )
    };
    join(&[
        provider(
            "claude",
            &format!("type: anthropic, baseUrl: \"{mock}\""),
            "{name: claude-sonnet-4-5, inputPerMillionUsd: 3, outputPerMillionUsd: 15, cacheReadPerMillionUsd: 0.3, cacheWritePerMillionUsd: 3.75, cacheWrite1hPerMillionUsd: 6}",
        ),
        provider(
            "openai",
            &format!("type: openai, baseUrl: \"{mock}/v1\""),
            "{name: smart-reasoner, inputPerMillionUsd: 1.25, outputPerMillionUsd: 10, cacheReadPerMillionUsd: 0.125}",
        ),
        provider(
            "gemini",
            &format!("type: gemini, baseUrl: \"{mock}\""),
            "{name: gemini-2.5-flash, inputPerMillionUsd: 0.3, outputPerMillionUsd: 2.5, cacheReadPerMillionUsd: 0.075}",
        ),
        r#"apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: routes}
spec:
  routes:
  - {model: claude, targets: [{provider: claude, model: claude-sonnet-4-5}]}
  - {model: reasoner, targets: [{provider: openai, model: smart-reasoner}]}
  - {model: gemini, targets: [{provider: gemini, model: gemini-2.5-flash}]}
"#
        .to_owned(),
        caller_key(key, ""),
    ])
}

/// One agent turn's bill at Claude Sonnet 4.5's prices: 50 uncached input tokens at $3,
/// 9000 cache reads at $0.30, 700 five-minute writes at $3.75, 250 one-hour writes at $6 and
/// 9 output tokens at $15 per million, in nano-dollars.
pub const CLAUDE_TURN: i64 = 50 * 3_000 + 9_000 * 300 + 700 * 3_750 + 250 * 6_000 + 9 * 15_000;
/// 176 uncached input tokens at $1.25, 1024 cached at $0.125 and 60 output (40 of them
/// reasoning) at $10 per million.
pub const REASONER_TURN: i64 = 176 * 1_250 + 1_024 * 125 + 60 * 10_000;
/// 14 uncached input tokens at $0.30, 3 cached at $0.075 and 20 output (12 of them thoughts)
/// at $2.50 per million.
pub const GEMINI_TURN: i64 = 14 * 300 + 3 * 75 + 20 * 2_500;

/// Waits until `requests` requests were settled, and returns the usage then.
pub async fn settled(gateway: &Gateway, requests: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage = gateway.usage().await;
        if usage["requests"] == requests {
            return usage;
        }
        assert!(Instant::now() < deadline, "not settled: {usage}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn nanos(usage: &Value) -> i64 {
    (usage["spend_usd"].as_f64().unwrap() * 1e9).round() as i64
}

pub async fn send(gateway: &Gateway, path: &str, body: Value) {
    let response = gateway.post(path, body).await;
    assert_eq!(response.status(), 200);
    // The whole body, so a stream's usage is read and the request settles.
    response.bytes().await.unwrap();
}

/// A Gemini turn that does not think: 14 uncached, 3 cached and 8 output tokens.
pub const GEMINI_PLAIN_TURN: i64 = 14 * 300 + 3 * 75 + 8 * 2_500;
