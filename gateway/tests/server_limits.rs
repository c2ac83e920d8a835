//! The server's own limits, through the running binary: slow-loris headers and idle
//! keep-alive connections are closed after `HEADER_READ_TIMEOUT` while other clients are
//! served, at most `MAX_CONNECTIONS` connections are served at once, a slowly dripped body is
//! refused after `BODY_READ_TIMEOUT`, and an unsafe `x-request-id` is replaced.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::manifests::{caller_key, fake_provider, join, routes};
use common::{Gateway, new_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(key: &str) -> String {
    join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        caller_key(key, ""),
    ])
}

async fn start(env: &[(&str, &str)]) -> Gateway {
    let key = new_key();
    Gateway::start(&config(&key), key, env).await
}

async fn connect(gateway: &Gateway) -> TcpStream {
    TcpStream::connect(gateway.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Drips a request head one byte at a time until the server closes the connection; returns
/// how long the connection lived.
async fn slow_loris(mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nX-Padding: ";
    let mut buf = [0u8; 256];
    for (sent, byte) in head.iter().chain(std::iter::repeat(&b'a')).enumerate() {
        assert!(sent < 2_000, "still open after {sent} bytes");
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        // The server answers 408 or just closes: either way the read ends.
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(_) => break,
            Err(_) => continue,
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_cut_while_others_are_served() {
    let gateway = start(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut attackers = Vec::new();
    for _ in 0..200 {
        attackers.push(tokio::spawn(slow_loris(connect(&gateway).await)));
    }
    // Served meanwhile.
    let health = reqwest::get(format!("{}/health", gateway.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut longest = Duration::ZERO;
    for attacker in attackers {
        longest = longest.max(attacker.await.unwrap());
    }
    eprintln!("the longest slow-loris connection lived {longest:?}");
    // Bounded by the 2,000 bytes a dripper sends (over 200 s): only the timeout ends them.
    assert!(longest >= Duration::from_secs(1), "{longest:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let gateway = start(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut stream = connect(&gateway).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // The answer, then EOF once the connection idled past the timeout (bounded).
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the idle connection was never closed");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let gateway = start(&[("MAX_CONNECTIONS", "4"), ("HEADER_READ_TIMEOUT", "60s")]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&gateway).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(stream.read(&mut buf).await.unwrap() > 0, "served");
        held.push(stream);
    }
    let waiting = tokio::spawn(reqwest::get(format!("{}/health", gateway.url)));
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !waiting.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(early.is_err(), "a fifth connection was served over the cap");
    drop(held.pop());
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_unsafe_request_id_is_replaced() {
    let gateway = start(&[]).await;
    let client = reqwest::Client::new();
    let echo = async |id: &str| {
        let response = client
            .get(format!("{}/health", gateway.url))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(echo("req-42.a_b:c").await, "req-42.a_b:c");
    let long = "a".repeat(350_000);
    let replaced = echo(&long).await;
    assert_ne!(replaced, long);
    assert_eq!(replaced.len(), 36, "a fresh UUID: {replaced}");
    let replaced = echo("evil\"id{}<>").await;
    assert_eq!(replaced.len(), 36, "a fresh UUID: {replaced}");
}

#[tokio::test]
async fn a_dripped_body_is_refused_after_the_body_timeout() {
    let gateway = start(&[("BODY_READ_TIMEOUT", "1s"), ("HEADER_READ_TIMEOUT", "60s")]).await;
    let mut stream = connect(&gateway).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        gateway.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // A byte every 100 ms would take 100 s; the answer must come first (bounded by the loop).
    for _ in 0..1000 {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.ends_with(b"}") {
                    break;
                }
            }
            Ok(_) => break,
            Err(_) => {
                let _ = stream.write_all(b" ").await;
            }
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("BODY_READ_TIMEOUT"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_before_any_protocol_is_chosen() {
    let gateway = start(&[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(connect(&gateway).await);
    }
    for mut stream in silent {
        let mut buf = [0u8; 16];
        // EOF (or a reset) once the gateway gave up on the connection; bounded.
        let closed = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "a silent connection was kept"
        );
    }
    let health = reqwest::get(format!("{}/health", gateway.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
