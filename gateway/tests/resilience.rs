//! Faults survived, through the running binary: two mock upstreams, `a`
//! (faulty) and `b` (healthy), behind one route.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::scenario::Scenario;
use common::{Gateway, Load, new_key};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

/// Providers `a` and `b`, a route `m` over them with `route` settings, and a caller key.
fn config(a: &MockUpstream, b: &MockUpstream, key: &str, route: &str, breaker: &str) -> String {
    let provider = |name: &str, url: &str| {
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}}}\nspec:\n  type: openaiCompatible\n  baseUrl: {url}\n  allowLocalAddresses: true\n  timeouts: {{connect: 1s, firstByte: 2s, total: 10s}}\n  circuitBreaker: {breaker}\n---\n"
        )
    };
    format!(
        "{}{}apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: routes}}\nspec:\n{route}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: caller}}\nspec: {{secretName: caller-key, owner: team}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: caller-key}}\nstringData: {{apiKey: {key}}}\n",
        provider("a", &a.base_url),
        provider("b", &b.base_url)
    )
}

const BREAKER: &str = "{failureThreshold: 5, window: 30s, openFor: 1s, halfOpenProbes: 1}";

async fn start(route: &str) -> (MockUpstream, MockUpstream, Gateway) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let key = new_key();
    let gateway = Gateway::start(&config(&a, &b, &key, route, BREAKER), key, &[]).await;
    (a, b, gateway)
}

