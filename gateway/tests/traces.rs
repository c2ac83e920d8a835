//! OpenTelemetry traces through the running binary, exported over OTLP/gRPC to a real OTLP
//! receiver (a tonic server built from `opentelemetry-proto`): a streamed chat whose first
//! attempt fails makes one server span under the client's `traceparent` and one client span
//! per attempt, each of whose context reached the upstream.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::otlp::{Receiver, receiver, tls_receiver};
use common::{Gateway, manifests, new_key};
use futures_util::StreamExt;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => panic!("{key} of {}: {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(AnyValue::IntValue(n)) => *n,
        other => panic!("{key} of {}: {other:?}", span.name),
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// `SpanKind` numbers of the OTLP protocol.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_stream_is_one_server_span_with_a_client_span_per_attempt() {
    let (receiver, endpoint) = receiver().await;
    let upstream = MockUpstream::start().await;
    upstream.set_fault(Fault {
        status: Some(500),
        times: Some(1),
        ..Fault::default()
    });
    let key = new_key();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_SERVICE_NAME", "gateway-under-test"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer collector-token",
        ),
    ];
    let gateway = Gateway::start(&manifests(&upstream.base_url, &key), key.clone(), &env).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .header("tracestate", TRACESTATE)
        .json(
            &json!({"model": "alias", "stream": true, "max_tokens": 50, "temperature": 0.25,
                      "messages": [{"role": "user", "content": "a secret prompt"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    while body.next().await.is_some() {}
    drop(body);

    let ours = |span: &Span| hex::encode(&span.trace_id) == TRACE_ID;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<Span> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| ours(s))
            .cloned()
            .collect();
        if spans.iter().filter(|s| s.kind == CLIENT).count() == 2
            && spans.iter().any(|s| s.kind == SERVER)
        {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans never arrived: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(servers.len(), 1, "one server span per request");
    let server = servers[0];
    assert_eq!(
        hex::encode(&server.parent_span_id),
        CLIENT_SPAN,
        "under the client's span"
    );
    assert_eq!(text(server, "gen_ai.operation.name"), "chat");
    assert_eq!(text(server, "gen_ai.request.model"), "alias");
    assert_eq!(int(server, "gen_ai.request.max_tokens"), 50);
    assert_eq!(int(server, "gen_ai.usage.output_tokens"), 7);
    assert_eq!(int(server, "http.response.status_code"), 200);
    assert_eq!(text(server, "llm_gateway.route"), "alias");
    assert_eq!(text(server, "gen_ai.response.model"), "upstream-model");
    match attribute(server, "gen_ai.request.temperature") {
        Some(AnyValue::DoubleValue(t)) => assert_eq!(*t, 0.25),
        other => panic!("temperature: {other:?}"),
    }
    match attribute(server, "gen_ai.response.finish_reasons") {
        Some(AnyValue::ArrayValue(reasons)) => {
            assert_eq!(format!("{reasons:?}").matches("stop").count(), 1)
        }
        other => panic!("finish reasons: {other:?}"),
    }
    let mut clients: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    clients.sort_by_key(|s| int(s, "llm_gateway.attempt"));
    for client in &clients {
        assert_eq!(
            client.parent_span_id, server.span_id,
            "attempts are children of the request"
        );
        assert_eq!(text(client, "gen_ai.provider.name"), "openai_compatible");
        assert_eq!(text(client, "gen_ai.request.model"), "upstream-model");
    }
    assert_eq!(text(clients[0], "error.type"), "upstream_error");
    let status = clients[0].status.as_ref().map(|s| s.code);
    assert_eq!(status, Some(2), "a failed attempt has an error status");
    assert_eq!(int(clients[1], "http.response.status_code"), 200);
    assert_eq!(text(clients[1], "gen_ai.response.model"), "upstream-model");
    assert!(
        attribute(clients[1], "gen_ai.usage.output_tokens").is_none(),
        "usage once a trace"
    );
    assert!(
        clients[1]
            .events
            .iter()
            .any(|e| e.name == "gen_ai.first_token")
    );
    // Each attempt's own context reached the upstream.
    let sent: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = clients
        .iter()
        .map(|c| format!("00-{TRACE_ID}-{}-01", hex::encode(&c.span_id)))
        .collect();
    assert_eq!(sent, expected);
    for request in upstream.requests() {
        assert_eq!(
            request.headers["tracestate"], TRACESTATE,
            "the client's tracestate goes on"
        );
    }
    // Metadata only: no prompt, no key.
    let everything = format!("{spans:?}");
    assert!(!everything.contains("a secret prompt") && !everything.contains(&key));
    // The collector's credentials went with every export.
    let sent = receiver.1.lock().unwrap().clone();
    assert!(
        !sent.is_empty() && sent.iter().all(|a| a == "Bearer collector-token"),
        "{sent:?}"
    );
    // Counted once the collector's answer is back, which may trail the spans' arrival.
    spans_counted(&gateway, "exported", 3.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_hangs_costs_requests_nothing() {
    // A collector that takes connections and never answers: the first export hangs, the
    // bounded queue fills, and every further span is dropped, while requests go on.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hung.local_addr().unwrap());
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
        ("OTEL_BSP_SCHEDULE_DELAY", "10"),
    ];
    let gateway = Gateway::start(&manifests(&upstream.base_url, &key), key.clone(), &env).await;
    let client = reqwest::Client::new();
    for stream in (0..1000).map(|i| i % 2 == 0) {
        let response = client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(&key)
            .json(&json!({"model": "alias", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    assert_eq!(upstream.requests().len(), 1000, "every request was served");
    // Two spans a request went to a queue of 16: most were dropped, and each is counted.
    let dropped = r#"llm_trace_spans_total{outcome="dropped"}"#;
    let dropped = common::metric(&gateway.admin_url, dropped)
        .await
        .unwrap_or(0.0);
    assert!(dropped >= 1000.0, "{dropped} spans counted as dropped");
    drop(hung);
}

/// Sends a chat for `model` with `prompt`, reading the reply to its end.
async fn chat(gateway: &Gateway, model: &str, prompt: &str, stream: bool) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&gateway.key)
        .json(&json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

/// The server spans the receiver holds, once there are `n`.
async fn server_spans(receiver: &Receiver, n: usize) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans: Vec<Span> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == SERVER)
            .cloned()
            .collect();
        if spans.len() >= n {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans never arrived: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_captured_only_for_a_route_whose_policy_asks() {
    let (receiver, endpoint) = receiver().await;
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let captured = "---\napiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: captured}\nspec:\n  captureContent: true\n  routes:\n  - model: captured\n    targets: [{provider: upstream, model: upstream-model}]\n";
    let config = manifests(&upstream.base_url, &key)
        .replace("models: [alias,", "models: [captured, alias,")
        + captured;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let gateway = Gateway::start(&config, key, &env).await;
    chat(&gateway, "captured", "tell me a story", false).await;
    chat(&gateway, "captured", "tell me another", true).await;
    chat(&gateway, "alias", "private words", true).await;

    let spans = server_spans(&receiver, 3).await;
    let of = |prompt: &str| {
        spans
            .iter()
            .find(|s| {
                attribute(s, "gen_ai.input.messages")
                    .is_some_and(|v| format!("{v:?}").contains(prompt))
            })
            .unwrap_or_else(|| panic!("no span holds {prompt:?}: {spans:?}"))
    };
    let output = |span: &Span| text(span, "gen_ai.output.messages");
    assert!(output(of("tell me a story")).contains("mock answer"));
    // Streamed: assembled from the deltas sent to the client.
    assert!(
        output(of("tell me another")).contains("Hel\u{e9}"),
        "{}",
        output(of("tell me another"))
    );
    let uncaptured: Vec<&Span> = spans
        .iter()
        .filter(|s| attribute(s, "gen_ai.input.messages").is_none())
        .collect();
    assert_eq!(
        uncaptured.len(),
        1,
        "the other route's span carries no content"
    );
    assert!(attribute(uncaptured[0], "gen_ai.output.messages").is_none());
    assert!(!format!("{spans:?}").contains("private words"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_target_and_the_limiter_s_decision_are_on_the_server_span() {
    let (receiver, endpoint) = receiver().await;
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let config = manifests(&upstream.base_url, &key).replace(
        "owner: team-a,",
        "owner: team-a, limits: {requestsPerMinute: 1000},",
    );
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let gateway = Gateway::start(&config, key, &env).await;
    // The upstream asks for 30 s: the next request finds its only target cooling.
    upstream.set_fault(Fault {
        status: Some(429),
        retry_after: Some("30".into()),
        times: Some(1),
        ..Fault::default()
    });
    for _ in 0..2 {
        let response = gateway
            .chat(json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(response.status(), 429);
    }
    assert_eq!(
        upstream.requests().len(),
        1,
        "the cooling target was skipped"
    );

    let spans = server_spans(&receiver, 2).await;
    for span in &spans {
        assert_eq!(text(span, "llm_gateway.limiter.decision"), "admitted");
        assert_eq!(text(span, "llm_gateway.limiter.store"), "local");
    }
    let skips: Vec<String> = spans
        .iter()
        .flat_map(|s| &s.events)
        .filter(|e| e.name == "llm_gateway.target_skipped")
        .map(|e| format!("{:?}", e.attributes))
        .collect();
    // The first request's retry and the second request each found the target cooling.
    assert_eq!(skips.len(), 2, "{spans:?}");
    assert!(
        skips[0].contains("upstream/upstream-model: cooling down"),
        "{}",
        skips[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_collector_is_reached_over_grpc_tls_trusting_its_ca() {
    let (receiver, endpoint) = tls_receiver().await;
    let upstream = MockUpstream::start().await;
    let ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/otlp-tls/ca.pem"
    );
    let key = new_key();
    let config = manifests(&upstream.base_url, &key);
    let trusting = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let gateway = Gateway::start(&config, key.clone(), &trusting).await;
    chat(&gateway, "alias", "hi", false).await;
    assert_eq!(server_spans(&receiver, 1).await.len(), 1);
    drop(gateway);

    // Without the collector's CA the handshake fails: nothing arrives, and it is counted.
    let distrusting = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
    ];
    let gateway = Gateway::start(&config, key, &distrusting).await;
    let before = receiver.0.lock().unwrap().len();
    chat(&gateway, "alias", "hi", false).await;
    spans_counted(&gateway, "failed", 1.0).await;
    assert_eq!(
        receiver.0.lock().unwrap().len(),
        before,
        "an untrusted collector got spans"
    );
}

/// Waits (at most 30 s) until the gateway counted `at_least` spans with `outcome`.
async fn spans_counted(gateway: &Gateway, outcome: &str, at_least: f64) {
    let name = format!("llm_trace_spans_total{{outcome=\"{outcome}\"}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counted = common::metric(&gateway.admin_url, &name)
            .await
            .unwrap_or(0.0);
        if counted >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{counted} spans counted {outcome}, expected {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
