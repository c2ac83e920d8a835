//! `bench-load`: one load pattern against one URL, printing a JSON report on stdout (see
//! `tests/bench/README.md`). Single-threaded: the harness pins it to the load generator's core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{HeaderName, HeaderValue};
use llm_gateway_bench::load::{Target, closed_loop, open_loop, streams};

/// Load pattern.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// `--concurrency` workers back to back.
    Closed,
    /// `--rate` requests per second, latency from the scheduled start.
    Open,
    /// `--streams` streams over `--concurrency` connections, all started at once.
    Streams,
}

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Target address, e.g. 127.0.0.1:8000.
    #[arg(long)]
    address: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Model to ask for.
    #[arg(long, default_value = "bench")]
    model: String,
    /// Request streams (`"stream": true`) and time their chunks.
    #[arg(long)]
    stream: bool,
    /// Extra header, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, value_enum, default_value = "closed")]
    mode: Mode,
    /// Connections (closed and streams modes).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second (open mode).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Connections for open mode.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Streams to run (streams mode).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Seconds of load (closed and open modes), warm-up included.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds at the start that are not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

fn target(args: &Args) -> anyhow::Result<Target> {
    let body = serde_json::json!({
        "model": args.model,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 64,
        "stream": args.stream,
    });
    let headers = args
        .headers
        .iter()
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .context("--header wants `name: value`")?;
            Ok((
                HeaderName::from_bytes(name.trim().as_bytes())?,
                HeaderValue::from_str(value.trim())?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Target {
        address: args.address,
        path: args.path.clone(),
        body: Bytes::from(serde_json::to_vec(&body)?),
        headers,
        stream: args.stream,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = target(&args)?;
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let observed = runtime.block_on(async {
        match args.mode {
            Mode::Closed => closed_loop(&target, args.concurrency, warmup, duration).await,
            Mode::Open => open_loop(&target, args.rate, args.connections, warmup, duration).await,
            Mode::Streams => streams(&target, args.streams, args.concurrency).await,
        }
    });
    let measured = match args.mode {
        Mode::Streams => started.elapsed(),
        Mode::Closed | Mode::Open => duration.saturating_sub(warmup),
    };
    println!("{}", observed.report(measured));
    Ok(())
}