fn body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn server_error() -> Fault {
    Fault {
        status: Some(500),
        ..Fault::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_a_failing_weighted_target_costs_no_requests_and_little_load() {
    let route = "  routes:\n  - model: m\n    targets: [{provider: a, model: x, weight: 1}, {provider: b, model: x, weight: 1}]";
    let (a, b, gateway) = start(route).await;
    a.set_fault(server_error());
    let gateway = Arc::new(gateway);
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (gateway, ok, failed) = (gateway.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..250 {
                let counter = if gateway.chat(body("m")).await.status() == 200 {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    // Closed: 5 failures open the breaker; then at most one probe per 1 s open period (+1 for
    // the period in progress).
    let periods = elapsed.as_secs() + 2;
    let a_attempts = a.requests().len() as u64;
    eprintln!("F1: {ok}/2000 ok in {elapsed:?}; failing target saw {a_attempts} attempts");
    // Every failure on `a` is retried on the healthy `b`: the default retry (2 more attempts)
    // covers one failed pick, and the retry budget (a reserve of 10 plus a fifth of the last
    // 10 s of requests) always holds more than the at most 5 + one probe per open period
    // failures `a` can cause. So no request may fail, not even one (F1 in docs/testing.md).
    assert_eq!(
        (ok, failed),
        (2000, 0),
        "every request succeeds through a retry on b"
    );
    assert!(
        a_attempts <= 5 + periods,
        "failing target saw {a_attempts} attempts in {elapsed:?}"
    );
    assert!(a_attempts >= 5, "the breaker opened after 5 failures");
    // `b` never fails, so each request ended with exactly one call to it.
    assert_eq!(b.requests().len(), 2000, "one successful call per request");
    let breakers: Value = reqwest::get(format!("{}/health/circuit-breakers", gateway.admin_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = breakers["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["provider"] == "default/a")
        .unwrap()
        .clone();
    assert!(entry["opened_total"].as_u64().unwrap() >= 1, "{entry}");
}

#[tokio::test]
async fn f2_retry_after_cools_the_target_down() {
    let route = "  routes:\n  - model: m\n    strategy: priority\n    targets: [{provider: a, model: x}, {provider: b, model: x}]";
    let (a, b, gateway) = start(route).await;
    a.set_fault(Fault {
        status: Some(429),
        retry_after: Some("2".into()),
        ..Fault::default()
    });
    assert_eq!(gateway.chat(body("m")).await.status(), 200, "retried on b");
    assert_eq!(a.requests().len(), 1);
    a.set_fault(Fault::default());
    let cooling_until = Instant::now() + Duration::from_millis(1800);
    while Instant::now() < cooling_until {
        assert_eq!(gateway.chat(body("m")).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        a.requests().len(),
        1,
        "a got an attempt during its Retry-After"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gateway.chat(body("m")).await.status(), 200);
    assert_eq!(a.requests().len(), 2, "a is tried again after the cooldown");
    assert!(b.requests().len() > 5);
}

#[tokio::test]
async fn f3_no_request_outlives_its_route_timeout() {
    let route = "  timeout: 1s\n  routes:\n  - model: m\n    strategy: priority\n    targets: [{provider: a, model: x}, {provider: b, model: x}]";
    let (a, b, gateway) = start(route).await;
    for mock in [&a, &b] {
        mock.set_fault(Fault {
            delay: Duration::from_secs(5),
            ..Fault::default()
        });
    }
    let started = Instant::now();
    let response = gateway.chat(body("m")).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        elapsed < Duration::from_millis(1100),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn fallback_routes_serve_when_every_target_fails_and_client_errors_are_not_retried() {
    let route = "  routes:\n  - model: m\n    targets: [{provider: a, model: x}]\n    fallbacks: [backup]\n  - model: backup\n    targets: [{provider: b, model: y}]";
    let (a, b, gateway) = start(route).await;
    a.set_fault(server_error());
    let response = gateway.chat(body("m")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-llm-gateway-provider"], "b");
    assert_eq!(b.requests()[0].body["model"], "y");

    a.set_fault(Fault {
        status: Some(400),
        ..Fault::default()
    });
    let before = a.requests().len();
    assert_eq!(gateway.chat(body("m")).await.status(), 400);
    assert_eq!(
        a.requests().len(),
        before + 1,
        "a 400 is the client's: no retry, no fallback"
    );
}

#[tokio::test]
async fn breaker_opens_then_closes_after_the_probe_succeeds() {
    let route =
        "  retry: {attempts: 0}\n  routes:\n  - model: m\n    targets: [{provider: a, model: x}]";
    let (a, _b, gateway) = start(route).await;
    a.set_fault(server_error());
    for _ in 0..5 {
        assert_eq!(gateway.chat(body("m")).await.status(), 502);
    }
    let response = gateway.chat(body("m")).await;
    assert_eq!(
        response.status(),
        503,
        "open breaker refuses without an attempt"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(a.requests().len(), 5);
    let state = |v: Value| v["breakers"][0]["state"].as_str().unwrap().to_owned();
    let url = format!("{}/health/circuit-breakers", gateway.admin_url);
    assert_eq!(
        state(reqwest::get(&url).await.unwrap().json().await.unwrap()),
        "open"
    );
    a.set_fault(Fault::default());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        gateway.chat(body("m")).await.status(),
        200,
        "the half-open probe"
    );
    assert_eq!(
        state(reqwest::get(&url).await.unwrap().json().await.unwrap()),
        "closed"
    );
    let metrics = gateway.metrics_text().await;
    assert!(
        metrics.contains(
            r#"llm_circuit_breaker_transitions_total{provider="a",model="x",to="open"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn breaker_thresholds_reload_without_resetting_state() {
    let route =
        "  retry: {attempts: 0}\n  routes:\n  - model: m\n    targets: [{provider: a, model: x}]";
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let key = new_key();
    let gateway = Gateway::start(&config(&a, &b, &key, route, BREAKER), key.clone(), &[]).await;
    a.set_fault(server_error());
    for _ in 0..5 {
        gateway.chat(body("m")).await;
    }
    let slow = "{failureThreshold: 50, window: 30s, openFor: 30s, halfOpenProbes: 1}";
    gateway.write_config("gateway.yaml", &config(&a, &b, &key, route, slow));
    let url = format!("{}/health/circuit-breakers", gateway.admin_url);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health: Value = gateway.detailed().await;
        if health["config"]["generation"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "reload not applied");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let breakers: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(
        breakers["breakers"][0]["state"], "open",
        "state survives the reload"
    );
    assert_eq!(gateway.chat(body("m")).await.status(), 503);
}

#[tokio::test]
async fn max_concurrency_fails_fast_instead_of_queueing() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    a.set_fault(Fault {
        chunk_gap: Duration::from_millis(300),
        ..Fault::default()
    });
    let key = new_key();
    let route = "  routes:\n  - model: m\n    targets: [{provider: a, model: x}]";
    let text = Scenario::parse(&config(&a, &b, &key, route, BREAKER))
        .set("LlmProvider", "a", "spec.maxConcurrency", 1)
        .render();
    let gateway = Gateway::start(&text, key, &[]).await;
    let stream = gateway
        .chat(
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(stream.status(), 200);
    let started = Instant::now();
    let second = gateway.chat(body("m")).await;
    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "queued instead of failing fast"
    );
    stream.bytes().await.unwrap();
    assert_eq!(
        gateway.chat(body("m")).await.status(),
        200,
        "slot released when the stream ended"
    );
}

#[tokio::test]
async fn least_latency_prefers_the_faster_target() {
    let route = "  routes:\n  - model: m\n    strategy: leastLatency\n    targets: [{provider: a, model: x}, {provider: b, model: x}]";
    let (a, b, gateway) = start(route).await;
    a.set_fault(Fault {
        delay: Duration::from_millis(150),
        ..Fault::default()
    });
    for _ in 0..30 {
        assert_eq!(gateway.chat(body("m")).await.status(), 200);
    }
    assert!(
        a.requests().len() <= 2,
        "slow target got {} of 30",
        a.requests().len()
    );
    assert!(b.requests().len() >= 28);
}

fn stream_body(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn f4_resets_before_headers_are_retried_and_mid_stream_losses_end_the_stream() {
    let route = "  routes:\n  - model: m\n    strategy: priority\n    targets: [{provider: a, model: x}, {provider: b, model: x}]\n  - model: only-a\n    targets: [{provider: a, model: x}]";
    let (a, _b, gateway) = start(route).await;
    a.set_fault(Fault {
        drop_connection: true,
        ..Fault::default()
    });
    let response = gateway.chat(body("m")).await;
    assert_eq!(response.status(), 200, "F4a: retried on b");
    assert_eq!(response.headers()["x-llm-gateway-provider"], "b");

    a.set_fault(Fault {
        truncate_after: Some(2),
        chunk_gap: Duration::from_millis(20),
        ..Fault::default()
    });
    let before = a.requests().len();
    let response = gateway.chat(stream_body("only-a")).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with(&MockUpstream::SSE_EVENTS[..2].concat()),
        "{text}"
    );
    assert!(
        text.ends_with("\"type\":\"upstream_error\"}}\n\n"),
        "F4b: terminal error event: {text}"
    );
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        a.requests().len(),
        before + 1,
        "never retried after the first byte"
    );
}

#[tokio::test]
async fn f5_a_stalled_stream_ends_with_an_error_event_at_the_idle_timeout() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    a.set_fault(Fault {
        chunk_gap: Duration::from_secs(5),
        ..Fault::default()
    });
    let key = new_key();
    let route = "  routes:\n  - model: m\n    targets: [{provider: a, model: x}]";
    let text = Scenario::parse(&config(&a, &b, &key, route, BREAKER))
        .set("LlmProvider", "a", "spec.timeouts.streamIdle", "1s")
        .render();
    let gateway = Gateway::start(&text, key, &[]).await;
    let started = Instant::now();
    let body = gateway.chat(stream_body("m")).await.text().await.unwrap();
    let elapsed = started.elapsed();
    assert!(body.contains("stalled"), "{body}");
    assert!(
        elapsed < Duration::from_millis(1600),
        "idle timeout took {elapsed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while a.stream_outcomes() != (0, 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.stream_outcomes(),
        (0, 1),
        "the stalled upstream stream was closed"
    );
}

#[tokio::test]
async fn f8_a_client_leaving_before_the_first_byte_releases_its_slot() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    a.set_fault(Fault {
        delay: Duration::from_millis(800),
        ..Fault::default()
    });
    let key = new_key();
    let route = "  routes:\n  - model: m\n    targets: [{provider: a, model: x}]";
    let text = Scenario::parse(&config(&a, &b, &key, route, BREAKER))
        .set("LlmProvider", "a", "spec.maxConcurrency", 1)
        .render();
    let gateway = Gateway::start(&text, key, &[]).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&gateway.key)
        .json(&body("m"))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client should have timed out");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        gateway.chat(body("m")).await.status(),
        200,
        "the slot was released, not leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f20_flipping_weights_under_load_fails_no_request() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let key = new_key();
    let route = |wa: u32, wb: u32| {
        format!(
            "  routes:\n  - model: m\n    targets: [{{provider: a, model: x, weight: {wa}}}, {{provider: b, model: x, weight: {wb}}}]"
        )
    };
    let gateway = Arc::new(
        Gateway::start(
            &config(&a, &b, &key, &route(100, 0), BREAKER),
            key.clone(),
            &[],
        )
        .await,
    );
    let load = Load::start(&gateway, 4, 10_000, body("m"));
    for flip in 0..15u32 {
        let (wa, wb) = if flip % 2 == 0 { (0, 100) } else { (100, 0) };
        gateway.write_config(
            "gateway.yaml",
            &config(&a, &b, &key, &route(wa, wb), BREAKER),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = load.finish().await;
    assert_eq!(report.failed, 0);
    assert!(report.ok > 100);
    assert!(
        report.generations.len() >= 4,
        "reloads seen: {:?}",
        report.generations
    );
    assert!(!a.requests().is_empty() && !b.requests().is_empty());
}

#[tokio::test]
async fn refused_connections_are_retried_elsewhere_and_oversized_inputs_skip_small_targets() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = new_key();
    let route = "  routes:\n  - model: m\n    strategy: priority\n    targets: [{provider: a, model: x}, {provider: b, model: x}]\n  - model: long\n    strategy: priority\n    targets: [{provider: a, model: small}, {provider: b, model: x}]";
    let text = Scenario::parse(&config(&a, &b, &key, route, BREAKER))
        .replace(
            "LlmProvider",
            "a",
            "spec.baseUrl",
            format!("http://127.0.0.1:{closed_port}/v1"),
        )
        .set(
            "LlmProvider",
            "a",
            "spec.models",
            json!([{"name": "x"}, {"name": "small", "contextWindow": 10}]),
        )
        .render();
    let gateway = Gateway::start(&text, key, &[]).await;
    let started = Instant::now();
    let response = gateway.chat(body("m")).await;
    assert_eq!(
        response.status(),
        200,
        "connection refused by a, served by b"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(a.requests().is_empty());

    let prompt = "word ".repeat(100);
    let long = json!({"model": "long", "messages": [{"role": "user", "content": prompt}]});
    let response = gateway.chat(long).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-llm-gateway-provider"],
        "b",
        "a's 10-token window was skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_clients_that_never_read_are_cut_at_the_write_timeout_with_memory_bounded() {
    use tokio::io::AsyncWriteExt;
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    a.set_fault(Fault {
        extra_events: 60_000,
        ..Fault::default()
    });
    let key = new_key();
    let route = "  routes:\n  - model: m\n    targets: [{provider: a, model: x}]";
    let gateway = Gateway::start(
        &config(&a, &b, &key, route, BREAKER),
        key.clone(),
        &[("WRITE_TIMEOUT", "1s")],
    )
    .await;
    let rss = || async {
        let system: Value = reqwest::get(format!("{}/health/system", gateway.admin_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        system["process_resident_memory_bytes"].as_u64().unwrap()
    };
    let before = rss().await;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        stream_body("m").to_string().len(),
        stream_body("m")
    );
    let address: std::net::SocketAddr = gateway.url.trim_start_matches("http://").parse().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stalled.push(stream); // never read
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during = rss().await;
    eprintln!("F6: RSS {before} -> {during} bytes with 20 stalled streams");
    assert!(
        during.saturating_sub(before) < 20 * 1024 * 1024,
        "RSS grew from {before} to {during} bytes: over 1 MiB a stalled stream"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let in_flight = common::metric(&gateway.admin_url, "llm_requests_in_flight")
            .await
            .unwrap();
        if in_flight <= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{in_flight} requests still in flight: stalled clients were not cut"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every upstream stream ended: cancelled, or (when buffers on the way held all of it) sent
    // to the end. None is left open.
    let deadline = Instant::now() + Duration::from_secs(3);
    let ended = || {
        let (done, aborted) = a.stream_outcomes();
        done + aborted
    };
    while ended() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ended(),
        20,
        "upstream streams left open: {:?}",
        a.stream_outcomes()
    );
    assert!(
        a.stream_outcomes().1 >= 10,
        "most upstream streams must be cancelled: {:?}",
        a.stream_outcomes()
    );
    drop(stalled);
}
