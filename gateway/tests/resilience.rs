//! Faults survived (TESTING.md §2 B), through the running binary: two mock upstreams, `a`
//! (faulty) and `b` (healthy), behind one route.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, new_key};
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
    assert_eq!(ok + failed, 2000);
    assert!(ok * 1000 >= 1999, "success {ok}/2000 is below 99.9%");
    // Closed: 5 failures open the breaker; then at most one probe per 1 s open period (+1 for
    // the period in progress).
    let periods = elapsed.as_secs() + 2;
    let a_attempts = a.requests().len() as u64;
    eprintln!("F1: {ok}/2000 ok in {elapsed:?}; failing target saw {a_attempts} attempts");
    assert!(
        a_attempts <= 5 + periods,
        "failing target saw {a_attempts} attempts in {elapsed:?}"
    );
    assert!(b.requests().len() >= 2000);
    let breakers: Value = reqwest::get(format!("{}/health/circuit-breakers", gateway.url))
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
    let url = format!("{}/health/circuit-breakers", gateway.url);
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
    let metrics = reqwest::get(format!("{}/metrics", gateway.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let url = format!("{}/health/circuit-breakers", gateway.url);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health: Value = reqwest::get(format!("{}/health/detailed", gateway.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
    let text = config(&a, &b, &key, route, BREAKER).replacen(
        "  circuitBreaker:",
        "  maxConcurrency: 1\n  circuitBreaker:",
        1,
    );
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
