//! An LlmQuota's shared token and concurrency limits, held across the keys it selects (its
//! shared requests per minute and budget are in `quotas.rs`), and `llm-gateway check`
//! warning about an unpriced route when only a quota's budget applies.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::manifests::join;
use common::redis_server::RedisServer;
use common::{Gateway, new_key};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The ApiKey `name` of team `a`, with generous limits of its own, and its Secret.
fn key(name: &str, key: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}, labels: {{team: a}}}}\nspec: {{secretName: {name}-key, owner: {name}, limits: {{requestsPerMinute: 1000, tokensPerMinute: 1000000, maxConcurrent: 100}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key}}\nstringData: {{apiKey: {key}}}\n"
    )
}

/// A fake provider streaming sixty chunks a second apart (a stream outlives every wait of
/// these tests, so only a client leaving frees what it holds), a route to it, the keys, and
/// a quota of team `a` with `limits`.
fn config(keys: &[(&str, &str)], limits: &str) -> String {
    let mut parts = vec![
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: fake}\nspec: {type: fake, fake: {chunks: 60, chunkInterval: 1s}}\n".to_owned(),
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: routes}\nspec:\n  routes:\n  - {model: fake, targets: [{provider: fake}]}\n".to_owned(),
        format!("apiVersion: llmgateway.io/v1alpha1\nkind: LlmQuota\nmetadata: {{name: shared}}\nspec: {{callers: {{apiKeySelector: {{matchLabels: {{team: a}}}}}}, limits: {limits}}}\n"),
    ];
    parts.extend(keys.iter().map(|(name, secret)| key(name, secret)));
    join(&parts)
}

async fn post(url: &str, credential: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(credential)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn refusal(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
}

async fn gateway(text: &str, redis: &RedisServer) -> Gateway {
    let url = redis.url();
    Gateway::start(text, String::new(), &[("REDIS_URL", url.as_str())]).await
}

#[tokio::test]
async fn a_quota_s_concurrency_limit_is_shared_by_its_keys() {
    let redis = RedisServer::start().await;
    let (alice, bob) = (new_key(), new_key());
    let text = config(&[("alice", &alice), ("bob", &bob)], "{maxConcurrent: 2}");
    let gateway = gateway(&text, &redis).await;
    let stream =
        json!({"model": "fake", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    // Alice holds both of the quota's slots with two open streams (admitted: a first chunk).
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = post(&gateway.url, &alice, &stream).await;
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        body.next().await.unwrap().unwrap();
        open.push(body);
    }
    let message = refusal(post(&gateway.url, &bob, &stream).await).await;
    assert!(
        message.contains("limit of 2 concurrent requests reached for the LlmQuota default/shared"),
        "{message}"
    );
    // Alice leaves: her slots come back to the quota, and bob is served.
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = post(&gateway.url, &bob, &stream).await;
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slots never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_quota_s_token_limit_is_shared_by_its_keys() {
    let redis = RedisServer::start().await;
    let (alice, bob) = (new_key(), new_key());
    let text = config(
        &[("alice", &alice), ("bob", &bob)],
        "{tokensPerMinute: 300}",
    );
    let gateway = gateway(&text, &redis).await;
    // Each open stream holds its reservation (prompt and max_tokens) of the quota's 300 tokens
    // a minute until it settles at what it used. Two of about 145 leave about 10; a third
    // needs about 135 more, which the bucket refills in 27 s: a slow machine cannot get there.
    let stream = json!({"model": "fake", "stream": true, "max_tokens": 140,
        "messages": [{"role": "user", "content": "hi"}]});
    let mut open = Vec::new();
    let message = loop {
        let response = post(&gateway.url, &alice, &stream).await;
        if response.status() != 200 {
            break refusal(response).await;
        }
        let mut body = response.bytes_stream();
        body.next().await.unwrap().unwrap();
        open.push(body);
        assert!(open.len() < 4, "the quota's token limit never held");
    };
    assert_eq!(
        open.len(),
        2,
        "two reservations of about 105 tokens fit in 300"
    );
    assert!(
        message.contains("tokens per minute reached for the LlmQuota default/shared"),
        "{message}"
    );
    // Bob has sent nothing, and his own limit is far away: the shared bucket refuses him.
    let message = refusal(post(&gateway.url, &bob, &stream).await).await;
    assert!(message.contains("LlmQuota default/shared"), "{message}");
}

#[test]
fn check_warns_about_an_unpriced_route_under_a_quota_s_budget() {
    let dir = tempfile::tempdir().unwrap();
    // An OpenAI model listed without prices, and a budget only on the quota.
    let text = config(&[("alice", &new_key())], "{requestsPerMinute: 10}")
        .replace(
            "spec: {type: fake, fake: {chunks: 60, chunkInterval: 1s}}",
            "spec: {type: openai, credentials: {env: OPENAI_KEY}}",
        )
        .replace("{provider: fake}", "{provider: fake, model: gpt-4o}")
        .replace(
            "limits: {requestsPerMinute: 10}",
            "budget: {usd: 5, period: monthly}",
        );
    std::fs::write(dir.path().join("gateway.yaml"), text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["check", "--config", dir.path().to_str().unwrap()])
        .env("API_KEY_PEPPER", common::TEST_PEPPER)
        .env("OPENAI_KEY", "x")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("warning: route fake target fake/gpt-4o has no price")
            && stdout.contains("the budget of the LlmQuota default/shared does not count"),
        "{stdout}"
    );
}
