//! Failed authentication throttled per client address, through the running binary: past
//! `AUTH_FAILURES_PER_MINUTE` refused credentials (default 20) an address's refused
//! credentials get 429 with `Retry-After`, on every authenticated endpoint and in the client's
//! protocol, while its valid keys are still served; successes never count; 0 turns it off.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::manifests::{caller_key, fake_provider, join, routes};
use common::{Gateway, metric, new_key};
use serde_json::{Value, json};

fn config(key: &str) -> String {
    join(&[
        fake_provider("fake"),
        routes(&[("fake-model", "fake", "fake")]),
        caller_key(key, ""),
    ])
}

async fn chat(client: &reqwest::Client, gateway: &Gateway, key: &str) -> reqwest::Response {
    client
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(key)
        .json(&json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

const THROTTLED: &str = r#"llm_api_key_rejections_total{reason="throttled"}"#;

#[tokio::test]
async fn repeated_failures_from_one_address_are_answered_429_and_valid_keys_still_work() {
    let key = new_key();
    let gateway = Gateway::start(&config(&key), key.clone(), &[]).await;
    let client = reqwest::Client::new();
    // Successes never count against the address.
    for _ in 0..30 {
        assert_eq!(chat(&client, &gateway, &key).await.status(), 200);
    }
    // A well-formed key that does not exist: 20 identical 401s, then 429s.
    let wrong = new_key();
    let mut refusals = Vec::new();
    for attempt in 1..=25 {
        let response = chat(&client, &gateway, &wrong).await;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let body: Value = response.json().await.unwrap();
        if attempt <= 20 {
            assert_eq!(status, 401, "attempt {attempt}: {body}");
            assert_eq!(body["error"]["code"], "invalid_api_key");
            refusals.push(body);
        } else {
            assert_eq!(status, 429, "attempt {attempt}: {body}");
            let seconds = retry_after.expect("Retry-After on the 429");
            assert!((1..=3).contains(&seconds), "Retry-After {seconds}");
            assert_eq!(body["error"]["type"], "rate_limit_error");
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("authentication"), "{message}");
            assert!(!message.contains(&wrong), "{message}");
        }
    }
    // Every 401 was the same, whatever was sent.
    assert!(refusals.windows(2).all(|pair| pair[0] == pair[1]));

    // A valid key from the throttled address is still served (one client behind a shared
    // address must not lock the others out); every refused credential gets 429, on every
    // authenticated endpoint, each in its own protocol.
    let response = chat(&client, &gateway, &key).await;
    assert_eq!(response.status(), 200, "a valid key locked out");
    let models = client
        .get(format!("{}/v1/models", gateway.url))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 429);
    let messages = client
        .post(format!("{}/v1/messages", gateway.url))
        .header("x-api-key", &wrong)
        .json(&json!({"model": "fake-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(messages.status(), 429);
    let body: Value = messages.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    assert_eq!(metric(&gateway.admin_url, THROTTLED).await, Some(7.0));
    let unknown = r#"llm_api_key_rejections_total{reason="unknown"}"#;
    assert_eq!(metric(&gateway.admin_url, unknown).await, Some(20.0));
}

#[tokio::test]
async fn missing_and_malformed_credentials_count_too() {
    let key = new_key();
    let gateway = Gateway::start(
        &config(&key),
        key.clone(),
        &[("AUTH_FAILURES_PER_MINUTE", "3")],
    )
    .await;
    let client = reqwest::Client::new();
    let missing = client
        .post(format!("{}/v1/chat/completions", gateway.url))
        .json(&json!({"model": "fake-model", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(chat(&client, &gateway, "sk-lgw-short").await.status(), 401);
    assert_eq!(chat(&client, &gateway, "not-a-key").await.status(), 401);
    assert_eq!(chat(&client, &gateway, "anything").await.status(), 429);
    assert_eq!(metric(&gateway.admin_url, THROTTLED).await, Some(1.0));
}

#[tokio::test]
async fn zero_turns_throttling_off() {
    let key = new_key();
    let gateway = Gateway::start(
        &config(&key),
        key.clone(),
        &[("AUTH_FAILURES_PER_MINUTE", "0")],
    )
    .await;
    let client = reqwest::Client::new();
    let wrong = new_key();
    for _ in 0..40 {
        assert_eq!(chat(&client, &gateway, &wrong).await.status(), 401);
    }
    assert_eq!(chat(&client, &gateway, &key).await.status(), 200);
    assert_eq!(metric(&gateway.admin_url, THROTTLED).await, None);
}
