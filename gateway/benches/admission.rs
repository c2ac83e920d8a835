//! Latency of one admission and one settlement: Redis (a local `redis-server`, one Lua
//! script round trip each) and memory, serially, reported as percentiles. A criterion mean
//! would hide the tail, which is what a limiter adds to p99.
//!
//! Run: `cargo bench -p llm-gateway --bench admission` (needs `redis-server` on the PATH).

#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use llm_gateway::limits::demand::{CallerAccount, TokenReserve};
use llm_gateway::limits::meter::Price;
use llm_gateway::limits::{Demand, Limiter, LimiterSettings, Outcome};
use llm_gateway::metrics::Metrics;
use llm_gateway::request::ClientRequest;
use llm_gateway_crds::llm_gateway::OnUnavailable;
use llm_gateway_crds::policy::{Budget, BudgetPeriod, RateLimits};

const ROUNDS: usize = 20_000;

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name:<28} p50 {:>8.1} µs   p99 {:>8.1} µs   p99.9 {:>8.1} µs",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(0.999).as_secs_f64() * 1e6
    );
}

async fn measure(name: &str, limiter: &Limiter) {
    let body = Bytes::from_static(
        br#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}"#,
    );
    let request = ClientRequest::parse(body).unwrap();
    let limits = RateLimits {
        requests_per_minute: Some(u64::MAX / 4),
        tokens_per_minute: Some(u64::MAX / 4),
        max_concurrent: Some(1_000_000),
    };
    let budget = Budget {
        usd: 1e6,
        period: BudgetPeriod::Monthly,
    };
    let (mut admits, mut settles) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for round in 0..ROUNDS + 1000 {
        let caller = CallerAccount {
            account: "key:default/bench",
            limits: Some(&limits),
            budget: Some(&budget),
            quotas: &[],
        };
        let mut demand = Demand::build(
            Some(caller),
            "m",
            Some(&limits),
            TokenReserve::of(&request, None),
            Price::default(),
            Duration::from_secs(60),
        );
        let started = Instant::now();
        let (store, _) = limiter.admit(&mut demand).await.unwrap();
        let admitted = started.elapsed();
        let ticket = limiter.ticket(&demand);
        let started = Instant::now();
        limiter
            .settle(store, demand, Outcome::default(), ticket)
            .await;
        if round >= 1000 {
            admits.push(admitted);
            settles.push(started.elapsed());
        }
    }
    percentiles(&format!("{name} admit"), admits);
    percentiles(&format!("{name} settle"), settles);
}

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be on the PATH");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let metrics = Arc::new(Metrics::new());
        let settings = |redis_url: Option<String>| LimiterSettings {
            redis_url,
            on_unavailable: OnUnavailable::FailClosed,
            redis_timeout: Duration::from_secs(1),
            redis_cluster: false,
            replicas: 1,
        };
        let redis_limiter =
            Limiter::new(settings(Some(format!("redis://127.0.0.1:{port}"))), metrics.clone())
                .unwrap();
        let memory = Limiter::new(settings(None), metrics).unwrap();
        println!("{ROUNDS} serial admissions, each with caller RPM, TPM, concurrency and budget plus route RPM, TPM, concurrency");
        measure("redis", &redis_limiter).await;
        measure("memory", &memory).await;
    });
    let _ = redis.kill();
    let _ = redis.wait();
}
