//! F9: Redis absent at start, frozen (SIGSTOP), killed and restarted empty, under both
//! `REDIS_ON_UNAVAILABLE` policies.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::manifests::{caller_key, fake_provider, join, routes};
use common::redis_server::RedisServer;
use common::{Gateway, metric, new_key};
use serde_json::{Value, json};

fn config(key: &str, limits: &str) -> String {
    join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        caller_key(key, &format!(", limits: {limits}")),
    ])
}

fn body() -> Value {
    json!({"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends one request; returns its status and latency.
async fn timed(gateway: &Gateway) -> (u16, Duration) {
    let started = Instant::now();
    let response = gateway.chat(body()).await;
    let status = response.status().as_u16();
    response.bytes().await.unwrap();
    (status, started.elapsed())
}

async fn redis_admissions(gateway: &Gateway) -> f64 {
    metric(
        &gateway.admin_url,
        r#"llm_ratelimit_decisions_total{store="redis",decision="admitted"}"#,
    )
    .await
    .unwrap_or(0.0)
}

/// Time until a request is admitted through Redis again.
async fn recovery(gateway: &Gateway) -> Duration {
    let started = Instant::now();
    let before = redis_admissions(gateway).await;
    loop {
        assert_eq!(timed(gateway).await.0, 200);
        if redis_admissions(gateway).await > before {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fail_open_keeps_serving_through_a_frozen_a_killed_and_an_empty_redis() {
    let mut redis = RedisServer::start().await;
    let key = new_key();
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("REDIS_TIMEOUT", "20ms")];
    let gateway = Gateway::start(&config(&key, "{requestsPerMinute: 60000}"), key, &env).await;
    assert_eq!(timed(&gateway).await.0, 200);
    assert_eq!(redis_admissions(&gateway).await, 1.0);

    redis.stop();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (status, took) = timed(&gateway).await;
        assert_eq!(status, 200, "failOpen serves while Redis is frozen");
        slowest = slowest.max(took);
    }
    eprintln!("slowest request while Redis was frozen: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(250),
        "a frozen Redis cost {slowest:?}"
    );
    let fallbacks = metric(
        &gateway.admin_url,
        r#"llm_ratelimit_decisions_total{store="local_fallback",decision="admitted"}"#,
    )
    .await
    .unwrap();
    assert!(fallbacks >= 19.0, "{fallbacks}");
    let ready: Value = reqwest::get(format!("{}/ready", gateway.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], "down");
    redis.cont();
    let took = recovery(&gateway).await;
    eprintln!("recovered {took:?} after SIGCONT");
    assert!(took < Duration::from_secs(1), "recovery took {took:?}");

    redis.kill();
    for _ in 0..10 {
        assert_eq!(
            timed(&gateway).await.0,
            200,
            "failOpen serves without Redis"
        );
    }
    redis.restart().await;
    let took = recovery(&gateway).await;
    eprintln!("recovered {took:?} after the restart");
    assert!(took < Duration::from_secs(1), "recovery took {took:?}");
    assert!(!gateway.log_text().contains("panicked"));
}

#[tokio::test]
async fn fail_closed_refuses_fast_and_recovers() {
    let redis = RedisServer::start().await;
    let key = new_key();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_TIMEOUT", "20ms"),
        ("REDIS_ON_UNAVAILABLE", "failClosed"),
    ];
    let gateway = Gateway::start(&config(&key, "{requestsPerMinute: 60000}"), key, &env).await;
    assert_eq!(timed(&gateway).await.0, 200);
    redis.stop();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let response = gateway.chat(body()).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "rate_limiter_unavailable");
    }
    eprintln!("slowest refusal: {slowest:?}");
    assert!(slowest < Duration::from_millis(150), "{slowest:?}");
    redis.cont();
    let started = Instant::now();
    while timed(&gateway).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("recovered {:?} after SIGCONT", started.elapsed());
}

#[tokio::test]
async fn without_redis_at_start_each_replica_admits_its_share() {
    let key = new_key();
    let env = [
        ("REDIS_URL", "redis://127.0.0.1:9"),
        ("REDIS_TIMEOUT", "20ms"),
        ("GATEWAY_REPLICAS", "2"),
    ];
    let gateway = Gateway::start(&config(&key, "{requestsPerMinute: 10}"), key, &env).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(timed(&gateway).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let detailed: Value = gateway.detailed().await;
    assert_eq!(detailed["limits"]["redis"], "down");
    assert_eq!(detailed["status"], "degraded");
}
