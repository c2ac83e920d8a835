//! A self-hosted LlmProvider through the operator binary: its model server's Deployment,
//! Service and HPA appear, follow the spec and disappear with it; the provider is Ready only
//! once a model-server pod is; routes reach it through the defaulted Service URL.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use llm_gateway_crds::llm_provider::LlmProvider;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_provider_runs_its_model_server_and_routes_reach_it() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator_with(&kubeconfig, free_port(), &[ALLOW_VLLM]);
    let providers: Api<LlmProvider> = Api::namespaced(client.clone(), "default");
    let provider: LlmProvider = serde_json::from_value(json!({
        "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider", "metadata": {"name": "qwen"},
        "spec": {"type": "openaiCompatible", "selfHosted": {
            "image": "vllm/vllm-openai:v0.8.5", "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct"],
            "autoscaling": {"maxReplicas": 2}}}}))
    .unwrap();
    providers
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    eventually("the model server's children", async || {
        services.get_opt("qwen-model").await.ok()??;
        hpas.get_opt("qwen-model").await.ok()??;
        deployments.get_opt("qwen-model").await.ok()?
    })
    .await;
    let status = eventually("a progressing status", async || {
        let status = providers.get("qwen").await.ok()?.status?;
        (ready(&status.conditions)?.1 == "ModelServerProgressing").then_some(status)
    })
    .await;
    assert_eq!(
        status.model_server_url.as_deref(),
        Some("http://qwen-model.default.svc.cluster.local:8000/v1")
    );

    // A route to it compiles: baseUrl defaults to the Service.
    let gvk = kube::api::GroupVersionKind::gvk("llmgateway.io", "v1alpha1", "RoutePolicy");
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "routepolicies");
    let policies = Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource);
    let policy: DynamicObject = serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "RoutePolicy",
        "metadata": {"name": "local"}, "spec": {"routes": [{"model": "qwen", "targets": [{"provider": "qwen", "model": "Qwen/Qwen2.5-0.5B-Instruct"}]}]}})).unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    eventually("the route policy compiled", async || {
        let object = policies.get("local").await.ok()?;
        let reason = object
            .data
            .pointer("/status/conditions/0/reason")?
            .as_str()?;
        (reason == "Compiled").then_some(())
    })
    .await;

    // A pod becomes ready (what the kubelet would report): the provider is Ready.
    deployments
        .patch_status(
            "qwen-model",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    eventually("a ready provider", async || {
        let status = providers.get("qwen").await.ok()?.status?;
        (ready(&status.conditions)? == ("True".to_owned(), "ModelServerReady".to_owned()))
            .then_some(())
    })
    .await;

    // Autoscaling off: the HPA goes, the Deployment gets fixed replicas.
    let edit = |spec: serde_json::Value| Patch::Merge(json!({"spec": spec}));
    providers
        .patch(
            "qwen",
            &PatchParams::default(),
            &edit(json!({"selfHosted": {"autoscaling": null, "replicas": 2}})),
        )
        .await
        .unwrap();
    eventually("the HPA pruned and replicas set", async || {
        let gone = hpas.get_opt("qwen-model").await.ok()?.is_none();
        let replicas = deployments.get("qwen-model").await.ok()?.spec.replicas;
        (gone && replicas == Some(2)).then_some(())
    })
    .await;

    // No longer self-hosted: the model server goes away.
    providers
        .patch(
            "qwen",
            &PatchParams::default(),
            &edit(json!({"selfHosted": null, "baseUrl": "https://models.example.com/v1"})),
        )
        .await
        .unwrap();
    eventually("the model server pruned", async || {
        let gone = deployments.get_opt("qwen-model").await.ok()?.is_none()
            && services.get_opt("qwen-model").await.ok()?.is_none();
        let status = providers.get("qwen").await.ok()?.status?;
        (gone && status.model_server_url.is_none()).then_some(())
    })
    .await;
}
