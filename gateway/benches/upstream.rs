//! Micro-benchmarks of whole proxied requests in-process: the router and handler, the call on
//! the in-task upstream connection (`upstream_http`, kept alive between requests) and the reply
//! relayed back, against a mock upstream on a thread of its own. A small JSON answer, and a
//! stream of 105 events (the per-chunk relay: read, usage scan, write).
//!
//! Run: `cargo bench -p llm-gateway --bench upstream`.

#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::StatusCode;
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use tower::ServiceExt;

use common::in_process::{CHAT, STREAM, anonymous_route, app, mock_on_its_own_thread, post};

/// Events the streamed answer carries beyond the mock's five.
const EXTRA_EVENTS: usize = 100;

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("proxied request");
    for (name, body, fault, events) in [
        ("JSON answer", CHAT, Fault::default(), 1),
        (
            "stream of 105 events",
            STREAM,
            Fault {
                extra_events: EXTRA_EVENTS,
                ..Fault::default()
            },
            EXTRA_EVENTS + MockUpstream::SSE_EVENTS.len(),
        ),
    ] {
        let base_url = mock_on_its_own_thread(fault);
        let (app, _dir) = runtime.block_on(async { app(&anonymous_route(&base_url)) });
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = app.clone().oneshot(post(body, None)).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(upstream, benches);
criterion_main!(upstream);
