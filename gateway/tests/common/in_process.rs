//! The API router built in-process (no listener, no child process), by the functions
//! `server::serve` builds it with, from a config directory written by the scenario builder;
//! requests go through `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::Router;
use clap::Parser;
use llm_gateway::args::Cli;
use llm_gateway::config::SnapshotHandle;
use llm_gateway::config::loader::ReloadOutcome;
use llm_gateway::metrics::Metrics;
use llm_gateway::server;
use llm_gateway::targets::TargetRegistry;

use super::TEST_PEPPER;
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
