//! Rate limits, concurrency, budgets and usage through the running binary, with a real
//! `redis-server` shared by several gateway processes.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::manifests::{caller_key, fake_provider, join, routes, upstream_provider};
use common::redis_server::RedisServer;
use common::{Gateway, metric, new_key};
use futures_util::StreamExt;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

/// Prices of the upstream model: $1 per million prompt tokens, $2 per million completion.
const PRICED: &str =
    "  models: [{name: upstream-model, inputPerMillionUsd: 1.0, outputPerMillionUsd: 2.0}]";

/// A fake provider route `fake` and an upstream route `up`, and one key with `key_spec`
/// merged into its spec.
fn config(upstream: &str, key: &str, key_spec: &str) -> String {
    join(&[
        fake_provider("fake"),
        upstream_provider("upstream", upstream, "sk-upstream-secret", PRICED),
        routes(&[
            ("fake", "fake", "fake"),
            ("up", "upstream", "upstream-model"),
        ]),
        caller_key(key, key_spec),
    ])
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10})
}

async fn post(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> reqwest::Response {
    client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_sharing_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start().await;
    let key = new_key();
    let text = config(
        "http://127.0.0.1:9",
        &key,
        ", limits: {requestsPerMinute: 100}",
    );
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("REDIS_TIMEOUT", "2s")];
    let gateways = [
        Gateway::start(&text, key.clone(), &env).await,
        Gateway::start(&text, key.clone(), &env).await,
        Gateway::start(&text, key.clone(), &env).await,
    ];
    let client = reqwest::Client::new();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(300));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (client, key, limit) = (client.clone(), key.clone(), limit.clone());
        let url = gateways[i % 3].url.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let response = post(&client, &url, &key, &chat("fake")).await;
            let retry_after = response.headers().contains_key("retry-after");
            (response.status().as_u16(), retry_after)
        }));
    }
    let (mut admitted, mut refused) = (0u64, 0u64);
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => admitted += 1,
            (429, true) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    // GCRA: a full bucket admits the whole limit at once, then one more every 600 ms.
    let allowed = 100 + (elapsed.as_secs_f64() / 0.6).floor() as u64;
    eprintln!("admitted {admitted}, refused {refused}, allowed {allowed} in {elapsed:?}");
    assert_eq!(admitted + refused, 1000);
    assert!(
        (100..=allowed).contains(&admitted),
        "over-admission: {admitted} admitted, {allowed} allowed"
    );
    let mut counted = 0.0;
    for gateway in &gateways {
        counted += metric(
            &gateway.admin_url,
            r#"llm_ratelimit_decisions_total{store="redis",decision="admitted"}"#,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        counted as u64, admitted,
        "every admission went through Redis"
    );
}

#[tokio::test]
async fn token_reservations_settle_to_real_usage() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let text = config(
        &upstream.base_url,
        &key,
        ", limits: {tokensPerMinute: 2000}",
    );
    let gateway = Gateway::start(&text, key.clone(), &[("REDIS_URL", &redis.url())]).await;
    let client = reqwest::Client::new();
    let mut body = chat("up");
    body["max_tokens"] = json!(500);
    let first = post(&client, &gateway.url, &key, &body).await;
    assert_eq!(first.status(), 200);
    let remaining = |r: &reqwest::Response| -> u64 {
        r.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Reserved at admission: prompt estimate (2) + max_tokens (500).
    assert_eq!(remaining(&first), 2000 - 502);
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "2000");
    assert!(first.headers().contains_key("x-ratelimit-reset-tokens"));
    first.bytes().await.unwrap();
    // Settlement runs after the response; its metric is written once the store settled.
    let settled = Instant::now();
    while metric(&gateway.admin_url, "llm_caller_requests_total")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(settled.elapsed() < Duration::from_secs(5), "never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Settled to the real 7 tokens, so the second request sees 2000 - 7 - 502 (plus refill).
    let second = post(&client, &gateway.url, &key, &body).await;
    let left = remaining(&second);
    assert!((2000 - 7 - 502..=2000 - 502).contains(&left), "{left}");
    body["max_tokens"] = json!(5000);
    let too_large = post(&client, &gateway.url, &key, &body).await;
    assert_eq!(too_large.status(), 400);
    let error: Value = too_large.json().await.unwrap();
    assert_eq!(error["error"]["param"], "max_tokens");
}

#[tokio::test]
async fn a_concurrency_slot_is_freed_when_the_client_disconnects() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(300),
        ..Fault::default()
    });
    let key = new_key();
    let text = config(&upstream.base_url, &key, ", limits: {maxConcurrent: 1}");
    let gateway = Gateway::start(&text, key.clone(), &[("REDIS_URL", &redis.url())]).await;
    let client = reqwest::Client::new();
    let mut body = chat("up");
    body["stream"] = json!(true);
    let stream = post(&client, &gateway.url, &key, &body).await;
    assert_eq!(stream.status(), 200);
    let second = post(&client, &gateway.url, &key, &chat("up")).await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let error: Value = second.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    let mut events = stream.bytes_stream();
    events.next().await.unwrap().unwrap();
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let status = post(&client, &gateway.url, &key, &chat("up"))
            .await
            .status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot not released: {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A client that waits for each answer before sending the next never holds two slots, so it
/// must never be refused by `maxConcurrent: 1`, however late the gateway's release of the
/// previous request's slot runs (it runs after the last byte reached the client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_caller_is_never_refused_for_its_own_previous_request() {
    let redis = RedisServer::start().await;
    let key = new_key();
    let text = config("http://127.0.0.1:9", &key, ", limits: {maxConcurrent: 1}");
    let with_redis = Gateway::start(&text, key.clone(), &[("REDIS_URL", &redis.url())]).await;
    let in_memory = Gateway::start(&text, key.clone(), &[]).await;
    let client = reqwest::Client::new();
    for gateway in [&with_redis, &in_memory] {
        for sent in 0..500 {
            let response = post(&client, &gateway.url, &key, &chat("fake")).await;
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_eq!(status, 200, "request {sent} to {}: {body}", gateway.url);
        }
    }
}
