//! CPU per request of three HTTP/1.1 clients against `bench-upstream`, each on one thread with
//! `--concurrency` kept-alive connections doing requests back to back:
//!
//! - `in-task`: hyper's `client::conn::http1` connection polled by the task that sends the
//!   request and reads the reply (the gateway's upstream transport, without its pool and its
//!   wake filter, which matter for a large task and not here);
//! - `hyper-util`: hyper-util's pooled client, a task per connection (what reqwest uses);
//! - `pingora`: pingora-core's HTTP/1 connector (its pool) and inline client session.
//!
//! Run by `tests/bench/transport-compare/run.sh`; see `tests/bench/README.md`.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::FutureExt;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The load generator's small chat request.
const BODY: &[u8] = br#"{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}"#;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Client {
    InTask,
    HyperUtil,
    Pingora,
}

#[derive(Parser)]
struct Args {
    /// `bench-upstream`'s address, e.g. 127.0.0.1:9000.
    #[arg(long)]
    upstream: String,
    #[arg(long, value_enum)]
    client: Client,
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let each = args.requests / args.concurrency;
    let (wall, cpu) = (Instant::now(), thread_cpu());
    runtime.block_on(run(args.client, &args.upstream, args.concurrency, each));
    let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
    let done = (each * args.concurrency) as f64;
    println!(
        "{:?}: {} requests, {:.1} µs CPU per request, {:.0} requests/s",
        args.client,
        done,
        cpu.as_secs_f64() * 1e6 / done,
        done / wall.as_secs_f64()
    );
}

async fn run(client: Client, upstream: &str, workers: usize, each: usize) {
    let hyper_util = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let pingora = std::sync::Arc::new(pingora_core::connectors::http::v1::Connector::new(None));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let upstream = upstream.to_owned();
            let (hyper_util, pingora) = (hyper_util.clone(), pingora.clone());
            tokio::spawn(async move {
                match client {
                    Client::InTask => in_task(&upstream, each).await,
                    Client::HyperUtil => through_hyper_util(&hyper_util, &upstream, each).await,
                    Client::Pingora => through_pingora(&pingora, &upstream, each).await,
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
}

fn request(uri: &str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(header::HOST, "bench")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("request")
}

async fn in_task(upstream: &str, each: usize) {
    let stream = tokio::net::TcpStream::connect(upstream).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, mut connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    for _ in 0..each {
        let mut reply = pin!(sender.send_request(request("/v1/chat/completions")));
        let response = poll_fn(|cx| {
            let _ = connection.poll_unpin(cx);
            reply.as_mut().poll(cx)
        })
        .await
        .expect("reply");
        let mut body = response.into_body();
        while let Some(frame) = poll_fn(|cx| {
            let _ = connection.poll_unpin(cx);
            Pin::new(&mut body).poll_frame(cx)
        })
        .await
        {
            frame.expect("frame");
        }
        poll_fn(|cx| {
            let _ = connection.poll_unpin(cx);
            sender.poll_ready(cx)
        })
        .await
        .expect("ready");
    }
}

async fn through_hyper_util(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    upstream: &str,
    each: usize,
) {
    let uri = format!("http://{upstream}/v1/chat/completions");
    for _ in 0..each {
        let response = client.request(request(&uri)).await.expect("reply");
        response.into_body().collect().await.expect("body");
    }
}

async fn through_pingora(
    connector: &pingora_core::connectors::http::v1::Connector,
    upstream: &str,
    each: usize,
) {
    let peer = pingora_core::upstreams::peer::HttpPeer::new(upstream, false, String::new());
    for _ in 0..each {
        let (mut session, _reused) = connector.get_http_session(&peer).await.expect("session");
        let mut head = pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None)
            .expect("head");
        head.insert_header("host", "bench").expect("host");
        head.insert_header("content-type", "application/json").expect("type");
        head.insert_header("content-length", BODY.len()).expect("length");
        session.write_request_header(Box::new(head)).await.expect("write head");
        session.write_body(BODY).await.expect("write body");
        session.finish_body().await.expect("finish");
        session.read_response().await.expect("reply");
        while session.read_body_ref().await.expect("body").is_some() {}
        session.respect_keepalive();
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
    }
}

/// CPU time of this thread (the runtime's only one), from the scheduler's statistics.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos = text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    Duration::from_nanos(nanos)
}
