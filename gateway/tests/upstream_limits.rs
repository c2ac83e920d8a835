//! Caps on what an upstream reply can make the gateway hold, through the running binary: a
//! non-streamed reply over `MAX_UPSTREAM_BODY_BYTES` and a translated stream event over
//! `MAX_UPSTREAM_EVENT_BYTES` (the mock generates both lazily, so only the gateway could
//! hold them).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::manifests::{caller_key, join, routes, upstream_provider};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::oversized::Oversized;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// An OpenAI-compatible route `big` and an Anthropic route `claude`, both on the mock.
fn config(upstream: &MockUpstream, key: &str) -> String {
    let root = upstream.base_url.trim_end_matches("/v1");
    let claude = format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: claude}}\nspec: {{type: anthropic, baseUrl: \"{root}\", allowLocalAddresses: true, credentials: {{secretRef: {{name: upstream-credential, key: apiKey}}}}}}\n"
    );
    join(&[
        upstream_provider("upstream", &upstream.base_url, "sk-upstream", ""),
        claude,
        routes(&[
            ("big", "upstream", "upstream-model"),
            ("claude", "claude", "claude-sonnet-4-5"),
        ]),
        caller_key(key, ""),
    ])
}

async fn start(upstream: &MockUpstream, env: &[(&str, &str)]) -> Gateway {
    let key = new_key();
    Gateway::start(&config(upstream, &key), key, env).await
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

/// A `/proc/<pid>/status` memory figure (`VmRSS`, `VmHWM`) in bytes.
fn memory(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix(field)?.strip_prefix(':')?.trim();
            value.strip_suffix(" kB")?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    kib * 1024
}

#[tokio::test]
async fn a_reply_over_the_body_cap_is_refused_without_being_held() {
    let upstream = MockUpstream::start().await;
    let reply = Oversized::json(64 * MIB);
    upstream.set_fault(Fault {
        oversized: Some(reply.clone()),
        ..Fault::default()
    });
    // A 16 MiB cap (the setting reaches the request path), with the default retry policy.
    let env = [("MAX_UPSTREAM_BODY_BYTES", "16777216")];
    let gateway = start(&upstream, &env).await;
    let before = memory(gateway.pid(), "VmRSS");

    let response = gateway.chat(chat("big", false)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("MAX_UPSTREAM_BODY_BYTES (16777216 bytes)"),
        "{message}"
    );
    // Not retried: the provider already billed the call, and a retry would bill it again.
    assert_eq!(
        upstream.requests().len(),
        1,
        "an oversized reply was retried"
    );
    let growth = memory(gateway.pid(), "VmHWM").saturating_sub(before);
    eprintln!(
        "peak RSS grew {} KiB for a refused 64 MiB reply",
        growth / 1024
    );
    assert!(
        growth < 48 * MIB,
        "peak RSS grew {} MiB for a refused 64 MiB reply",
        growth / MIB
    );
    // The connection was closed, not drained: the mock never got to send the whole reply.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reply.sent() < 64 * MIB, "{} bytes sent", reply.sent());

    // Anthropic clients get the same refusal in their error format.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", gateway.url))
        .header("x-api-key", &gateway.key)
        .json(&chat("big", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("MAX_UPSTREAM_BODY_BYTES"), "{message}");
}

#[tokio::test]
async fn a_translated_stream_event_over_the_cap_ends_with_an_error_event() {
    let upstream = MockUpstream::start().await;
    upstream.set_fault(Fault {
        oversized: Some(Oversized::unterminated_event(4 * MIB)),
        ..Fault::default()
    });
    let gateway = start(&upstream, &[("MAX_UPSTREAM_EVENT_BYTES", "2097152")]).await;

    let mut response = gateway.chat(chat("claude", true)).await;
    assert_eq!(response.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while !text.contains("MAX_UPSTREAM_EVENT_BYTES") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no error event within 20 s; got {text:?}"))
            .unwrap();
        let Some(chunk) = chunk else {
            panic!("the stream ended without the error event: {text:?}");
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let error: Value =
        serde_json::from_str(text.trim_end().rsplit("data: ").next().unwrap_or_default()).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("MAX_UPSTREAM_EVENT_BYTES (2097152 bytes)"),
        "{message}"
    );
    assert!(!text.contains("[DONE]"), "{text}");
}
