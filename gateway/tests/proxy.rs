//! The running binary in front of a mock OpenAI upstream: what the upstream receives, what
//! the client gets back, and what happens when either side misbehaves.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::time::Duration;

use common::scenario::Scenario;
use common::{Gateway, manifests, metric, new_key};
use futures_util::StreamExt;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use serde_json::{Value, json};

async fn setup() -> (MockUpstream, Gateway) {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let gateway = Gateway::start(&manifests(&upstream.base_url, &key), key, &[]).await;
    (upstream, gateway)
}

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "temperature": 0.5})
}

#[tokio::test]
async fn rewrites_model_swaps_credentials_and_forwards_only_allowed_headers() {
    let (upstream, gateway) = setup().await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&gateway.key)
        .header("x-api-key", "client-secret")
        .header("cookie", "session=1")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-request-id", "req-123")
        .header("user-agent", "test-agent")
        .json(&chat_body("alias", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-llm-gateway-route"], "alias");
    assert_eq!(response.headers()["x-llm-gateway-provider"], "upstream");
    assert_eq!(response.headers()["x-llm-gateway-generation"], "1");
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "mock answer");

    let received = &upstream.requests()[0];
    assert_eq!(received.body["model"], "upstream-model");
    assert_eq!(received.body["temperature"], 0.5);
    assert_eq!(
        received.headers["authorization"],
        "Bearer sk-upstream-secret"
    );
    assert_eq!(received.headers["x-request-id"], "req-123");
    assert_eq!(received.headers["user-agent"], "test-agent");
    for leaked in ["x-api-key", "cookie", "x-forwarded-for"] {
        assert!(
            !received.headers.contains_key(leaked),
            "{leaked} was forwarded"
        );
    }
    assert!(!String::from_utf8_lossy(&received.raw).contains(&gateway.key));
}

#[tokio::test]
async fn body_is_forwarded_byte_for_byte_when_the_model_is_not_mapped() {
    let (upstream, gateway) = setup().await;
    let raw = r#"{"model":"same-name",   "messages":[{"role":"user","content":"h\u00e9"}], "extra": {"nested": [1, 2.50]}}"#;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&gateway.key)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests()[0].raw, raw.as_bytes());
}

