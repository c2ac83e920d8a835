//! The token details a client reads in its own protocol when the gateway translates (OpenAI
//! `prompt_tokens_details` / `completion_tokens_details`, Anthropic `cache_read_input_tokens`
//! and `cache_creation_input_tokens`, Responses `input_tokens_details` /
//! `output_tokens_details`), in JSON and in streams, and the spend of the same turns at
//! `/v1/usage` and in the chargeback metrics, to the nano-dollar.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::priced::{
    CLAUDE_TURN, GEMINI_PLAIN_TURN, GEMINI_TURN, REASONER_TURN, config, nanos, settled,
};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// The usage the client was told: a JSON reply's, or the last a stream reported (Anthropic's
/// `message_delta` completes `message_start`'s).
async fn client_usage(gateway: &Gateway, path: &str, body: Value) -> Value {
    let response = gateway.post(path, body).await;
    assert_eq!(response.status(), 200, "{path}");
    let text = response.text().await.unwrap();
    if !text.starts_with("event:") && !text.starts_with("data:") {
        let reply: Value = serde_json::from_str(&text).unwrap();
        return reply["usage"].clone();
    }
    let mut usage = json!({});
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            continue; // [DONE]
        };
        let found = match event["type"].as_str() {
            Some("message_start") => &event["message"]["usage"],
            Some("message_delta") => &event["usage"],
            Some("response.completed") => &event["response"]["usage"],
            _ => &event["usage"],
        };
        if let Some(fields) = found.as_object() {
            for (name, value) in fields {
                usage[name] = value.clone();
            }
        }
    }
    usage
}

fn messages(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Fix the bug."}]})
}

fn responses(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "input": "Think.", "reasoning": {"summary": "auto"}})
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Think."}]})
}

/// An OpenAI client marking its instructions for the prompt cache (Claude answers with the
/// cached turn).
fn agent_chat(stream: bool) -> Value {
    let cached = json!([{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}]);
    json!({"model": "claude", "stream": stream, "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": cached}, {"role": "user", "content": "Fix the bug."}]})
}

/// Claude's answer to a prompt without cache breakpoints: 21 uncached input tokens at $3,
/// 4 read from the cache at $0.30 and 9 output at $15 per million.
const CLAUDE_PLAIN_TURN: i64 = 21 * 3_000 + 4 * 300 + 9 * 15_000;

async fn gateway(mock: &MockUpstream) -> Gateway {
    let root = mock.base_url.trim_end_matches("/v1").to_owned();
    let key = new_key();
    let env = [("MOCK_PROVIDER_KEY", "mock-provider-secret")];
    Gateway::start(&config(&root, &key), key, &env).await
}

#[tokio::test]
async fn translated_usage_reaches_each_client_in_its_own_fields() {
    let mock = MockUpstream::start().await;
    let gateway = gateway(&mock).await;
    let mut billed = 0;
    for stream in [false, true] {
        // An Anthropic client of OpenAI: input_tokens is the uncached part.
        let usage = client_usage(&gateway, "/v1/messages", messages("reasoner", stream)).await;
        assert_eq!(usage["input_tokens"], 176, "stream {stream}: {usage}");
        assert_eq!(usage["cache_read_input_tokens"], 1024, "{usage}");
        assert_eq!(usage["output_tokens"], 60, "{usage}");
        // An Anthropic client of Gemini.
        let usage = client_usage(&gateway, "/v1/messages", messages("gemini", stream)).await;
        assert_eq!(usage["input_tokens"], 14, "stream {stream}: {usage}");
        assert_eq!(usage["cache_read_input_tokens"], 3, "{usage}");
        // A Responses client of Claude: input_tokens counts the cache, the details split it.
        let usage = client_usage(&gateway, "/v1/responses", responses("claude", stream)).await;
        assert_eq!(usage["input_tokens"], 25, "stream {stream}: {usage}");
        assert_eq!(usage["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(usage["output_tokens"], 9);
        // A Responses client of Gemini, thinking.
        let usage = client_usage(&gateway, "/v1/responses", responses("gemini", stream)).await;
        assert_eq!(usage["input_tokens"], 17, "stream {stream}: {usage}");
        assert_eq!(usage["input_tokens_details"]["cached_tokens"], 3);
        assert_eq!(usage["output_tokens"], 20);
        assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 12);
        // An OpenAI client of Claude and of Gemini.
        let usage = client_usage(&gateway, "/v1/chat/completions", agent_chat(stream)).await;
        assert_eq!(usage["prompt_tokens"], 10_000, "stream {stream}: {usage}");
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 9_000);
        let usage = client_usage(&gateway, "/v1/chat/completions", chat("gemini", stream)).await;
        assert_eq!(usage["prompt_tokens"], 17, "stream {stream}: {usage}");
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3);
        billed += REASONER_TURN + GEMINI_PLAIN_TURN + CLAUDE_PLAIN_TURN + GEMINI_TURN;
        billed += CLAUDE_TURN + GEMINI_PLAIN_TURN;
    }
    // What the clients were told is what they were billed.
    let usage = settled(&gateway, 12).await;
    assert_eq!(nanos(&usage), billed);
    let gemini = 2 * (2 * GEMINI_PLAIN_TURN + GEMINI_TURN);
    let text = gateway
        .metrics_when(|text| nanos_of(text, &spend_series("gemini", "gemini")) == Some(gemini))
        .await;
    let spend = |model: &str, provider: &str| nanos_of(&text, &spend_series(model, provider));
    assert_eq!(spend("reasoner", "openai"), Some(2 * REASONER_TURN));
    assert_eq!(
        spend("claude", "claude"),
        Some(2 * (CLAUDE_TURN + CLAUDE_PLAIN_TURN))
    );
    // The reasoner's spend by kind: reasoning at the output price, apart from the answer, and
    // the kinds adding up to the total (nothing counted twice).
    let kind = |kind: &str| {
        let series = format!(
            r#"llm_spend_by_kind_usd_total{{namespace="default",owner="team-a",model="reasoner",provider="openai",kind="{kind}"}} "#
        );
        nanos_of(&text, &series).unwrap_or(0)
    };
    assert_eq!(kind("reasoning"), 2 * 40 * 10_000, "reasoning at $10");
    assert_eq!(
        kind("output"),
        2 * 20 * 10_000,
        "the answer without reasoning"
    );
    let kinds: i64 = ["input", "cache_read", "cache_write", "output", "reasoning"]
        .into_iter()
        .map(kind)
        .sum();
    assert_eq!(kinds, 2 * REASONER_TURN);
}

fn spend_series(model: &str, provider: &str) -> String {
    format!(
        r#"llm_spend_usd_total{{namespace="default",owner="team-a",model="{model}",provider="{provider}"}} "#
    )
}

/// The value of the series whose line starts with `series`, in nano-dollars.
fn nanos_of(text: &str, series: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with(series))?;
    let usd: f64 = line.rsplit(' ').next()?.parse().ok()?;
    Some((usd * 1e9).round() as i64)
}
