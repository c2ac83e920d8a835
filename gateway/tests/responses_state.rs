//! Responses conversation state through the binary: `previous_response_id` continues a
//! conversation on any provider (a Responses upstream's own, a translated one, after a
//! fallback), and with `REDIS_URL` on any replica.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::manifests::{caller_key, join};
use common::redis_server::RedisServer;
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

/// Two Responses upstreams, an Anthropic one, and a route falling back from one to another.
fn config(mock: &str, key: &str) -> String {
    let provider = |name: &str, spec: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}}}\nspec: {{{spec}, allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}\n"
        )
    };
    join(&[
        provider("native", &format!("type: openai, baseUrl: \"{mock}/v1\"")),
        provider(
            "compatible",
            &format!("type: openaiCompatible, baseUrl: \"{mock}/v1\", protocols: [responses]"),
        ),
        provider("claude", &format!("type: anthropic, baseUrl: \"{mock}\"")),
        r#"apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: routes}
spec:
  retry: {attempts: 1}
  routes:
  - {model: native, targets: [{provider: native, model: smart-native}]}
  - {model: compatible, targets: [{provider: compatible, model: smart-compatible}]}
  - {model: claude, targets: [{provider: claude, model: claude-sonnet-4-5}]}
  - {model: falls-back, targets: [{provider: native, model: smart-native}], fallbacks: [claude]}
"#
        .to_owned(),
        caller_key(key, ""),
    ])
}

/// The mock's address, without the `/v1` of its OpenAI base URL.
fn root(mock: &MockUpstream) -> &str {
    mock.base_url.trim_end_matches("/v1")
}

async fn start(mock: &MockUpstream, env: &[(&str, &str)]) -> Gateway {
    let key = new_key();
    let mut env = env.to_vec();
    env.push(("MOCK_PROVIDER_KEY", "mock-provider-secret"));
    Gateway::start(&config(root(mock), &key), key, &env).await
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "parameters": {"type": "object",
        "properties": {"location": {"type": "string"}}, "required": ["location"]}})
}

/// A first turn that ends in a function call; returns the response.
async fn ask_weather(gateway: &Gateway, model: &str) -> Value {
    let body = json!({"model": model, "input": "Weather in Paris?", "tools": [weather_tool()]});
    let response = gateway.post("/v1/responses", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// [`ask_weather`] streamed; returns the response `response.completed` carried.
async fn stream_weather(gateway: &Gateway, model: &str) -> Value {
    let body = json!({"model": model, "input": "Weather in Paris?", "stream": true,
        "tools": [weather_tool()]});
    let stream = gateway
        .post("/v1/responses", body)
        .await
        .text()
        .await
        .unwrap();
    let completed = stream
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|data| data["type"] == "response.completed")
        .unwrap();
    completed["response"].clone()
}

/// The second turn: the tool's answer, continuing `first`.
async fn answer_call(gateway: &Gateway, model: &str, first: &Value) -> reqwest::Response {
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap();
    let body = json!({"model": model, "previous_response_id": first["id"], "tools": [weather_tool()],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "22 degrees"}]});
    gateway.post("/v1/responses", body).await
}

async fn text_of(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let output = body["output"].as_array().unwrap();
    let message = output.iter().find(|i| i["type"] == "message").unwrap();
    message["content"][0]["text"].as_str().unwrap().to_owned()
}

/// The last body the mock received on `path`.
fn last_sent(mock: &MockUpstream, path: &str) -> Value {
    let requests = mock.requests();
    let last = requests.iter().rev().find(|r| r.path == path).unwrap();
    last.body.clone()
}

#[tokio::test]
async fn a_conversation_continues_on_any_provider() {
    let mock = MockUpstream::start().await;
    let gateway = start(&mock, &[]).await;

    // The Responses upstream's own continuation passes through: it keeps its responses.
    let first = ask_weather(&gateway, "native").await;
    let second = answer_call(&gateway, "native", &first).await;
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    let sent = last_sent(&mock, "/v1/responses");
    assert_eq!(sent["previous_response_id"], first["id"]);

    // Anthropic has no stored responses: the gateway spells the conversation out.
    let second = answer_call(&gateway, "claude", &first).await;
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    let sent = last_sent(&mock, "/v1/messages");
    assert_eq!(
        sent["messages"][0]["content"][0]["text"],
        "Weather in Paris?"
    );
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");

    // Another Responses upstream never saw the first turn: spelt out, the first's ids gone.
    let second = answer_call(&gateway, "compatible", &first).await;
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    let sent = last_sent(&mock, "/v1/responses");
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    assert_eq!(sent["input"][0]["content"], "Weather in Paris?");
    assert_eq!(sent["input"][1]["type"], "function_call");
    assert!(sent["input"][1].get("id").is_none());

    // And back: a translated response continued on a Responses upstream.
    let first = ask_weather(&gateway, "claude").await;
    let second = answer_call(&gateway, "native", &first).await;
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    let sent = last_sent(&mock, "/v1/responses");
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
}

#[tokio::test]
async fn a_streamed_conversation_continues_after_a_fallback() {
    let mock = MockUpstream::start().await;
    let gateway = start(&mock, &[]).await;
    let first = &stream_weather(&gateway, "falls-back").await;

    mock.set_fault(Fault {
        status: Some(503),
        times: Some(1),
        ..Fault::default()
    });
    let second = answer_call(&gateway, "falls-back", first).await;
    assert_eq!(second.headers()["x-llm-gateway-provider"], "claude");
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
}

#[tokio::test]
async fn replicas_sharing_redis_continue_each_others_conversations() {
    let mut redis = RedisServer::start().await;
    let mock = MockUpstream::start().await;
    let env = [
        ("REDIS_URL", redis.url()),
        ("RATE_LIMIT_STORAGE", "memory".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let key = new_key();
    let config = config(root(&mock), &key);
    let mut env_with_key = env.clone();
    env_with_key.push(("MOCK_PROVIDER_KEY", "mock-provider-secret"));
    let one = Gateway::start(&config, key.clone(), &env_with_key).await;
    let other = Gateway::start(&config, key, &env_with_key).await;

    let first = ask_weather(&one, "claude").await;
    let id = first["id"].as_str().unwrap();
    let second = answer_call(&other, "claude", &first).await;
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    let native = ask_weather(&one, "native").await;
    let second = answer_call(&other, "claude", &native).await;
    assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    // A stream's response lands before its last event reaches the client.
    for model in ["claude", "native"] {
        let streamed = stream_weather(&one, model).await;
        let second = answer_call(&other, "claude", &streamed).await;
        assert_eq!(text_of(second).await, "The tool said: 22 degrees");
    }

    let client = reqwest::Client::new();
    let kept = client
        .get(format!("{}/v1/responses/{id}", other.url))
        .bearer_auth(&other.key)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    assert_eq!(kept.json::<Value>().await.unwrap()["id"], id);
    let deleted = client
        .delete(format!("{}/v1/responses/{id}", other.url))
        .bearer_auth(&other.key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let refused = answer_call(&one, "claude", &first).await;
    assert_eq!(refused.status(), 400, "deleted on every replica");

    // Redis gone: a continuation cannot be resolved (503, OpenAI's shape, no Redis detail);
    // a request that continues nothing is served.
    redis.kill();
    let unresolved = answer_call(&one, "claude", &native).await;
    assert_eq!(unresolved.status(), 503);
    let error: Value = unresolved.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("send the whole conversation"), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
    ask_weather(&one, "claude").await;
}
