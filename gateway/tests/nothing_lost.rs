//! Nothing lost (F9 and the drain): limits and usage stay exact through a frozen, a killed and
//! an emptied Redis, and through a drain deadline that ends streams. Every test uses a key with
//! every limit kind at once (requests, tokens, concurrency and a budget) and checks Redis
//! itself afterwards: no ghost lease, no reservation left, usage equal to what was served.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::manifests::{monthly_usage_key, priced_route_and_key};
use common::redis_server::RedisServer;
use common::scenario::Scenario;
use common::{Gateway, metric, new_key};
use futures_util::StreamExt;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

const LIMITS: &str = ", limits: {requestsPerMinute: 1000, tokensPerMinute: 1000000, maxConcurrent: 2}, budget: {usd: 100, period: monthly}";
const CONCURRENT: &str = "lgw:{key:default/caller}:concurrent";

/// What the clients were served: requests and the usage the upstream reported.
#[derive(Debug, Default, PartialEq)]
struct Served {
    requests: i64,
    input: i64,
    output: i64,
}

impl Served {
    fn add(&mut self, usage: &Value) {
        self.requests += 1;
        self.input += usage["prompt_tokens"].as_i64().unwrap();
        self.output += usage["completion_tokens"].as_i64().unwrap();
    }

    /// What Redis counted for the caller.
    async fn in_redis(redis: &RedisServer) -> Self {
        let key = monthly_usage_key();
        Self {
            requests: redis.hash_field(&key, "requests").await,
            input: redis.hash_field(&key, "input_tokens").await,
            output: redis.hash_field(&key, "output_tokens").await,
        }
    }
}

/// A gateway on `redis` whose caller has `LIMITS` with `maxConcurrent` set to `concurrent`.
async fn start(
    redis: &RedisServer,
    upstream: &MockUpstream,
    concurrent: u32,
    policy: &str,
    extra: &[(&str, &str)],
) -> Gateway {
    let key = new_key();
    let url = redis.url();
    let mut env = vec![
        ("REDIS_URL", url.as_str()),
        ("REDIS_TIMEOUT", "20ms"),
        ("REDIS_ON_UNAVAILABLE", policy),
    ];
    env.extend_from_slice(extra);
    let config = Scenario::parse(&priced_route_and_key(&upstream.base_url, &key, LIMITS))
        .replace("ApiKey", "caller", "spec.limits.maxConcurrent", concurrent)
        .render();
    Gateway::start(&config, key, &env).await
}

/// Sends one chat request; returns its status and, when served, its usage.
async fn chat(gateway: &Gateway) -> (u16, Option<Value>) {
    let body = json!({"model": "up", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]});
    let response = gateway.chat(body).await;
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap();
    (status, (status == 200).then(|| reply["usage"].clone()))
}

