//! The in-task upstream connection pool, through the running binary against a raw HTTP/1.1
//! upstream that counts connections: keep-alive reuse, a parked connection the upstream
//! closed, a reply cut short, the idle cap, and TLS upstreams verified against a private CA.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::atomic::Ordering;

use common::manifests::{caller_key, join, routes, upstream_provider};
use common::scripted_upstream::{BREAK, ScriptedUpstream};
use common::{Gateway, new_key};
use serde_json::{Value, json};

const CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/otlp-tls/ca.pem"
);

async fn gateway_for(base_url: &str, env: &[(&str, &str)]) -> Gateway {
    let key = new_key();
    let config = join(&[
        upstream_provider("upstream", base_url, "sk-upstream", ""),
        routes(&[("alias", "upstream", "upstream-model")]),
        caller_key(&key, ""),
    ]);
    Gateway::start(&config, key, env).await
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "alias", "stream": stream, "messages": [{"role": "user", "content": content}]})
}

/// Sends a chat request and returns the status and the whole body.
async fn send(gateway: &Gateway, content: &str, stream: bool) -> (u16, String) {
    let response = gateway.chat(chat(content, stream)).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_kept_alive_connection_is_reused_and_one_the_upstream_closed_is_replaced() {
    let upstream = ScriptedUpstream::start(false, None).await;
    let gateway = gateway_for(&format!("http://{}/v1", upstream.address), &[]).await;
    for stream in [false, true, false] {
        let (status, body) = send(&gateway, "hi", stream).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        upstream.count(|c| &c.accepted),
        1,
        "one kept-alive connection"
    );

    // From now on the upstream closes each connection after its reply, as servers do when
    // their keep-alive timeout is shorter than the gateway's.
    upstream
        .script
        .close_after_reply
        .store(true, Ordering::SeqCst);
    assert_eq!(send(&gateway, "hi", false).await.0, 200);
    upstream
        .until("the upstream closed the connection", |c| {
            c.closed_by_upstream.load(Ordering::SeqCst) == 1
        })
        .await;
    for stream in [true, false] {
        let (status, body) = send(&gateway, "hi", stream).await;
        assert_eq!(status, 200, "a closed parked connection was reused: {body}");
    }
    assert_eq!(upstream.count(|c| &c.accepted), 3);
    assert_eq!(upstream.count(|c| &c.requests), 6);
}

#[tokio::test]
async fn a_reply_cut_short_fails_only_its_request_and_its_connection_is_not_reused() {
    let upstream = ScriptedUpstream::start(false, None).await;
    let gateway = gateway_for(&format!("http://{}/v1", upstream.address), &[]).await;
    assert_eq!(send(&gateway, "hi", false).await.0, 200);

    let (status, body) = send(&gateway, BREAK, false).await;
    assert_eq!(status, 502, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(error["error"]["message"].is_string(), "{body}");
    assert!(!body.contains("sk-upstream"), "{body}");

    // A stream cut short: the first event reaches the client, then an error ends it.
    let (status, body) = send(&gateway, BREAK, true).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""content":"ok""#), "{body}");
    assert!(!body.contains("data: [DONE]"), "{body}");
    assert!(body.contains("error"), "{body}");

    // The first connection served the good request and the first cut one (the gateway may
    // retry a cut request); every later request needed a new connection.
    let broken = upstream.count(|c| &c.requests) - 1;
    let accepted = upstream.count(|c| &c.accepted);
    assert_eq!(accepted, broken, "a cut connection was reused");
    for stream in [false, true] {
        let (status, body) = send(&gateway, "hi", stream).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(upstream.count(|c| &c.accepted), accepted + 1);
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_are_closed_and_the_rest_reused() {
    const IN_FLIGHT: usize = 6;
    let upstream = ScriptedUpstream::start(false, Some(IN_FLIGHT)).await;
    let base = format!("http://{}/v1", upstream.address);
    let gateway = gateway_for(&base, &[("UPSTREAM_POOL_MAX_IDLE_PER_HOST", "2")]).await;
    let gateway = std::sync::Arc::new(gateway);
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let gateway = std::sync::Arc::clone(&gateway);
            tokio::spawn(async move { send(&gateway, "hi", i % 2 == 0).await })
        })
        .collect();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(upstream.count(|c| &c.accepted), IN_FLIGHT);
    upstream
        .until("the gateway closed the connections over the cap", |c| {
            c.closed_by_gateway.load(Ordering::SeqCst) == IN_FLIGHT - 2
        })
        .await;
    for stream in [false, true, false, true] {
        assert_eq!(send(&gateway, "hi", stream).await.0, 200);
    }
    assert_eq!(
        upstream.count(|c| &c.accepted),
        IN_FLIGHT,
        "the two kept are reused"
    );
    assert_eq!(upstream.count(|c| &c.closed_by_gateway), IN_FLIGHT - 2);
}

#[tokio::test]
async fn a_tls_upstream_is_verified_against_the_trusted_ca_and_kept_alive() {
    let upstream = ScriptedUpstream::start(true, None).await;
    let base = format!("https://localhost:{}/v1", upstream.address.port());
    let gateway = gateway_for(&base, &[("SSL_CERT_FILE", CA)]).await;
    for stream in [false, true, false] {
        let (status, body) = send(&gateway, "hi", stream).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""content":"ok""#), "{body}");
    }
    assert_eq!(
        upstream.count(|c| &c.accepted),
        1,
        "one TLS connection, kept alive"
    );

    // Without the CA the certificate is not trusted: no request reaches the upstream.
    let untrusting = gateway_for(&base, &[]).await;
    let (status, body) = send(&untrusting, "hi", false).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("cannot connect to upstream upstream"),
        "{body}"
    );
    assert_eq!(upstream.count(|c| &c.requests), 3);
}
