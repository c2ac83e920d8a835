//! Admission reserves what a request may really use (L4 in `docs/testing.md`): every
//! completion of `n`, every prompt field (tools, functions, response format, Anthropic's
//! `system`), and a completion cap bounded by the catalogue's `maxOutputTokens`, or equal to it
//! when the client sets none. Read through the `x-ratelimit-remaining-tokens` header of a fresh
//! bucket: remaining = limit − reservation.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::manifests::{caller_key, join, routes, upstream_provider};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

const LIMIT: i64 = 100_000;

/// Tokens the request reserved, read from a fresh gateway's bucket.
async fn reserved(upstream: &MockUpstream, path: &str, body: Value) -> i64 {
    let key = new_key();
    let model = "  models: [{name: upstream-model, maxOutputTokens: 3000}]";
    let config = join(&[
        upstream_provider("upstream", &upstream.base_url, "sk-upstream-secret", model),
        routes(&[("up", "upstream", "upstream-model")]),
        caller_key(&key, ", limits: {tokensPerMinute: 100000}"),
    ]);
    let gateway = Gateway::start(&config, key.clone(), &[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}{path}", gateway.url))
        .bearer_auth(&key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let remaining: i64 = response.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    LIMIT - remaining
}

/// Prompt tokens estimated for `bytes` of input JSON (about four bytes a token).
fn prompt(bytes: usize) -> i64 {
    bytes.div_ceil(4) as i64
}

fn assert_about(actual: i64, expected: i64) {
    // The bucket's remaining count is floored from a float clock: allow one token.
    assert!(
        (actual - expected).abs() <= 1,
        "reserved {actual}, expected {expected}"
    );
}

#[tokio::test]
async fn every_completion_of_n_is_reserved() {
    let upstream = MockUpstream::start().await;
    let body = json!({"model": "up", "n": 4, "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello"}]});
    let took = reserved(&upstream, "/v1/chat/completions", body).await;
    assert_about(took, prompt(7) + 4 * 100);
}

#[tokio::test]
async fn tools_and_response_format_count_as_prompt() {
    let upstream = MockUpstream::start().await;
    let tools = json!([{"type": "function", "function": {"name": "lookup",
        "description": "x".repeat(4000), "parameters": {"type": "object", "properties": {}}}}]);
    let format = json!({"type": "json_object"});
    let extra = tools.to_string().len() + format.to_string().len();
    let body = json!({"model": "up", "max_tokens": 10, "tools": tools, "response_format": format,
        "messages": [{"role": "user", "content": "hello"}]});
    let took = reserved(&upstream, "/v1/chat/completions", body).await;
    assert_about(took, prompt(7 + extra) + 10);
}

#[tokio::test]
async fn anthropic_system_and_tools_count_as_prompt() {
    let upstream = MockUpstream::start().await;
    let system = json!("s".repeat(2000));
    let tools = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let extra = system.to_string().len() + tools.to_string().len();
    let body = json!({"model": "up", "max_tokens": 10, "system": system, "tools": tools,
        "messages": [{"role": "user", "content": "hello"}]});
    let took = reserved(&upstream, "/v1/messages", body).await;
    assert_about(took, prompt(7 + extra) + 10);
}

#[tokio::test]
async fn the_catalogue_maximum_caps_and_defaults_the_completion_reserve() {
    let upstream = MockUpstream::start().await;
    let unset = json!({"model": "up", "messages": [{"role": "user", "content": "hello"}]});
    let took = reserved(&upstream, "/v1/chat/completions", unset).await;
    assert_about(took, prompt(7) + 3000);
    let above = json!({"model": "up", "max_tokens": 5000,
        "messages": [{"role": "user", "content": "hello"}]});
    let took = reserved(&upstream, "/v1/chat/completions", above).await;
    assert_about(took, prompt(7) + 3000);
}
