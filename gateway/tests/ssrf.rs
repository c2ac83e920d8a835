//! The server-side request forgery guard at connect time, through the running binary: a host
//! *name* that resolves to loopback passes every literal check, so only the resolver can
//! refuse it; with `allowLocalAddresses` the same name works. The JWKS fetch is held to the
//! same guard and follows no redirect.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::manifests::{caller_key, fake_provider, join, routes};
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener that forwards every connection to `target` and counts them, so a test
/// knows whether the gateway connected at all.
struct Forwarder {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Forwarder {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Listens on `(address, free port)` and forwards to `target`; `None` when `address` cannot
/// be bound here (e.g. `::1` on a host without IPv6).
async fn forward(address: IpAddr, target: SocketAddr) -> Option<Forwarder> {
    let listener = TcpListener::bind((address, 0)).await.ok()?;
    let port = listener.local_addr().ok()?.port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Some(Forwarder { port, connections })
}

/// A host name that `/etc/hosts` maps to loopback and that no literal check refuses (not
/// `localhost`, `*.localhost` or a metadata name), with a forwarder to `target` listening
/// where the name resolves. Debian and Docker list `ip6-localhost` and `ip6-loopback` for
/// `::1`, and Debian maps the machine's own name to 127.0.1.1.
async fn loopback_name(target: SocketAddr) -> (String, Forwarder) {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut tried = Vec::new();
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(address)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if !address.is_loopback() {
            continue;
        }
        for name in fields {
            if llm_gateway_crds::egress::is_forbidden_host_name(name) {
                continue;
            }
            if let Some(found) = usable(name, target).await {
                return found;
            }
            tried.push(name.to_owned());
        }
    }
    panic!(
        "this test needs a host name that /etc/hosts maps to a loopback address (other than \
         localhost), such as Debian's ip6-localhost or the machine's own name; none worked \
         (tried {tried:?}). /etc/hosts is:\n{hosts}"
    );
}

/// `name` with a forwarder on its first address, if it resolves only to loopback addresses
/// and one of them can be bound.
async fn usable(name: &str, target: SocketAddr) -> Option<(String, Forwarder)> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name, 0)).await.ok()?.collect();
    if resolved.is_empty() || !resolved.iter().all(|a| a.ip().is_loopback()) {
        return None;
    }
    let forwarder = forward(resolved[0].ip(), target).await?;
    Some((name.to_owned(), forwarder))
}

/// The mock's listening address, from its base URL.
fn address_of(mock: &MockUpstream) -> SocketAddr {
    let authority = mock.base_url.trim_start_matches("http://");
    authority.split('/').next().unwrap().parse().unwrap()
}

fn provider_config(base_url: &str, allow: bool, key: &str) -> String {
    let provider = format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: internal}}\n\
         spec:\n  type: openaiCompatible\n  baseUrl: {base_url}\n  allowLocalAddresses: {allow}\n\
         \x20 timeouts: {{connect: 1s, firstByte: 2s, total: 5s}}\n"
    );
    join(&[
        provider,
        routes(&[("internal-model", "internal", "upstream-model")]),
        caller_key(key, ""),
    ])
}

async fn chat(gateway: &Gateway) -> (u16, Value) {
    let response = gateway
        .chat(json!({"model": "internal-model", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_base_url_name_resolving_to_loopback_is_refused_at_connect_time_unless_allowed() {
    let mock = MockUpstream::start().await;
    let (name, forwarder) = loopback_name(address_of(&mock)).await;
    let base_url = format!("http://{name}:{}/v1", forwarder.port);

    let key = new_key();
    let refused = Gateway::start(&provider_config(&base_url, false, &key), key, &[]).await;
    let (status, body) = chat(&refused).await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "baseUrl host {name} resolves only to non-public addresses (set \
             allowLocalAddresses: true to allow)"
        )),
        "{message}"
    );
    assert_eq!(forwarder.connections(), 0, "the gateway connected");
    assert!(mock.requests().is_empty(), "the upstream was called");
    drop(refused);

    let key = new_key();
    let allowed = Gateway::start(&provider_config(&base_url, true, &key), key, &[]).await;
    let (status, body) = chat(&allowed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.requests().len(), 1);
    assert!(forwarder.connections() >= 1);
}

fn jwks_config(jwks_uri: &str, allow: bool) -> String {
    let gateway = format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {{name: gw}}\nspec:\n  \
         auth: {{jwt: {{issuer: 'https://issuer.test', audiences: [gateway], jwksUri: '{jwks_uri}', \
         allowLocalAddresses: {allow}}}}}\n"
    );
    join(&[
        fake_provider("fake"),
        routes(&[("m", "fake", "m")]),
        gateway,
    ])
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_jwks_uri_resolving_to_loopback_is_refused_unless_allowed() {
    let mock = MockUpstream::start().await;
    mock.set_jwks(json!({"keys": []}));
    let (name, forwarder) = loopback_name(address_of(&mock)).await;
    let jwks_uri = format!("http://{name}:{}/jwks.json", forwarder.port);

    let refused = Gateway::start(&jwks_config(&jwks_uri, false), new_key(), &[]).await;
    let refusal = format!("jwksUri host {name} resolves only to non-public addresses");
    eventually("the refusal in the log", || {
        refused.log_text().contains(&refusal)
    })
    .await;
    assert_eq!(forwarder.connections(), 0, "the gateway connected");
    assert_eq!(mock.jwks_fetches(), 0);
    drop(refused);

    let _allowed = Gateway::start(&jwks_config(&jwks_uri, true), new_key(), &[]).await;
    eventually("the JWKS fetch", || mock.jwks_fetches() >= 1).await;
}

/// Answers every request with a redirect to `location`, counting requests.
async fn redirector(location: String) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0_u8; 4096];
            let _ = socket.read(&mut buffer).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (port, requests)
}

#[tokio::test]
async fn a_jwks_endpoint_answering_a_redirect_is_not_followed() {
    let mock = MockUpstream::start().await;
    mock.set_jwks(json!({"keys": []}));
    let target = format!("http://{}/jwks.json", address_of(&mock));
    let (port, requests) = redirector(target).await;
    let jwks_uri = format!("http://127.0.0.1:{port}/jwks.json");

    let gateway = Gateway::start(&jwks_config(&jwks_uri, true), new_key(), &[]).await;
    eventually("the JWKS request", || requests.load(Ordering::SeqCst) >= 1).await;
    eventually("the failed fetch in the log", || {
        gateway.log_text().contains("redirects are not followed")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.jwks_fetches(), 0, "the redirect was followed");
}
