//! Spend that matches the invoice: each token kind a provider bills apart (uncached input,
//! cache reads, 5-minute and 1-hour cache writes, output with reasoning) priced at its own
//! rate, in Redis and at `/v1/usage`, to the nano-dollar, for a Claude-Code-like conversation
//! (mostly cache reads) through `/v1/messages` passed through and through the translated
//! OpenAI path, streamed and not, and for OpenAI cached input with reasoning and Gemini
//! thoughts.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::manifests::{caller_key, join};
use common::priced::{CLAUDE_TURN, GEMINI_TURN, REASONER_TURN, config, nanos, send, settled};
use common::redis_server::RedisServer;
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// What a coding agent sends: long, stable instructions marked for the prompt cache.
fn agent_turn(path: &str, stream: bool) -> Value {
    let cached = json!([{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}]);
    if path == "/v1/messages" {
        json!({"model": "claude", "max_tokens": 64, "stream": stream, "system": cached,
            "messages": [{"role": "user", "content": "Fix the bug."}]})
    } else {
        json!({"model": "claude", "stream": stream, "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": cached}, {"role": "user", "content": "Fix the bug."}]})
    }
}

#[tokio::test]
async fn every_token_kind_is_billed_at_its_own_price() {
    let redis = RedisServer::start().await;
    let mock = MockUpstream::start().await;
    let root = mock.base_url.trim_end_matches("/v1").to_owned();
    let key = new_key();
    let env = [
        ("REDIS_URL", redis.url()),
        ("MOCK_PROVIDER_KEY", "mock-provider-secret".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = Gateway::start(&config(&root, &key), key, &env).await;

    let mut turns = 0;
    for path in ["/v1/messages", "/v1/chat/completions"] {
        for stream in [false, true] {
            send(&gateway, path, agent_turn(path, stream)).await;
            turns += 1;
            let usage = settled(&gateway, turns).await;
            assert_eq!(
                nanos(&usage),
                CLAUDE_TURN * turns as i64,
                "{path} stream {stream}"
            );
        }
    }
    let usage = settled(&gateway, 4).await;
    assert_eq!(usage["input_tokens"], 4 * 10_000);
    assert_eq!(usage["cache_read_tokens"], 4 * 9_000);
    assert_eq!(usage["cache_write_tokens"], 4 * 950);
    let sent = mock.requests();
    let translated = sent
        .iter()
        .rev()
        .find(|r| r.path == "/v1/messages")
        .unwrap();
    assert_eq!(
        translated.body["system"][0]["cache_control"]["type"],
        "ephemeral"
    );

    for stream in [false, true] {
        let ask = json!({"model": "reasoner", "stream": stream, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Think."}]});
        send(&gateway, "/v1/chat/completions", ask).await;
    }
    let ask = json!({"model": "gemini", "input": "Think.", "reasoning": {"summary": "auto"}});
    send(&gateway, "/v1/responses", ask).await;
    let usage = settled(&gateway, 7).await;
    let expected = 4 * CLAUDE_TURN + 2 * REASONER_TURN + GEMINI_TURN;
    assert_eq!(nanos(&usage), expected);
    assert_eq!(usage["reasoning_tokens"], 2 * 40 + 12);
    assert_eq!(usage["cache_read_tokens"], 4 * 9_000 + 2 * 1_024 + 3);

    // Redis holds the same, as integers.
    let keys = redis.query(&["KEYS", "*:usage:*"]).await.unwrap();
    let redis::Value::Array(keys) = keys else {
        panic!("{keys:?}")
    };
    let [redis::Value::BulkString(key)] = keys.as_slice() else {
        panic!("one usage hash: {keys:?}")
    };
    let key = String::from_utf8_lossy(key).into_owned();
    assert_eq!(redis.hash_field(&key, "spend_nanos").await, expected);
    assert_eq!(redis.hash_field(&key, "cache_write_tokens").await, 4 * 950);

    // Chargeback metrics: the same spend, by namespace, owner, model, provider and kind
    // (counted just after each settlement, so wait for the last request's).
    let text = gateway
        .metrics_when(|text| text.contains(r#"model="gemini",provider="gemini""#))
        .await;
    let value = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series));
        let line = line.unwrap_or_else(|| panic!("{series} missing from\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let claude = r#"namespace="default",owner="team-a",model="claude",provider="claude""#;
    let spend = value(&format!("llm_spend_usd_total{{{claude}}}"));
    assert_eq!((spend * 1e9).round() as i64, 4 * CLAUDE_TURN);
    let kind = |kind: &str| {
        value(&format!(
            "llm_billed_tokens_total{{{claude},kind=\"{kind}\"}}"
        ))
    };
    // The spend split the same way: each kind at its own price, adding up to the total.
    let spent = |kind: &str| {
        let usd = value(&format!(
            "llm_spend_by_kind_usd_total{{{claude},kind=\"{kind}\"}}"
        ));
        (usd * 1e9).round() as i64
    };
    assert_eq!(spent("cache_read"), 4 * 9_000 * 300);
    assert_eq!(spent("cache_write"), 4 * (700 * 3_750 + 250 * 6_000));
    let kinds: i64 = ["input", "cache_read", "cache_write", "output"]
        .into_iter()
        .map(spent)
        .sum();
    assert_eq!(kinds, 4 * CLAUDE_TURN);
    assert_eq!(kind("cache_read"), 36_000.0);
    assert_eq!(kind("cache_write"), 3_800.0);
    assert_eq!(kind("input"), 200.0);
    let reasoner =
        r#"namespace="default",owner="team-a",model="reasoner",provider="openai",kind="reasoning""#;
    assert_eq!(
        value(&format!("llm_billed_tokens_total{{{reasoner}}}")),
        80.0
    );
}

/// An LlmProvider that opts into the built-in catalogue, listing no prices itself.
fn catalogue_config(mock: &str, key: &str, budget: &str) -> String {
    join(&[
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: claude}}\nspec: {{type: anthropic, baseUrl: \"{mock}\", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}, priceCatalogue: true}}\n"
        ),
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: routes}\nspec:\n  routes:\n  - {model: claude, targets: [{provider: claude, model: claude-sonnet-4-5}]}\n".to_owned(),
        caller_key(key, budget),
    ])
}

#[tokio::test]
async fn the_price_catalogue_bills_a_provider_that_lists_no_prices() {
    let mock = MockUpstream::start().await;
    let root = mock.base_url.trim_end_matches("/v1").to_owned();
    let key = new_key();
    let env = [("MOCK_PROVIDER_KEY", "mock-provider-secret")];
    let text = catalogue_config(&root, &key, ", budget: {usd: 10, period: monthly}");
    let gateway = Gateway::start(&text, key, &env).await;
    send(&gateway, "/v1/messages", agent_turn("/v1/messages", false)).await;
    // The catalogue lists Claude Sonnet 4.5 at the prices the hand-computed turn uses.
    assert_eq!(nanos(&settled(&gateway, 1).await), CLAUDE_TURN);
}

#[test]
fn check_warns_when_a_budget_cannot_count_a_routes_spend() {
    let check = |opted_in: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut text = catalogue_config(
            "https://api.anthropic.com",
            &new_key(),
            ", budget: {usd: 10, period: monthly}",
        );
        if !opted_in {
            text = text.replace(", priceCatalogue: true", "");
        }
        std::fs::write(dir.path().join("gateway.yaml"), text).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
            .args(["check", "--config", dir.path().to_str().unwrap()])
            .env("API_KEY_PEPPER", common::TEST_PEPPER)
            .env("MOCK_PROVIDER_KEY", "x")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let warned = check(false);
    assert!(
        warned.contains("warning: route claude target claude/claude-sonnet-4-5 has no price"),
        "{warned}"
    );
    assert!(!check(true).contains("warning"));
}

#[tokio::test]
async fn a_claude_stream_cut_short_bills_what_it_delivered() {
    use futures_util::StreamExt;
    let mock = MockUpstream::start().await;
    mock.set_fault(llm_gateway_mock_upstream::Fault {
        chunk_gap: Duration::from_millis(30),
        ..Default::default()
    });
    let root = mock.base_url.trim_end_matches("/v1").to_owned();
    let key = new_key();
    let env = [("MOCK_PROVIDER_KEY", "mock-provider-secret")];
    let gateway = Gateway::start(&catalogue_config(&root, &key, ""), key, &env).await;
    let turns = [
        (
            "/v1/messages",
            json!({"model": "claude", "max_tokens": 64, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    for (done, (path, body)) in turns.into_iter().enumerate() {
        let response = gateway.post(path, body).await;
        let mut stream = response.bytes_stream();
        let mut seen = String::new();
        // Two pieces of the answer, then the client leaves: the upstream never reports output.
        while !seen.contains("om the m") {
            seen.push_str(&String::from_utf8_lossy(
                &stream.next().await.unwrap().unwrap(),
            ));
        }
        drop(stream);
        let usage = settled(&gateway, done as u64 + 1).await;
        let output = usage["output_tokens"].as_u64().unwrap();
        assert!(
            output >= 2 * (done as u64 + 1),
            "{path}: billed {output} output tokens, delivered at least 2"
        );
    }
}