/// Opens a stream and reads its first bytes, so it is admitted and in flight.
async fn open_stream(gateway: &Gateway) -> (reqwest::Response, String) {
    let body = json!({"model": "up", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hello"}]});
    first_chunk(gateway.chat(body).await).await
}

/// Opens a streamed Responses API request (translated to the upstream's chat API).
async fn open_responses_stream(gateway: &Gateway) -> (reqwest::Response, String) {
    let body = json!({"model": "up", "stream": true, "input": "hello"});
    first_chunk(gateway.post("/v1/responses", body).await).await
}

async fn first_chunk(mut response: reqwest::Response) -> (reqwest::Response, String) {
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    (response, String::from_utf8_lossy(&first).into_owned())
}

/// Reads a stream to its end; returns everything it sent.
async fn finish_stream((response, mut seen): (reqwest::Response, String)) -> String {
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    seen
}

/// The usage chunk of a completed OpenAI stream.
fn stream_usage(text: &str) -> Value {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .expect("a usage chunk")
}

/// Waits until `condition` holds on the gateway's metrics and Redis (at most 10 s).
async fn wait_until<F: AsyncFn() -> bool>(what: &str, condition: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn journal_empty(gateway: &Gateway) -> bool {
    metric(&gateway.admin_url, "llm_limiter_journal_pending").await == Some(0.0)
}

/// After recovery: no lease held, no spend reserved, Redis counted exactly what was served.
async fn assert_exact(redis: &RedisServer, served: &Served) {
    let redis_usage = Served::in_redis(redis).await;
    assert_eq!(&redis_usage, served, "usage in Redis vs served");
    let held = redis.query(&["ZCARD", CONCURRENT]).await;
    assert_eq!(held, Some(redis::Value::Int(0)), "ghost concurrency lease");
    assert_eq!(
        redis
            .hash_field(&monthly_usage_key(), "reserved_nanos")
            .await,
        0,
        "budget reservation left behind"
    );
}

/// Time until a request is admitted through Redis again.
async fn recovery(gateway: &Gateway, served: &mut Served) -> Duration {
    let admitted = r#"llm_ratelimit_decisions_total{store="redis",decision="admitted"}"#;
    let before = metric(&gateway.admin_url, admitted).await.unwrap_or(0.0);
    let started = Instant::now();
    loop {
        let (status, usage) = chat(gateway).await;
        assert_eq!(status, 200);
        served.add(&usage.unwrap());
        if metric(&gateway.admin_url, admitted).await.unwrap_or(0.0) > before {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never recovered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_leaves_no_ghost_lease_nor_reservation_and_loses_no_usage() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    let gateway = start(&redis, &upstream, 2, "failOpen", &[]).await;
    let mut served = Served::default();
    served.add(&chat(&gateway).await.1.unwrap());
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(300),
        times: Some(1),
        ..Fault::default()
    });
    let stream = open_stream(&gateway).await;

    redis.stop();
    // Sent while nothing has failed yet, so the breaker is closed: this admission reaches the
    // frozen Redis, times out, and runs late once it wakes, taking a lease and a reservation
    // that only the journal's cancel gives back.
    let (status, usage) = chat(&gateway).await;
    assert_eq!(status, 200, "failOpen serves while Redis is frozen");
    served.add(&usage.unwrap());
    // The stream ends while Redis is frozen: its settlement times out (and runs late).
    served.add(&stream_usage(&finish_stream(stream).await));
    let settle_errors = r#"llm_redis_errors_total{operation="settle"}"#;
    wait_until("the stream's settlement failed", async || {
        metric(&gateway.admin_url, settle_errors).await >= Some(1.0)
    })
    .await;
    // Admissions time out (and run late) until the breaker opens; every request is served
    // from memory meanwhile.
    for _ in 0..5 {
        let (status, usage) = chat(&gateway).await;
        assert_eq!(status, 200, "failOpen serves while Redis is frozen");
        served.add(&usage.unwrap());
    }
    redis.cont();

    let took = recovery(&gateway, &mut served).await;
    eprintln!("admitted through Redis {took:?} after SIGCONT");
    assert!(took < Duration::from_secs(2), "recovery took {took:?}");
    wait_until("the journal replayed everything", async || {
        journal_empty(&gateway).await && Served::in_redis(&redis).await == served
    })
    .await;
    assert_exact(&redis, &served).await;
    let replayed = |operation: &str| {
        format!(r#"llm_limiter_journal_total{{operation="{operation}",outcome="replayed"}}"#)
    };
    let cancels = metric(&gateway.admin_url, &replayed("cancel")).await;
    let settles = metric(&gateway.admin_url, &replayed("settle")).await;
    eprintln!("journal replayed {cancels:?} cancels and {settles:?} settlements");
    assert!(
        cancels >= Some(1.0),
        "no timed-out admission was compensated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_compensates_timed_out_admissions() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    let gateway = start(&redis, &upstream, 1, "failClosed", &[]).await;
    let mut served = Served::default();
    served.add(&chat(&gateway).await.1.unwrap());
    redis.stop();
    for _ in 0..4 {
        assert_eq!(chat(&gateway).await.0, 503, "failClosed refuses");
    }
    redis.cont();
    let cancels = r#"llm_limiter_journal_total{operation="cancel",outcome="replayed"}"#;
    wait_until("the timed-out admissions were cancelled", async || {
        journal_empty(&gateway).await && metric(&gateway.admin_url, cancels).await >= Some(1.0)
    })
    .await;
    // Without the compensation, the admission that ran late holds the only slot for the
    // lease's whole TTL (the route timeout): 429 for ten minutes.
    let (status, usage) = chat(&gateway).await;
    assert_eq!(status, 200, "the key's only concurrency slot is free again");
    served.add(&usage.unwrap());
    wait_until("usage settled", async || {
        Served::in_redis(&redis).await == served
    })
    .await;
    assert_exact(&redis, &served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_served_from_memory_reaches_a_restarted_empty_redis() {
    let mut redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    let gateway = start(&redis, &upstream, 2, "failOpen", &[]).await;
    assert_eq!(chat(&gateway).await.0, 200);
    // Settled before the kill, so the restarted Redis holds only what follows.
    wait_until("the first request settled", async || {
        Served::in_redis(&redis).await.requests == 1
    })
    .await;
    redis.kill();
    // Only what is served from now on can be in the new, empty Redis.
    let mut served = Served::default();
    for _ in 0..5 {
        let (status, usage) = chat(&gateway).await;
        assert_eq!(status, 200, "failOpen serves without Redis");
        served.add(&usage.unwrap());
    }
    redis.restart().await;
    recovery(&gateway, &mut served).await;
    wait_until("the outage's usage reached Redis", async || {
        journal_empty(&gateway).await && Served::in_redis(&redis).await == served
    })
    .await;
    assert_exact(&redis, &served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_ends_streams_with_an_error_event_and_settles_them() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(200),
        extra_events: 200,
        ..Fault::default()
    });
    let streams = 4;
    let mut gateway = start(
        &redis,
        &upstream,
        10,
        "failOpen",
        &[("DRAIN_TIMEOUT", "1s")],
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..streams / 2 {
        open.push(open_stream(&gateway).await);
    }
    let mut responses = Vec::new();
    for _ in 0..streams / 2 {
        responses.push(open_responses_stream(&gateway).await);
    }
    let held = redis.query(&["ZCARD", CONCURRENT]).await;
    assert_eq!(held, Some(redis::Value::Int(streams)));
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", gateway.pid())])
        .status()
        .unwrap();
    assert!(status.success());
    for stream in open {
        let text = finish_stream(stream).await;
        assert!(
            text.contains("\"code\":\"gateway_shutdown\""),
            "no terminal error event: {}",
            &text[text.len().saturating_sub(300)..]
        );
        assert!(
            !text.contains("[DONE]"),
            "a cut stream must not look complete"
        );
    }
    for stream in responses {
        let text = finish_stream(stream).await;
        let tail = &text[text.len().saturating_sub(300)..];
        assert!(
            text.contains("event: error\ndata: {")
                && text.contains("\"code\":\"gateway_shutdown\""),
            "no Responses error event: {tail}"
        );
        assert!(
            !text.contains("response.completed"),
            "a cut stream must not look complete"
        );
    }
    let exit = tokio::task::spawn_blocking(move || {
        let status = gateway.wait_exit(Duration::from_secs(30));
        (gateway, status)
    })
    .await
    .unwrap();
    let (gateway, status) = exit;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
    let log = gateway.log_text();
    let cut_lines = log
        .lines()
        .filter(|l| l.contains("request finished") && l.contains("shutdown"))
        .count();
    assert_eq!(
        cut_lines, streams as usize,
        "access-log lines of cut streams"
    );
    assert!(log.contains("every settlement written"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal"
    );
    // Each cut stream is billed for what it delivered (no usage report came).
    let counted = Served::in_redis(&redis).await;
    assert_eq!(counted.requests, streams);
    assert!(counted.output >= streams, "{counted:?}");
    let held = redis.query(&["ZCARD", CONCURRENT]).await;
    assert_eq!(held, Some(redis::Value::Int(0)), "leases left behind");
    assert_eq!(
        redis
            .hash_field(&monthly_usage_key(), "reserved_nanos")
            .await,
        0
    );
}
