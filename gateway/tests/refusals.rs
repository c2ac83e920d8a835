//! A target that cannot serve a request (its translation cannot carry what the request uses,
//! or it has no such API) is passed over for the route's next target or fallback, spending no
//! attempt; only a request every target refuses gets the 400.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::manifests::{caller_key, join};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

fn config(mock: &str, key: &str) -> String {
    let provider = |name: &str, spec: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}}}\nspec: {{{spec}, allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}\n"
        )
    };
    join(&[
        provider("native", &format!("type: openai, baseUrl: \"{mock}/v1\"")),
        provider("claude", &format!("type: anthropic, baseUrl: \"{mock}\"")),
        r#"apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: routes}
spec:
  retry: {attempts: 0}
  routes:
  - {model: claude-first, targets: [{provider: claude, model: claude-sonnet-4-5}], fallbacks: [native]}
  - {model: native, targets: [{provider: native, model: smart-native}]}
  - {model: claude-only, targets: [{provider: claude, model: claude-sonnet-4-5}]}
"#
        .to_owned(),
        caller_key(key, ""),
    ])
}

async fn start() -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start().await;
    let key = new_key();
    let root = mock.base_url.trim_end_matches("/v1").to_owned();
    let env = [("MOCK_PROVIDER_KEY", "mock-provider-secret")];
    let gateway = Gateway::start(&config(&root, &key), key, &env).await;
    (mock, gateway)
}

#[tokio::test]
async fn a_target_that_cannot_carry_the_request_is_passed_over() {
    let (mock, gateway) = start().await;
    // Anthropic has no web search tool to translate to; OpenAI's Responses API serves it.
    let searching =
        json!({"model": "claude-first", "input": "news?", "tools": [{"type": "web_search"}]});
    let response = gateway.post("/v1/responses", searching).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-llm-gateway-provider"], "native");
    let sent = mock.requests();
    assert!(
        sent.iter().all(|r| r.path != "/v1/messages"),
        "nothing sent to Anthropic"
    );
    assert_eq!(sent.last().unwrap().body["tools"][0]["type"], "web_search");

    // No attempt was spent on the refusal: with `attempts: 0` the fallback still ran, and
    // legacy completions (which Anthropic lacks) go the same way.
    let completion = json!({"model": "claude-first", "prompt": "def add(a, b):", "max_tokens": 8});
    let response = gateway.post("/v1/completions", completion).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-llm-gateway-provider"], "native");
}

#[tokio::test]
async fn a_request_every_target_refuses_gets_the_refusal() {
    let (mock, gateway) = start().await;
    let searching =
        json!({"model": "claude-only", "input": "news?", "tools": [{"type": "web_search"}]});
    let response = gateway.post("/v1/responses", searching).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "tools[0].type", "{error}");
    assert!(mock.requests().is_empty());
}
