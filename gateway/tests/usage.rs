//! Usage and budgets: counters in Redis, in metrics and at `/v1/usage` agree with what the
//! mock upstream served, streams cut short included; budgets refuse once spent.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::manifests::{monthly_usage_key, priced_route_and_key};
use common::redis_server::RedisServer;
use common::{Gateway, metric, new_key};
use futures_util::StreamExt;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_exact_across_complete_and_abandoned_streams() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(150),
        ..Fault::default()
    });
    let key = new_key();
    let text = priced_route_and_key(&upstream.base_url, &key, "");
    let gateway = Gateway::start(&text, key.clone(), &[("REDIS_URL", &redis.url())]).await;
    let (streams, abandoned) = (100, 10);
    let mut tasks = Vec::new();
    for i in 0..streams {
        let (url, key) = (gateway.url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "up", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hello"}]});
            let response = reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let mut events = response.bytes_stream();
            let mut seen = String::new();
            while let Some(chunk) = events.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if i < abandoned && seen.contains("Hel") {
                    return false;
                }
            }
            assert!(seen.contains("[DONE]"));
            true
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // Store first, then metrics: wait for both to have counted every stream.
    while gateway.usage().await["requests"] != streams
        || metric(&gateway.admin_url, "llm_caller_requests_total").await != Some(f64::from(streams))
    {
        assert!(Instant::now() < deadline, "usage not settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (done, aborted) = upstream.stream_outcomes();
    assert_eq!((done, aborted), (streams - abandoned, abandoned));
    // Complete streams: the upstream's usage report (11 in, 7 out). Abandoned ones, which never
    // got a report: the prompt estimate (7 bytes of JSON content → 2) plus one token per
    // completion event delivered (1).
    let input = u64::from(done) * 11 + u64::from(aborted) * 2;
    let output = u64::from(done) * 7 + u64::from(aborted);
    let spend_nanos = input * 1_000 + output * 2_000;
    let report = gateway.usage().await;
    assert_eq!(report["input_tokens"], input);
    assert_eq!(report["output_tokens"], output);
    assert_eq!(report["owner"], "team-a");
    assert_eq!(report["period"]["type"], "monthly");
    let hash = monthly_usage_key();
    assert_eq!(redis.hash_field(&hash, "input_tokens").await, input as i64);
    assert_eq!(
        redis.hash_field(&hash, "output_tokens").await,
        output as i64
    );
    assert_eq!(
        redis.hash_field(&hash, "spend_nanos").await,
        spend_nanos as i64
    );
    let key_id = llm_gateway_crds::keys::key_id(&key);
    for (direction, expected) in [("input", input), ("output", output)] {
        let series = format!(
            r#"llm_caller_tokens_total{{key_id="{key_id}",owner="team-a",direction="{direction}"}}"#
        );
        assert_eq!(
            metric(&gateway.admin_url, &series).await,
            Some(expected as f64)
        );
    }
}

#[tokio::test]
async fn a_spent_budget_refuses_until_the_next_period() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    let key = new_key();
    // The mock reports 5 prompt and 2 completion tokens: 9,000 nano-dollars a request. A
    // request reserves 2 prompt tokens at $1/M and 10 completion tokens at $2/M: 22,000.
    let text = priced_route_and_key(
        &upstream.base_url,
        &key,
        ", budget: {usd: 0.0001, period: daily}",
    );
    let gateway = Gateway::start(&text, key.clone(), &[("REDIS_URL", &redis.url())]).await;
    let body = json!({"model": "up", "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]});
    let mut admitted = 0;
    let refusal = loop {
        let response = gateway.chat(body.clone()).await;
        if response.status() != 200 {
            break response;
        }
        response.bytes().await.unwrap();
        admitted += 1;
        assert!(admitted < 20, "the budget never ran out");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    // Admitted while spend + 22,000 <= 100,000: 9,000 × 8 = 72,000 admits a ninth (94,000);
    // 81,000 + 22,000 > 100,000 refuses the tenth.
    assert_eq!(admitted, 9);
    assert_eq!(refusal.status(), 429);
    let retry_after: u64 = refusal.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after));
    let error: Value = refusal.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_quota");
    let report = gateway.usage().await;
    assert_eq!(report["period"]["type"], "daily");
    assert_eq!(report["budget"]["usd"], 0.0001);
    assert!((report["spend_usd"].as_f64().unwrap() - 0.000081).abs() < 1e-12);
}

#[tokio::test]
async fn counters_written_before_hash_tags_are_kept_across_the_upgrade() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    // What a gateway of the previous version left: this month's usage under the old name, with
    // a budget reservation still held.
    let tagged = monthly_usage_key();
    let legacy = tagged.replace(['{', '}'], "");
    for (field, value) in [
        ("requests", "5"),
        ("spend_nanos", "45000"),
        ("reserved_nanos", "22000"),
    ] {
        redis.query(&["HSET", &legacy, field, value]).await.unwrap();
    }
    redis
        .query(&["PEXPIRE", &legacy, "86400000"])
        .await
        .unwrap();
    let held = format!("{legacy}:held");
    redis
        .query(&["ZADD", &held, "1", "oldlease:22000"])
        .await
        .unwrap();
    let key = new_key();
    let text = priced_route_and_key(
        &upstream.base_url,
        &key,
        ", budget: {usd: 1, period: monthly}",
    );
    let gateway = Gateway::start(&text, key.clone(), &[("REDIS_URL", &redis.url())]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis.hash_field(&tagged, "requests").await != 5 {
        assert!(
            Instant::now() < deadline,
            "the old counters were never moved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        redis.query(&["EXISTS", &legacy]).await,
        Some(redis::Value::Int(0))
    );
    // The lapsed reservation moved too, and the next budget admission releases it.
    let body = json!({"model": "up", "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]});
    let response = gateway.chat(body).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let report = loop {
        let report = gateway.usage().await;
        if report["requests"] == 6 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the request was never settled: {report}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        (report["spend_usd"].as_f64().unwrap() - 0.000054).abs() < 1e-12,
        "{report}"
    );
    assert_eq!(redis.hash_field(&tagged, "reserved_nanos").await, 0);
}
