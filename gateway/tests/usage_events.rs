//! Usage events (issue 20): one JSON line per finished model request, equal request for
//! request to what the limiter settled in Redis, through aborted streams, upstream failures,
//! refusals and every client API; nothing lost, nothing doubled, no secret or prompt written.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::manifests::{caller_key, join, monthly_usage_key, routes, upstream_provider};
use common::redis_server::RedisServer;
use common::{Gateway, metric, new_key};
use futures_util::StreamExt;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

const REQUESTS: usize = 1000;
const LIMITS: &str = ", limits: {requestsPerMinute: 100000, tokensPerMinute: 10000000, maxConcurrent: 64}, budget: {usd: 100, period: monthly}";
const PROMPT: &str = "a prompt that must never reach the events file";
const WRITTEN: &str = r#"llm_usage_events_total{outcome="written"}"#;

/// Sends request `i` of the mix; returns the status the client saw.
async fn send(gateway: &Gateway, client: &reqwest::Client, i: usize) -> u16 {
    let chat = json!({"model": "up", "messages": [{"role": "user", "content": PROMPT}]});
    let streamed = json!({"model": "up", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": PROMPT}]});
    let messages =
        json!({"model": "up", "max_tokens": 20, "messages": [{"role": "user", "content": PROMPT}]});
    let (path, body, key, read) = match i % 10 {
        0 => (
            "/v1/chat/completions",
            chat,
            gateway.key.as_str(),
            Read::All,
        ),
        1 => (
            "/v1/chat/completions",
            streamed,
            gateway.key.as_str(),
            Read::All,
        ),
        2 => (
            "/v1/chat/completions",
            streamed,
            gateway.key.as_str(),
            Read::FirstChunk,
        ),
        3 => ("/v1/messages", messages, gateway.key.as_str(), Read::All),
        4 => (
            "/v1/responses",
            json!({"model": "up", "stream": true, "input": PROMPT}),
            gateway.key.as_str(),
            Read::All,
        ),
        5 => (
            "/v1/embeddings",
            json!({"model": "up", "input": PROMPT}),
            gateway.key.as_str(),
            Read::All,
        ),
        6 => (
            "/v1/chat/completions",
            json!({"model": "down", "messages": [{"role": "user", "content": PROMPT}]}),
            gateway.key.as_str(),
            Read::All,
        ),
        7 => ("/v1/chat/completions", chat, "sk-not-a-key", Read::All),
        8 => (
            "/v1/responses",
            json!({"model": "up", "stream": true, "input": PROMPT}),
            gateway.key.as_str(),
            Read::FirstChunk,
        ),
        _ => (
            "/v1/chat/completions",
            json!({"model": "up"}),
            gateway.key.as_str(),
            Read::All,
        ),
    };
    let mut request = client
        .post(format!("{}{path}", gateway.url))
        .header("x-request-id", format!("usage-{i}"))
        .json(&body);
    request = if path == "/v1/messages" {
        request
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        request.bearer_auth(key)
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut chunks = response.bytes_stream();
    match read {
        Read::All => while chunks.next().await.is_some() {},
        // The client leaves mid-stream: the rest is never read.
        Read::FirstChunk => drop(chunks.next().await),
    }
    status
}

enum Read {
    All,
    FirstChunk,
}

/// Every event line in `dir`'s files.
fn events(dir: &std::path::Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(PROMPT), "a prompt reached the events file");
        assert!(!text.contains("sk-upstream-secret") && !text.contains("sk-not-a-key"));
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    lines
}

/// A field of the Redis usage hash of the caller.
async fn redis_usage(redis: &RedisServer, field: &str) -> i64 {
    redis.hash_field(&monthly_usage_key(), field).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_events_equal_the_usage_settled_in_redis_request_for_request() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    // Streams take a while, so a client leaving after the first chunk leaves mid-stream.
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(2),
        extra_events: 10,
        times: None,
        ..Fault::default()
    });
    let priced =
        "  models: [{name: upstream-model, inputPerMillionUsd: 1.0, outputPerMillionUsd: 2.0}]";
    let key = new_key();
    let config = join(&[
        upstream_provider("upstream", &upstream.base_url, "sk-upstream-secret", priced),
        upstream_provider("dead", "http://127.0.0.1:9", "sk-dead", ""),
        routes(&[("up", "upstream", "upstream-model"), ("down", "dead", "m")]),
        caller_key(&key, LIMITS),
    ]);
    let events_dir = tempfile::tempdir().unwrap();
    let path = events_dir.path().join("usage.jsonl");
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("USAGE_EVENTS_PATH", path.to_str().unwrap()),
        ("USAGE_EVENTS_ROTATION", "minutely"),
    ];
    let gateway = Gateway::start(&config, key, &env).await;

    let client = reqwest::Client::new();
    let statuses: HashMap<String, u16> = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let (gateway, client) = (&gateway, &client);
            async move { (format!("usage-{i}"), send(gateway, client, i).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    // Every request's event is written once its settlement is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&gateway.admin_url, WRITTEN).await < Some(REQUESTS as f64) {
        assert!(
            Instant::now() < deadline,
            "events written: {:?}",
            metric(&gateway.admin_url, WRITTEN).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = events(events_dir.path());
    assert_eq!(events.len(), REQUESTS, "one event per request");
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), REQUESTS, "no request twice");
    for event in &events {
        let id = event["request_id"].as_str().unwrap();
        assert_eq!(event["schema_version"], 1);
        assert_eq!(
            event["status"].as_u64(),
            statuses.get(id).map(|s| u64::from(*s)),
            "{event}"
        );
    }

    // What the events say the caller used equals what Redis counted.
    let caller: Vec<&Value> = events.iter().filter(|e| e["settled"] == true).collect();
    let sum = |field: &str| {
        caller
            .iter()
            .map(|e| e[field].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(caller.len() as i64, redis_usage(&redis, "requests").await);
    for field in ["input_tokens", "output_tokens", "spend_nanos"] {
        assert_eq!(sum(field), redis_usage(&redis, field).await, "{field}");
    }
    assert!(sum("spend_nanos") > 0);

    // Each kind of request is told apart.
    let of = |i: usize| {
        events
            .iter()
            .find(|e| e["request_id"] == format!("usage-{i}"))
            .unwrap()
    };
    assert_eq!(of(0)["usage_source"], "reported");
    assert_eq!(of(0)["upstream_model"], "upstream-model");
    assert_eq!(of(0)["owner"], "team-a");
    assert!(of(1)["time_to_first_token_ms"].as_f64().is_some());
    assert!(
        events.iter().any(|e| e["usage_source"] == "estimated"),
        "a client that left mid-stream is billed the estimate"
    );
    assert_eq!(of(3)["protocol"], "messages");
    assert_eq!(of(6)["route"], "down");
    assert!(of(6)["error"].is_string() && of(6)["output_tokens"] == 0);
    assert!(of(7)["key_id"].is_null() && of(7)["status"] == 401);
    assert!(
        of(9)["key_id"].is_string() && of(9)["settled"] == false,
        "{}",
        of(9)
    );
    assert_eq!(
        metric(
            &gateway.admin_url,
            r#"llm_usage_events_total{outcome="dropped"}"#
        )
        .await,
        None
    );
}