#[tokio::test]
async fn sse_events_arrive_byte_identical_and_usage_is_counted() {
    let (_upstream, gateway) = setup().await;
    let response = gateway.chat(chat_body("alias", true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes, MockUpstream::SSE_EVENTS.concat().as_bytes());
    let prefix = r#"llm_tokens_total{direction="output",model="alias",provider="upstream"}"#;
    assert_eq!(metric(&gateway.admin_url, prefix).await, Some(7.0));
    // The GenAI semantic conventions' histograms, with their attributes as labels.
    let call = r#"gen_ai_operation_name="chat",gen_ai_provider_name="openai_compatible",gen_ai_request_model="alias",gen_ai_response_model="upstream-model""#;
    let tokens = format!(r#"gen_ai_client_token_usage_sum{{{call},gen_ai_token_type="output"}}"#);
    assert_eq!(metric(&gateway.admin_url, &tokens).await, Some(7.0));
    let first = format!("gen_ai_server_time_to_first_token_seconds_count{{{call}}}");
    assert_eq!(metric(&gateway.admin_url, &first).await, Some(1.0));
    // Recorded when the stream's relay is dropped, just after its last byte.
    let ended = format!("gen_ai_server_request_duration_seconds_count{{{call}}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(&gateway.admin_url, &ended).await != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request duration recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_token = format!("gen_ai_server_time_per_output_token_seconds_count{{{call}}}");
    assert_eq!(metric(&gateway.admin_url, &per_token).await, Some(1.0));
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let (upstream, gateway) = setup().await;
    upstream.set_fault(Fault {
        chunk_gap: Duration::from_millis(300),
        ..Fault::default()
    });
    let response = gateway.chat(chat_body("alias", true)).await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while upstream.stream_outcomes() != (0, 1) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        upstream.stream_outcomes(),
        (0, 1),
        "upstream stream was not cancelled"
    );
    assert_eq!(
        metric(&gateway.admin_url, "llm_requests_in_flight").await,
        Some(0.0),
        "nothing in flight (the admin listener's requests are not counted)"
    );
}

#[tokio::test]
async fn upstream_failures_become_openai_errors() {
    // One attempt per request and no breakers: this test is about how each failure maps.
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let env = [
        ("RETRY_ENABLED", "false"),
        ("CIRCUIT_BREAKER_ENABLED", "false"),
    ];
    let gateway = Gateway::start(&manifests(&upstream.base_url, &key), key, &env).await;
    upstream.set_fault(Fault {
        status: Some(500),
        ..Fault::default()
    });
    let response = gateway.chat(chat_body("alias", false)).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "upstream_error");
    assert_eq!(
        body["error"]["message"],
        "upstream upstream answered HTTP 500"
    );

    upstream.set_fault(Fault {
        status: Some(503),
        retry_after: Some("3".into()),
        ..Fault::default()
    });
    let response = gateway.chat(chat_body("alias", false)).await;
    assert_eq!(response.status(), 503, "overload stays a retryable 503");
    assert_eq!(response.headers()["retry-after"], "3");

    upstream.set_fault(Fault {
        status: Some(429),
        retry_after: Some("7".into()),
        ..Fault::default()
    });
    let response = gateway.chat(chat_body("alias", true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    // The target now cools down for 7 s: the next request is refused without an attempt, with
    // a 429 like the provider's own, so SDKs back off instead of treating it as an outage.
    let attempts_before = upstream.requests().len();
    let response = gateway.chat(chat_body("alias", false)).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        upstream.requests().len(),
        attempts_before,
        "no attempt during the cooldown"
    );

    upstream.set_fault(Fault {
        delay: Duration::from_secs(3),
        ..Fault::default()
    });
    let started = std::time::Instant::now();
    let response = gateway.chat(chat_body("same-name", false)).await;
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "first-byte timeout of 2s not applied"
    );
}

#[tokio::test]
async fn client_errors_are_openai_shaped_with_the_right_status() {
    let (upstream, gateway) = setup().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gateway.url);
    let cases: Vec<(reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            client.post(&url).json(&chat_body("alias", false)),
            401,
            Some("invalid_api_key"),
        ),
        (
            client
                .post(&url)
                .bearer_auth("sk-lgw-wrong")
                .json(&chat_body("alias", false)),
            401,
            Some("invalid_api_key"),
        ),
        (
            client
                .post(&url)
                .bearer_auth(&gateway.key)
                .json(&chat_body("nope", false)),
            404,
            Some("model_not_found"),
        ),
        (
            client
                .post(&url)
                .bearer_auth(&gateway.key)
                .header("content-type", "application/json")
                .body("{bad"),
            400,
            None,
        ),
        (
            client
                .post(&url)
                .bearer_auth(&gateway.key)
                .header("content-type", "application/json")
                .body(""),
            400,
            None,
        ),
        (
            client
                .post(&url)
                .bearer_auth(&gateway.key)
                .json(&json!({"model": "alias", "messages": "x"})),
            400,
            None,
        ),
        (
            client
                .post(&url)
                .bearer_auth(&gateway.key)
                .json(&json!({"model": "alias", "messages": [{"role":"user"}], "max_tokens": -1})),
            400,
            None,
        ),
    ];
    for (i, (request, status, code)) in cases.into_iter().enumerate() {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "case {i}");
        let reason = match status {
            401 => "invalid_api_key",
            404 => "model_not_found",
            _ => "invalid_request",
        };
        assert_eq!(
            response.headers()["x-llm-gateway-reason"],
            reason,
            "case {i}: the reason code"
        );
        let body: Value = response.json().await.unwrap();
        let error = &body["error"];
        assert!(
            error["message"].is_string() && error["type"].is_string(),
            "case {i}: {body}"
        );
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "case {i}: {body}"
        );
        if let Some(code) = code {
            assert_eq!(error["code"], code, "case {i}");
        }
    }
    assert!(
        upstream.requests().is_empty(),
        "bad requests reached the upstream"
    );
    let prefix = r#"llm_api_key_rejections_total{reason="malformed"}"#;
    assert_eq!(metric(&gateway.admin_url, prefix).await, Some(1.0));
}

