//! A child the API server rejects (422 on the gateway's Deployment, as a cluster older than a
//! field the operator writes, or an admission policy, would answer): the LlmGateway says so in
//! `Ready=False` with reason `ChildRejected` and an Event, the operator retries ever less often
//! instead of every second or so forever, and an edit is retried at once.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use test_apiserver::TestApiServer;
use test_apiserver::faults::FaultRule;

mod common;

use common::*;

fn deployment_patches(server: &TestApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/deployments/main-gateway"))
        .count()
}

/// When each of the next `count` Deployment patches was first seen.
async fn next_patches(server: &TestApiServer, count: usize) -> Vec<Instant> {
    let mut seen = deployment_patches(server);
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while times.len() < count {
        let now = deployment_patches(server);
        if now > seen {
            times.push(Instant::now());
            seen = now;
        }
        assert!(Instant::now() < deadline, "no retry within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times
}

/// Sends SIGTERM (the shell's builtin `kill`: no dependency on procps) and waits for the exit.
async fn terminate(process: &mut Process) {
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", process.0.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while process.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_deployment_is_reported_and_retried_with_a_growing_backoff() {
    let (server, client, kubeconfig) = cluster().await;
    let rejected: FaultRule = serde_json::from_value(json!({
        "verb": "patch", "resource": "deployments", "name": "main-gateway",
        "action": {"type": "status", "code": 422, "reason": "Invalid"}}))
    .unwrap();
    server.add_fault(rejected);
    let gateways = create_gateway(&client, json!({"replicas": 1})).await;
    let mut first = operator(&kubeconfig, free_port());

    let message = eventually("Ready=False ChildRejected", async || {
        let status = gateways.get("main").await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "ChildRejected").then(|| ready.message.clone())
    })
    .await;
    assert!(message.contains("Deployment main-gateway"), "{message}");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually("a Warning Event", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ChildRejected"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.regarding.and_then(|r| r.name).as_deref(),
        Some("main")
    );

    // Retries back off per object, timed on a restarted operator: the first one's own status
    // write (Ready turning False) triggers one more attempt at once, which hides the backoff's
    // first step. The restarted one finds that status already written, so its attempts come
    // from the backoff alone: at least 2 s after the first failure, and the gap after that is
    // longer (load only makes gaps longer, so lower bounds hold on a busy machine). The first
    // has exited (and released the Lease) before any attempt is counted.
    terminate(&mut first).await;
    let _second = operator(&kubeconfig, free_port());
    let times = next_patches(&server, 3).await;
    let (second, third) = (times[1] - times[0], times[2] - times[1]);
    eprintln!("retries {second:?}, then {third:?} apart");
    assert!(second >= Duration::from_millis(1800), "{times:?}");
    assert!(third > second, "{times:?}");

    // An edit is reconciled at once, whatever the backoff: sooner than the retry the third
    // failure scheduled (8 s away at least).
    server.clear_faults();
    let edit = json!({"spec": {"replicas": 2}});
    gateways
        .patch("main", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let edited = Instant::now();
    eventually("the rejection cleared by the edit", async || {
        let status = gateways.get("main").await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason != "ChildRejected").then_some(())
    })
    .await;
    let took = edited.elapsed();
    assert!(took < Duration::from_secs(4), "the edit waited {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_model_server_is_reported_on_its_provider() {
    use llm_gateway_crds::llm_provider::LlmProvider;
    let (server, client, kubeconfig) = cluster().await;
    let rejected: FaultRule = serde_json::from_value(json!({
        "verb": "patch", "resource": "deployments", "name": "qwen-model",
        "action": {"type": "status", "code": 422, "reason": "Invalid"}}))
    .unwrap();
    server.add_fault(rejected);
    let providers: Api<LlmProvider> = Api::namespaced(client.clone(), "default");
    let provider: LlmProvider = serde_json::from_value(json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider", "metadata": {"name": "qwen"},
        "spec": {"type": "openaiCompatible", "selfHosted": {
            "image": "vllm/vllm-openai:v0.8.5", "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct"]}}}))
    .unwrap();
    providers
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let _operator = operator_with(&kubeconfig, free_port(), &[ALLOW_VLLM]);
    let message = eventually("Ready=False ChildRejected on the provider", async || {
        let status = providers.get("qwen").await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "ChildRejected").then(|| ready.message.clone())
    })
    .await;
    assert!(message.contains("Deployment qwen-model"), "{message}");
}
