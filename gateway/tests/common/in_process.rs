//! The API router built in-process (no listener, no child process), by the functions
//! `server::serve` builds it with, from a config directory written by the scenario builder;
//! requests go through `tower::ServiceExt::oneshot`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use clap::Parser;
use http::Request;
use llm_gateway::args::Cli;
use llm_gateway::config::SnapshotHandle;
use llm_gateway::config::loader::ReloadOutcome;
use llm_gateway::metrics::Metrics;
use llm_gateway::server;
use llm_gateway::targets::TargetRegistry;
use llm_gateway_mock_upstream::{Fault, MockUpstream};

use super::TEST_PEPPER;
use super::manifests::{join, routes, upstream_provider};
use super::scenario::Scenario;

/// The router over `scenario`, with the binary's default settings, wired by the functions
/// `server::serve` uses (directory source, no Redis, no listener).
pub fn app(scenario: &Scenario) -> (Router, tempfile::TempDir) {
    app_with(scenario, &[])
}

/// [`app`] with more command-line settings (`--rate-limit-storage` among them replaces
/// `memory`).
pub fn app_with(scenario: &Scenario, extra: &[&str]) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    scenario.write_to(dir.path());
    let mut argv = vec![
        "llm-gateway",
        "--config",
        super::path_str(dir.path()),
        "--api-key-pepper",
        TEST_PEPPER,
    ];
    if !extra.contains(&"--rate-limit-storage") {
        argv.extend(["--rate-limit-storage", "memory"]);
    }
    argv.extend_from_slice(extra);
    let args = Cli::try_parse_from(argv).unwrap().serve;

    let metrics = Arc::new(Metrics::new());
    let snapshots = Arc::new(SnapshotHandle::default());
    let targets = Arc::new(TargetRegistry::new(metrics.clone()));
    let loader = server::loader(&args, &snapshots, &metrics, &targets).unwrap();
    let outcome = loader.reload();
    assert!(
        matches!(outcome, ReloadOutcome::Applied(_)),
        "config rejected: {outcome:?}\n{}",
        scenario.render()
    );
    let state = server::app_state(&args, snapshots, metrics, targets).unwrap();
    (llm_gateway::router(state), dir)
}

/// A mock upstream answering every request with `fault`, on a thread and runtime of its own
/// (so what it costs is not counted with the gateway's work); its base URL.
pub fn mock_on_its_own_thread(fault: Fault) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let mock = MockUpstream::start().await;
            mock.set_fault(fault);
            sender.send(mock.base_url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    receiver.recv().unwrap()
}

/// An anonymous gateway with one route, `small`, to `base_url` (the bench's configuration).
pub fn anonymous_route(base_url: &str) -> Scenario {
    Scenario::parse(&join(&[
        upstream_provider("upstream", base_url, "sk-upstream", ""),
        routes(&[("small", "upstream", "upstream-model")]),
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {name: gateway}\nspec: {auth: {apiKeys: false}}\n".to_owned(),
    ]))
}

/// A small chat request to `small`.
pub const CHAT: &str =
    r#"{"model":"small","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;

/// The same, streamed with usage.
pub const STREAM: &str = r#"{"model":"small","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}"#;

/// `body` as a chat request from a loopback client, with `key` when given.
pub fn post(body: &'static str, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request
        .header("content-type", "application/json")
        .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))))
        .body(Body::from(body))
        .unwrap()
}
