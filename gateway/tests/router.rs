//! The API router driven in-process (no listener, no child process): the state is built by
//! the functions `server::serve` builds it with, from a config directory written by the scenario builder,
//! and requests go through `tower::ServiceExt::oneshot`. The fake provider needs no network,
//! so everything runs on tokio's clock and time-dependent behaviour can be tested with a
//! paused clock instead of waiting.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::in_process::{app, app_with};
use common::new_key;
use common::scenario::Scenario;

/// A chat completion request from `key`, as the listener hands it to the router (with the
/// client address attached).
fn chat(key: &str, model: &str) -> Request<Body> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))))
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn json_body(response: axum::response::Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_chat_completion_is_answered_by_the_fake_provider() {
    let key = new_key();
    let mut scenario = Scenario::minimal(&key);
    scenario.set(
        "LlmProvider",
        "fake",
        "spec.fake.response",
        "answered in process",
    );
    let (app, _dir) = app(&scenario);

    let response = app.clone().oneshot(chat(&key, "fake-model")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-llm-gateway-provider"], "fake");
    assert!(response.headers().contains_key("x-request-id"));
    let body = json_body(response).await;
    assert_eq!(
        body["choices"][0]["message"]["content"], "answered in process",
        "{body}"
    );

    let refused = app.oneshot(chat("not-a-key", "fake-model")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_ends_a_slow_answer_on_a_paused_clock() {
    let key = new_key();
    let mut scenario = Scenario::minimal(&key);
    scenario
        .set("LlmProvider", "fake", "spec.fake.latency", "60s")
        .set("RoutePolicy", "routes", "spec.timeout", "2s");
    let (app, _dir) = app(&scenario);

    let started = tokio::time::Instant::now();
    let request = tokio::spawn(app.oneshot(chat(&key, "fake-model")));
    let settle = || async {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    };
    settle().await;
    tokio::time::advance(Duration::from_millis(1900)).await;
    settle().await;
    assert!(
        !request.is_finished(),
        "answered before the 2 s route timeout"
    );

    // The deadline is taken from the wall clock when the request arrives, a little after the
    // paused clock's origin; awaiting lets the paused clock auto-advance to it.
    tokio::time::advance(Duration::from_millis(200)).await;
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "ended after {waited:?} of tokio time: the route timeout, not the 60 s latency"
    );
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_refills_on_the_paused_clock_at_the_rate_it_promises() {
    let key = new_key();
    let mut scenario = Scenario::minimal(&key);
    scenario.set(
        "ApiKey",
        "caller",
        "spec.limits",
        json!({"requestsPerMinute": 2}),
    );
    let (app, _dir) = app(&scenario);

    for _ in 0..2 {
        let response = app.clone().oneshot(chat(&key, "fake-model")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = app.clone().oneshot(chat(&key, "fake-model")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=30).contains(&retry_after),
        "2 per minute frees a request within 30 s, Retry-After says {retry_after}"
    );
    let body = json_body(refused).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");

    // Just short of the promised wait, still refused; at it, served.
    tokio::time::advance(Duration::from_secs(retry_after) - Duration::from_millis(1500)).await;
    let early = app.clone().oneshot(chat(&key, "fake-model")).await.unwrap();
    assert_eq!(early.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_millis(1500)).await;
    let served = app.oneshot(chat(&key, "fake-model")).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/v1/chat/completions")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-stainless-os",
        )
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn browsers_get_cors_only_from_allowed_origins_and_preflights_need_no_key() {
    let key = new_key();
    let scenario = Scenario::minimal(&key);
    let allowed = "https://app.example.com";

    let (closed, _dir) = app(&scenario);
    let refused = closed.oneshot(preflight(allowed)).await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let (app, _dir) = app_with(&scenario, &["--cors-allowed-origins", allowed]);
    let answered = app.clone().oneshot(preflight(allowed)).await.unwrap();
    assert!(answered.status().is_success(), "{}", answered.status());
    let headers = answered.headers();
    assert_eq!(headers["access-control-allow-origin"], allowed);
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("x-stainless-os"),
        "{allowed_headers}"
    );
    assert!(!headers.contains_key("access-control-allow-credentials"));

    let mut request = chat(&key, "fake-model");
    request
        .headers_mut()
        .insert("origin", allowed.parse().unwrap());
    let served = app.clone().oneshot(request).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["access-control-allow-origin"], allowed);
    let exposed = served.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-llm-gateway-provider"), "{exposed}");

    let foreign = app
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
