//! Retries through the running binary: a route with one target goes back to that target, no
//! more than `retry.attempts` times, and a target cooling down after an upstream 429 with
//! `Retry-After` answers other callers 429 with the remaining wait, without calling upstream.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use common::manifests::{caller_key, join, upstream_provider};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

/// Provider settings: breaker thresholds no test here reaches, so only the retry policy decides
/// how many calls go out.
const PROVIDER: &str = "  timeouts: {connect: 1s, firstByte: 2s, total: 10s}\n  circuitBreaker: {failureThreshold: 50, window: 30s, openFor: 30s, halfOpenProbes: 1}";

/// A RoutePolicy `name` with `retry` and one route `model` whose only target is `provider`.
fn policy(name: &str, retry: &str, model: &str, provider: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: {name}}}\nspec:\n  retry: {retry}\n  routes:\n  - model: {model}\n    targets: [{{provider: {provider}, model: x}}]\n"
    )
}

fn body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// The first `times` calls fail with `status`.
fn failing(status: u16, times: usize) -> Fault {
    Fault {
        status: Some(status),
        times: Some(times),
        ..Fault::default()
    }
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_single_target_route_retries_its_only_target_within_the_attempt_count() {
    let (twice, once) = (MockUpstream::start().await, MockUpstream::start().await);
    let key = new_key();
    let backoff = "backoff: {base: 10ms, max: 50ms}";
    let config = join(&[
        upstream_provider("twice", &twice.base_url, "sk-twice", PROVIDER),
        upstream_provider("once", &once.base_url, "sk-once", PROVIDER),
        policy("two", &format!("{{attempts: 2, {backoff}}}"), "m2", "twice"),
        policy("one", &format!("{{attempts: 1, {backoff}}}"), "m1", "once"),
        caller_key(&key, ""),
    ]);
    let gateway = Gateway::start(&config, key, &[]).await;

    twice.set_fault(failing(500, 2));
    let response = gateway.chat(body("m2")).await;
    assert_eq!(
        response.status(),
        200,
        "two 500s hidden by two retries on the same target"
    );
    assert_eq!(response.headers()["x-llm-gateway-provider"], "twice");
    assert_eq!(twice.requests().len(), 3, "one call and two retries");

    once.set_fault(failing(500, 3));
    let response = gateway.chat(body("m1")).await;
    assert_eq!(
        response.status(),
        502,
        "the last failure reaches the client"
    );
    assert_eq!(
        once.requests().len(),
        2,
        "retry.attempts + 1 calls in total, never more"
    );
}

#[tokio::test]
async fn a_target_cooling_down_after_retry_after_answers_429_without_calling_upstream() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let config = join(&[
        upstream_provider("limited", &upstream.base_url, "sk-limited", PROVIDER),
        policy("limited", "{attempts: 2}", "m", "limited"),
        caller_key(&key, ""),
    ]);
    let gateway = Gateway::start(&config, key, &[]).await;
    upstream.set_fault(Fault {
        status: Some(429),
        retry_after: Some("30".into()),
        ..Fault::default()
    });
    let first = gateway.chat(body("m")).await;
    assert_eq!(first.status(), 429, "the provider's own 429 passes through");
    assert_eq!(first.headers()["retry-after"], "30");
    assert_eq!(
        upstream.requests().len(),
        1,
        "retries remain, but the target asked for 30 s"
    );

    let next = gateway.chat(body("m")).await;
    assert_eq!(
        next.status(),
        429,
        "a cooling target is a rate limit, not an outage"
    );
    let wait = retry_after(&next);
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    let error: Value = next.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");

    let anthropic = reqwest::Client::new()
        .post(format!("{}/v1/messages", gateway.url))
        .header("x-api-key", &gateway.key)
        .json(&json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 429);
    let wait = retry_after(&anthropic);
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    let error: Value = anthropic.json().await.unwrap();
    assert_eq!(error["type"], "error", "Anthropic's error shape: {error}");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");

    assert_eq!(
        upstream.requests().len(),
        1,
        "no call while the target cools down"
    );
}