#[tokio::test]
async fn key_restricted_to_models_gets_403_and_filtered_model_list() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let config = Scenario::parse(&manifests(&upstream.base_url, &key))
        .replace("ApiKey", "caller", "spec.models", ["fake-*"])
        .render();
    let gateway = Gateway::start(&config, key, &[]).await;
    let response = gateway.chat(chat_body("alias", false)).await;
    assert_eq!(response.status(), 403);
    let models: Value = reqwest::Client::new()
        .get(format!("{}/v1/models", gateway.url))
        .bearer_auth(&gateway.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fake-model"]);
}

/// Sends a request head declaring (or streaming) more than the limit, plus a little of the
/// body, and reads what the gateway answers before the rest is sent.
async fn oversized_request(gateway: &Gateway, chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = gateway.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        "Content-Length: 104857600".to_owned()
    };
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{length}\r\n\r\n",
        gateway.key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..200 {
        let wrote = if chunked {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            socket.write_all(&framed).await
        } else {
            socket.write_all(&chunk).await
        };
        if wrote.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .unwrap()
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn oversized_bodies_get_413_without_being_read_whole() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let gateway = Gateway::start(
        &manifests(&upstream.base_url, &key),
        key,
        &[("MAX_REQUEST_BODY_BYTES", "1048576")],
    )
    .await;
    for chunked in [false, true] {
        let answer = oversized_request(&gateway, chunked).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {answer}"
        );
        assert!(answer.contains(r#""code":"request_too_large""#), "{answer}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn the_openapi_document_is_served_and_covers_every_route() {
    let (_upstream, gateway) = setup().await;
    let served: Value = reqwest::get(format!("{}/openapi.json", gateway.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let document: Value = serde_json::from_str(llm_gateway::http::OPENAPI).unwrap();
    assert_eq!(served, document);
    let paths = document["paths"].as_object().unwrap();
    let routes = [
        ("/v1/chat/completions", "post"),
        ("/v1/responses", "post"),
        ("/v1/completions", "post"),
        ("/v1/responses/input_tokens", "post"),
        ("/v1/responses/{id}", "get"),
        ("/v1/responses/{id}/input_items", "get"),
        ("/v1/messages/count_tokens", "post"),
        ("/v1/messages", "post"),
        ("/v1/embeddings", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{id}", "get"),
        ("/v1/usage", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/openapi.json", "get"),
    ];
    assert_eq!(
        paths.len(),
        routes.len(),
        "documented paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, method) in routes {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
        let status = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", gateway.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, 404, "{method} {path} is documented but not routed");
    }
    // What shows key ids, owners, configuration errors and provider states is only on the
    // admin listener.
    for path in [
        "/metrics",
        "/health/detailed",
        "/health/system",
        "/health/circuit-breakers",
    ] {
        let api = reqwest::get(format!("{}{path}", gateway.url))
            .await
            .unwrap();
        assert_eq!(api.status(), 404, "{path} is served on the API port");
        let admin = reqwest::get(format!("{}{path}", gateway.admin_url))
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "{path} on the admin listener");
    }
}

#[tokio::test]
async fn a_client_gone_before_the_response_headers_leaves_no_request_in_flight() {
    let (upstream, gateway) = setup().await;
    upstream.set_fault(Fault {
        delay: Duration::from_secs(5),
        ..Fault::default()
    });
    let request = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(&gateway.key)
        .json(&chat_body("alias", false))
        .send();
    // Give up while the upstream still holds the headers back.
    let waited = tokio::time::timeout(Duration::from_millis(300), request).await;
    assert!(
        waited.is_err(),
        "the upstream answered before the client left"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(&gateway.admin_url, "llm_requests_in_flight").await != Some(0.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a request stayed in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
