//! Heap allocations per proxied request, counted per thread by `allocation-counter`'s global
//! allocator: the mechanism behind the allocator's share of a request's CPU (ARCHITECTURE.md,
//! "Where the CPU goes"), measured exactly instead of timed. The router runs in-process on a
//! current-thread runtime whose thread alone is counted; the mock upstream runs on a thread
//! of its own and is not. The
//! ceiling is a ratchet: lower it when a change removes allocations, never raise it to make
//! room for new ones without saying why.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use llm_gateway_mock_upstream::MockUpstream;
use tower::ServiceExt;

use common::in_process::app;
use common::manifests::{join, routes, upstream_provider};
use common::scenario::Scenario;

/// A mock upstream on its own thread and runtime (its allocations are not counted).
fn upstream() -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let mock = MockUpstream::start().await;
            sender.send(mock.base_url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    receiver.recv().unwrap()
}

/// An anonymous gateway with one route to `base_url`, the bench's configuration.
fn scenario(base_url: &str) -> Scenario {
    Scenario::parse(&join(&[
        upstream_provider("upstream", base_url, "sk-upstream", ""),
        routes(&[("small", "upstream", "upstream-model")]),
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {name: gateway}\nspec: {auth: {apiKeys: false}}\n".to_owned(),
    ]))
}

fn chat() -> Request<Body> {
    let body = r#"{"model":"small","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))))
        .body(Body::from(body))
        .unwrap()
}

/// Most allocations a plain proxied chat request may make on the gateway's side: routing,
/// the handler, the upstream exchange on a kept-alive connection, metrics and the reply.
const CEILING: u64 = 78;

#[test]
fn a_proxied_request_allocates_no_more_than_its_ceiling() {
    // One thread runs the router, the upstream exchange and every task they spawn.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base_url = upstream();
    let (app, _dir) = runtime.block_on(async { app(&scenario(&base_url)) });
    let send = |count: u64| {
        runtime.block_on(async {
            for _ in 0..count {
                let response = app.clone().oneshot(chat()).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
            }
        });
    };
    // Warm: the pooled connection, the route's metric handles, lazily built state.
    send(20);
    const REQUESTS: u64 = 200;
    let counted = allocation_counter::measure(|| send(REQUESTS));
    let per_request = counted.count_total as f64 / REQUESTS as f64;
    eprintln!("{per_request:.1} allocations per request");
    assert!(
        per_request <= CEILING as f64,
        "{per_request:.1} allocations per request, ceiling {CEILING}"
    );
}
