//! Upstream error messages passed on to clients (400, 413, 422, 429), through the running
//! binary: provider keys, organisation and project ids, tokens and the provider's own
//! configured credential are masked, and the length is capped, in both client protocols.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::manifests::{caller_key, join, routes, upstream_provider};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

/// The provider credential: no pattern matches it, so only exact masking can hide it.
const CREDENTIAL: &str = "plain-upstream-credential-42";

async fn setup() -> (MockUpstream, Gateway) {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let config = join(&[
        upstream_provider("upstream", &upstream.base_url, CREDENTIAL, ""),
        routes(&[("alias", "upstream", "upstream-model")]),
        caller_key(&key, ""),
    ]);
    let gateway = Gateway::start(&config, key, &[]).await;
    (upstream, gateway)
}

fn fail_with(upstream: &MockUpstream, status: u16, message: &str) {
    upstream.set_fault(Fault {
        status: Some(status),
        message: Some(message.to_owned()),
        ..Fault::default()
    });
}

/// Sends a chat request (`/v1/chat/completions`, or `/v1/messages` with `anthropic`) and
/// returns the status and the error message the client got.
async fn error_of(gateway: &Gateway, anthropic: bool) -> (u16, String) {
    let client = reqwest::Client::new();
    let messages = json!([{"role": "user", "content": "hi"}]);
    let request = if anthropic {
        client
            .post(format!("{}/v1/messages", gateway.url))
            .header("x-api-key", &gateway.key)
            .json(&json!({"model": "alias", "max_tokens": 10, "messages": messages}))
    } else {
        client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(&gateway.key)
            .json(&json!({"model": "alias", "messages": messages}))
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    (status, message.to_owned())
}

#[tokio::test]
async fn provider_keys_and_organisation_ids_in_a_400_are_masked() {
    let (upstream, gateway) = setup().await;
    fail_with(
        &upstream,
        400,
        "Incorrect API key provided: sk-proj-abcdef1234567890abcdef. You must be a member of \
         an organization to use the API (org-AbCdEf123456).",
    );
    for anthropic in [false, true] {
        let (status, message) = error_of(&gateway, anthropic).await;
        assert_eq!(status, 400);
        assert_eq!(
            message,
            "Incorrect API key provided: sk-***. You must be a member of an organization to \
             use the API (org-***).",
            "anthropic: {anthropic}"
        );
        assert!(!message.contains("abcdef1234567890"));
        assert!(!message.contains("AbCdEf123456"));
    }
}

#[tokio::test]
async fn the_configured_credential_and_tokens_are_masked_and_long_messages_capped() {
    let (upstream, gateway) = setup().await;
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz";
    fail_with(
        &upstream,
        422,
        &format!(
            "key {CREDENTIAL} rejected; Authorization: Bearer {jwt}; project proj_Ab12Cd34Ef56; \
             Google key AIzaSy0123456789abcdefghijklmnopqrstuvw; Azure key \
             0123456789abcdef0123456789abcdef"
        ),
    );
    let (status, message) = error_of(&gateway, false).await;
    assert_eq!(status, 422);
    assert_eq!(
        message,
        "key *** rejected; Authorization: Bearer ***; project proj_***; Google key AIza***; \
         Azure key ***"
    );

    fail_with(&upstream, 413, &"too long ".repeat(2_000));
    let (status, message) = error_of(&gateway, false).await;
    assert_eq!(status, 413);
    assert_eq!(message.chars().count(), 512);
    assert!(message.starts_with("too long too long"));
    assert!(message.ends_with('…'));

    // What the upstream received was the credential itself: only the echo is masked.
    let sent = upstream.requests().pop().unwrap();
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {CREDENTIAL}").as_str()
    );
}
