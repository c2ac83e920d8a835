//! A raw HTTP/1.1 upstream that counts connections and misbehaves on request: it closes a
//! kept-alive connection after a reply, cuts a reply short, or holds the first requests until
//! a number of them are in flight. In the clear or under TLS (the test CA's certificate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Barrier, watch};

/// A request body containing this is answered with a reply cut short.
pub const BREAK: &str = "cut-this-reply-short";

/// What the upstream saw, with a signal on every change.
#[derive(Default)]
pub struct Counts {
    pub accepted: AtomicUsize,
    pub requests: AtomicUsize,
    /// Connections the gateway closed (end of file while waiting for a request).
    pub closed_by_gateway: AtomicUsize,
    /// Connections the upstream closed after a reply.
    pub closed_by_upstream: AtomicUsize,
}

pub struct Script {
    pub counts: Counts,
    /// Close each connection after its reply, without saying so in the reply.
    pub close_after_reply: AtomicBool,
    /// The first `n` requests wait until `n` are in flight.
    hold: Option<(usize, Barrier)>,
    changed: watch::Sender<u64>,
}

pub struct ScriptedUpstream {
    pub address: SocketAddr,
    pub script: Arc<Script>,
}

impl ScriptedUpstream {
    /// An upstream on a free loopback port; `tls` serves the test CA's certificate
    /// (`localhost`, `127.0.0.1`); `hold` holds the first requests until that many are in.
    pub async fn start(tls: bool, hold: Option<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let script = Arc::new(Script {
            counts: Counts::default(),
            close_after_reply: AtomicBool::new(false),
            hold: hold.map(|n| (n, Barrier::new(n))),
            changed: watch::channel(0).0,
        });
        let acceptor = tls.then(tls_acceptor);
        let serving = Arc::clone(&script);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                serving.bump(&serving.counts.accepted);
                let script = Arc::clone(&serving);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(socket).await {
                                serve(stream, script).await;
                            }
                        }
                        None => serve(socket, script).await,
                    }
                });
            }
        });
        Self { address, script }
    }

    /// Waits (up to 20 s) until `condition` holds for the counts.
    pub async fn until(&self, what: &str, condition: impl Fn(&Counts) -> bool) {
        let mut changes = self.script.changed.subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(20),
            changes.wait_for(|_| condition(&self.script.counts)),
        )
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }

    pub fn count(&self, counter: impl Fn(&Counts) -> &AtomicUsize) -> usize {
        counter(&self.script.counts).load(Ordering::SeqCst)
    }
}

impl Script {
    fn bump(&self, counter: &AtomicUsize) -> usize {
        let before = counter.fetch_add(1, Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
        before
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/otlp-tls");
    let certs = CertificateDer::pem_file_iter(format!("{dir}/collector.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/collector.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves requests on one connection until either side closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, script: Arc<Script>) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(body) = read_request(&mut reader).await else {
            script.bump(&script.counts.closed_by_gateway);
            return;
        };
        let index = script.bump(&script.counts.requests);
        if let Some((n, barrier)) = &script.hold
            && index < *n
        {
            barrier.wait().await;
        }
        let socket = reader.get_mut();
        let stream = body.contains("\"stream\":true");
        if body.contains(BREAK) {
            let _ = socket.write_all(cut_short(stream).as_bytes()).await;
            let _ = socket.shutdown().await;
            return;
        }
        let reply = if stream { sse_reply() } else { json_reply() };
        if socket.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        if script.close_after_reply.load(Ordering::SeqCst) {
            let _ = socket.shutdown().await;
            script.bump(&script.counts.closed_by_upstream);
            return;
        }
    }
}

/// Reads one request and returns its body; `None` at end of file.
async fn read_request<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<String> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    String::from_utf8(body).ok()
}

const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"upstream-model","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

const CHUNK: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"upstream-model","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}"#;

fn json_reply() -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{COMPLETION}",
        COMPLETION.len()
    )
}

fn chunked(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

fn sse_reply() -> String {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    let first = chunked(&format!("data: {CHUNK}\n\n"));
    let done = chunked("data: [DONE]\n\n");
    format!("{head}{first}{done}0\r\n\r\n")
}

/// The head and part of a reply, after which the connection is closed.
fn cut_short(stream: bool) -> String {
    if stream {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        format!("{head}{}", chunked(&format!("data: {CHUNK}\n\n")))
    } else {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            COMPLETION.len()
        );
        format!("{head}{}", &COMPLETION[..40])
    }
}
