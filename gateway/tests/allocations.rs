//! Heap allocations per proxied request, counted per thread by `allocation-counter`'s global
//! allocator: the mechanism behind the allocator's share of a request's CPU (ARCHITECTURE.md,
//! "Where the CPU goes"), measured exactly instead of timed. The router runs in-process on a
//! current-thread runtime whose thread alone is counted; the mock upstream runs on a thread
//! of its own and is not. The
//! ceiling is a ratchet: lower it when a change removes allocations, never raise it to make
//! room for new ones without saying why.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use axum::body::Body;
use http::{Request, StatusCode};
use llm_gateway_mock_upstream::{Fault, MockUpstream};
use tower::ServiceExt;

use common::in_process::{CHAT, STREAM, anonymous_route, app_with, mock_on_its_own_thread, post};
use common::manifests::{caller_key, join, routes, upstream_provider};
use common::redis_server::RedisServer;
use common::scenario::Scenario;

/// A mock upstream on its own thread and runtime (its allocations are not counted).
fn upstream() -> String {
    mock_on_its_own_thread(Fault::default())
}

/// [`anonymous_route`] behind an API key with request, token and concurrency limits too high to
/// refuse, the bench's `gateway+auth+redis` configuration.
fn keyed_scenario(base_url: &str) -> Scenario {
    let limits = ", limits: {requestsPerMinute: 100000000, tokensPerMinute: 100000000000, maxConcurrent: 100000}";
    Scenario::parse(&join(&[
        upstream_provider("upstream", base_url, "sk-upstream", ""),
        routes(&[("small", "upstream", "upstream-model")]),
        caller_key(&KEY, limits),
    ]))
}

static KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(common::new_key);

fn chat(key: Option<&str>) -> Request<Body> {
    post(CHAT, key)
}

/// Most allocations a plain proxied chat request may make on the gateway's side: routing,
/// the handler, the upstream exchange on a kept-alive connection, metrics and the reply.
const CEILING: u64 = 78;

/// Events the streamed request's upstream sends beyond the mock's five.
const EXTRA_EVENTS: usize = 100;

/// Most allocations of a streamed request of 105 events on the same route, per event (the
/// request's own share included: about 0.7). Reads may split or merge events differently
/// from run to run, hence the margin; one allocation more per event would cross it.
const STREAM_EVENT_CEILING: f64 = 1.25;

/// Most allocations of the same request behind an API key whose limits live in Redis: the
/// key lookup, the admission script on the request's path, and the settlement after it
/// (157 measured; Redis's replies may arrive in one read or two, hence the margin).
const KEYED_CEILING: u64 = 162;

/// Keyed requests counted.
const KEYED_REQUESTS: u64 = 200;

#[test]
fn a_proxied_request_allocates_no_more_than_its_ceiling() {
    let base_url = upstream();
    let per_request = allocations_per_request(200, &anonymous_route(&base_url), &[], || chat(None));
    assert!(
        per_request <= CEILING as f64,
        "{per_request:.1} allocations per request, ceiling {CEILING}"
    );
}

#[test]
fn a_streamed_request_allocates_no_more_than_its_ceiling_per_event() {
    let base_url = mock_on_its_own_thread(Fault {
        extra_events: EXTRA_EVENTS,
        ..Fault::default()
    });
    let per_stream =
        allocations_per_request(50, &anonymous_route(&base_url), &[], || post(STREAM, None));
    let per_event = per_stream / (EXTRA_EVENTS + MockUpstream::SSE_EVENTS.len()) as f64;
    eprintln!("{per_event:.2} allocations per streamed event");
    assert!(
        per_event <= STREAM_EVENT_CEILING,
        "{per_event:.2} allocations per streamed event, ceiling {STREAM_EVENT_CEILING}"
    );
}

#[test]
fn a_keyed_request_with_redis_limits_allocates_no_more_than_its_ceiling() {
    let base_url = upstream();
    let helper = tokio::runtime::Runtime::new().unwrap();
    let redis = helper.block_on(RedisServer::start());
    let url = redis.url();
    // A timeout no busy machine reaches: past the default 20 ms the breaker would open and
    // admit from memory, and the count would no longer be Redis's path.
    let extra = [
        "--rate-limit-storage",
        "redis",
        "--redis-url",
        &url,
        "--redis-timeout",
        "10s",
    ];
    let per_request =
        allocations_per_request(KEYED_REQUESTS, &keyed_scenario(&base_url), &extra, || {
            chat(Some(&KEY))
        });
    // Every request was admitted by a script in Redis, and all but the last were settled.
    let sent = KEYED_REQUESTS + KEYED_REQUESTS / 10;
    let scripts = helper.block_on(script_calls(&url));
    assert!(
        scripts >= 2 * sent - 1,
        "{scripts} script calls for {sent} requests"
    );
    assert!(
        per_request <= KEYED_CEILING as f64,
        "{per_request:.1} allocations per request, ceiling {KEYED_CEILING}"
    );
    drop(redis);
}

/// The `EVALSHA` calls Redis has served.
async fn script_calls(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    let line = stats.lines().find(|l| l.starts_with("cmdstat_evalsha:"));
    let calls = line.and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok());
    calls.unwrap_or(0)
}

/// Allocations per request of `scenario` served in-process, counted over `requests` requests
/// after a tenth as many that warm it.
fn allocations_per_request(
    requests: u64,
    scenario: &Scenario,
    extra: &[&str],
    request: impl Fn() -> Request<Body>,
) -> f64 {
    // One thread runs the router, the upstream exchange and every task they spawn.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (app, _dir) = runtime.block_on(async { app_with(scenario, extra) });
    let send = |count: u64| {
        runtime.block_on(async {
            for _ in 0..count {
                let response = app.clone().oneshot(request()).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                // Let the settlement spawned after the response start; its Redis reply is
                // read during the next request (steady state, as under load).
                tokio::task::yield_now().await;
            }
        });
    };
    // Warm: the pooled connection, the route's metric handles, lazily built state.
    send(requests / 10);
    let counted = allocation_counter::measure(|| send(requests));
    let per_request = counted.count_total as f64 / requests as f64;
    eprintln!("{per_request:.1} allocations per request");
    per_request
}
