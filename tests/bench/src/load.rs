//! The load generator: fixed concurrency (closed loop), fixed request rate (open loop, latency
//! counted from each request's scheduled start, so a stalled target cannot hide its queueing)
//! and concurrent streams (time to first chunk and every gap between chunks). Each worker owns
//! one keep-alive HTTP/1.1 connection, the way proxies' clients and nginx's upstream pools do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::stats::Latencies;

/// The request every worker sends.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub address: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// JSON body.
    pub body: Bytes,
    /// Extra headers (authorization).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether answers are event streams to time chunk by chunk.
    pub stream: bool,
}

/// What one or more workers saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// Completed exchanges with a 200 and a whole body.
    pub ok: u64,
    /// Failed exchanges.
    pub errors: u64,
    /// The first few failure messages.
    pub error_samples: Vec<String>,
    /// Whole-exchange latency.
    pub latency: Latencies,
    /// Streams: time to the first body chunk.
    pub ttfb: Latencies,
    /// Streams: time between consecutive body chunks.
    pub gaps: Latencies,
}

impl Observed {
    fn fail(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(format!("{error:#}"));
        }
    }

    /// Adds another worker's observations.
    pub fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.errors += other.errors;
        let room = 5usize.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
        self.latency.merge(&other.latency);
        self.ttfb.merge(&other.ttfb);
        self.gaps.merge(&other.gaps);
    }

    /// The report printed by `bench-load`, over `measured` seconds of measurement.
    pub fn report(&self, measured: Duration) -> Value {
        json!({
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "measured_s": measured.as_secs_f64(),
            "throughput_rps": self.ok as f64 / measured.as_secs_f64().max(1e-9),
            "latency_us": self.latency.summary(),
            "ttfb_us": self.ttfb.summary(),
            "gap_us": self.gaps.summary(),
        })
    }
}

/// One keep-alive connection, re-opened after a failure.
#[derive(Debug, Default)]
pub struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    async fn sender(
        &mut self,
        address: SocketAddr,
    ) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let socket = TcpStream::connect(address).await.context("connect")?;
            socket.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(socket)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        Ok(sender)
    }

    /// Sends one request and reads the whole answer, recording it as started at `started`.
    pub async fn exchange(&mut self, target: &Target, started: Instant, observed: &mut Observed) {
        match self.try_exchange(target, started, observed).await {
            Ok(()) => {
                observed.ok += 1;
                observed.latency.record(started.elapsed());
            }
            Err(error) => {
                self.sender = None;
                observed.fail(&error);
            }
        }
    }

    async fn try_exchange(
        &mut self,
        target: &Target,
        started: Instant,
        observed: &mut Observed,
    ) -> anyhow::Result<()> {
        let mut request = Request::post(target.path.as_str())
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(target.body.clone()))?;
        for (name, value) in &target.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = self
            .sender(target.address)
            .await?
            .send_request(request)
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            bail!(
                "status {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            );
        }
        if !target.stream {
            body.collect().await?;
            return Ok(());
        }
        let mut last_chunk: Option<Instant> = None;
        let mut tail = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let now = Instant::now();
            match last_chunk {
                None => observed.ttfb.record(now - started),
                Some(previous) => observed.gaps.record(now - previous),
            }
            last_chunk = Some(now);
            tail.extend_from_slice(&data[data.len().saturating_sub(32)..]);
            tail.drain(..tail.len().saturating_sub(32));
        }
        if !tail.ends_with(b"data: [DONE]\n\n") {
            bail!("stream ended without data: [DONE]");
        }
        Ok(())
    }
}

/// Closed loop: `concurrency` workers send back to back for `duration`; the first `warmup` is
/// not recorded.
pub async fn closed_loop(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Observed {
    let start = Instant::now();
    let recording_from = start + warmup;
    let end = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut connection = Connection::default();
                let mut mine = Observed::default();
                let mut scratch = Observed::default();
                while Instant::now() < end {
                    let started = Instant::now();
                    let into = if started >= recording_from {
                        &mut mine
                    } else {
                        &mut scratch
                    };
                    connection.exchange(&target, started, into).await;
                }
                mine
            })
        })
        .collect();
    gather(workers).await
}

/// Open loop: `rate` requests per second scheduled for `duration` over `connections`
/// connections; latency is counted from each request's scheduled time, so waiting for a free
/// connection counts.
pub async fn open_loop(
    target: &Target,
    rate: f64,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Observed {
    let (schedule, scheduled) = async_channel::unbounded::<(Instant, bool)>();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let target = target.clone();
            let scheduled = scheduled.clone();
            tokio::spawn(async move {
                let mut connection = Connection::default();
                let mut mine = Observed::default();
                let mut scratch = Observed::default();
                while let Ok((at, recorded)) = scheduled.recv().await {
                    let into = if recorded { &mut mine } else { &mut scratch };
                    connection.exchange(&target, at, into).await;
                }
                mine
            })
        })
        .collect();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = start;
    while next < start + duration {
        tokio::time::sleep_until(next.into()).await;
        // Latency counts from when the request was due to leave, except for the timer's own
        // lateness (tokio's timer wheel has millisecond slots, which would add up to 1 ms to
        // every target alike). A schedule that fell behind sends its backlog at once.
        let due = Instant::now();
        // The channel is unbounded and open while this loop runs.
        let _ = schedule.send((due, next >= start + warmup)).await;
        next += interval;
    }
    schedule.close();
    gather(workers).await
}

/// `streams` streams over `concurrency` connections, all started at once.
pub async fn streams(target: &Target, streams: usize, concurrency: usize) -> Observed {
    let per_worker = streams.div_ceil(concurrency.max(1));
    let workers: Vec<_> = (0..concurrency.min(streams))
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut connection = Connection::default();
                let mut mine = Observed::default();
                for _ in 0..per_worker {
                    connection
                        .exchange(&target, Instant::now(), &mut mine)
                        .await;
                }
                mine
            })
        })
        .collect();
    gather(workers).await
}

/// Awaits every worker (already spawned: a lazy iterator here would run them one by one).
async fn gather(workers: impl IntoIterator<Item = tokio::task::JoinHandle<Observed>>) -> Observed {
    let mut all = Observed::default();
    for worker in workers {
        match worker.await {
            Ok(observed) => all.merge(observed),
            Err(error) => all.fail(&anyhow::anyhow!("worker panicked: {error}")),
        }
    }
    all
}
