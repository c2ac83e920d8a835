//! Faults against the operator binary: F14, a storm of 409 conflicts on the operator's
//! writes, converges with backoff; N4, 100 rapid edits of one LlmProvider leave its children
//! matching the last edit (no lost edit, no stale write after convergence).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::llm_provider::LlmProvider;
use serde_json::json;
use test_apiserver::faults::FaultRule;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_conflicts_on_writes_converges_with_backoff() {
    let (server, client, kubeconfig) = cluster().await;
    let conflict = |resource: &str| -> FaultRule {
        serde_json::from_value(json!({"verb": "patch", "resource": resource, "times": 3,
            "action": {"type": "status", "code": 409, "reason": "Conflict"}}))
        .unwrap()
    };
    server.add_fault(conflict("apikeys"));
    let admin = free_port();
    let _operator = operator(&kubeconfig, admin);
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    keys.create(&PostParams::default(), &api_key("storm"))
        .await
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let ready = keys
            .get("storm")
            .await
            .unwrap()
            .status
            .and_then(|s| ready(&s.conditions))
            .is_some_and(|(status, _)| status == "True");
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "no convergence within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = server
        .requests()
        .iter()
        .filter(|r| r.status == 409 && r.path.contains("/apikeys/"))
        .count();
    assert_eq!(refused, 3, "the three conflicts were met and retried");
    // Backoff, read from the operator itself (a watch event may re-trigger a reconcile
    // sooner than its backoff, so the wall clock says nothing): three consecutive failures of
    // one object scheduled retries 0.5 s, 1 s and 2 s apart at least.
    let metrics = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delays: f64 = metrics
        .lines()
        .find(|l| l.starts_with("llm_operator_retry_delay_seconds_total{kind=\"ApiKey\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no ApiKey retry delay in {metrics}"));
    assert!(delays >= 3.5, "{delays} s of backoff for three failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_rapid_edits_end_with_children_of_the_last_one() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator_with(&kubeconfig, free_port(), &[ALLOW_VLLM]);
    let providers: Api<LlmProvider> = Api::namespaced(client.clone(), "default");
    let provider: LlmProvider = serde_json::from_value(json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider", "metadata": {"name": "edited"},
        "spec": {"type": "openaiCompatible", "selfHosted": {"image": "vllm/vllm-openai:v0.8.5", "args": ["--edit", "0"]}}}))
    .unwrap();
    providers
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    for edit in 1..=100 {
        let patch = json!({"spec": {"selfHosted": {"args": ["--edit", edit.to_string()]}}});
        providers
            .patch("edited", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let args = || async {
        let deployment = deployments.get_opt("edited-model").await.ok()??;
        let pod = deployment.spec.template.spec?;
        pod.containers[0].args.clone()
    };
    eventually("the last edit in the Deployment", async || {
        (args().await? == ["--edit", "100"]).then_some(())
    })
    .await;
    // And it stays there: no stale write lands after convergence.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(args().await.unwrap(), ["--edit", "100"]);
    let status = providers.get("edited").await.unwrap().status.unwrap();
    assert_eq!(
        status.observed_generation,
        providers.get("edited").await.unwrap().metadata.generation
    );
}
