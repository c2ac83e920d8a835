//! Pruning deletes only what the owner owns: an object someone labelled like a gateway's
//! child (`llmgateway.io/gateway=main`) but that the gateway does not own survives the prune
//! that removes the gateway's own autoscaler when autoscaling is turned off.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_object_the_gateway_does_not_own_is_never_pruned() {
    let (_server, client, kubeconfig) = cluster().await;
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let foreign: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "team-autoscaler", "labels": {
            "llmgateway.io/gateway": "main",
            "app.kubernetes.io/managed-by": "llm-gateway-operator"}},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"},
                 "minReplicas": 1, "maxReplicas": 2}}))
    .unwrap();
    autoscalers
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let gateways = create_gateway(
        &client,
        json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 3}}),
    )
    .await;
    let _operator = operator(&kubeconfig, free_port());
    eventually("the gateway's own autoscaler", async || {
        autoscalers.get_opt("main-gateway").await.unwrap()
    })
    .await;

    let off = json!({"spec": {"autoscaling": null, "replicas": 1}});
    gateways
        .patch("main", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    eventually("the gateway's autoscaler pruned", async || {
        autoscalers
            .get_opt("main-gateway")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        autoscalers
            .get_opt("team-autoscaler")
            .await
            .unwrap()
            .is_some(),
        "pruned an object the gateway does not own"
    );
}

fn deployment_patches(server: &test_apiserver::TestApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/deployments/main-gateway"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_the_api_server_canonicalised_are_not_reapplied() {
    let (server, client, kubeconfig) = cluster().await;
    let gateways = create_gateway(
        &client,
        json!({"replicas": 1, "resources": {
            "requests": {"cpu": "0.5", "memory": "1024Mi"},
            "limits": {"cpu": "1000m", "memory": "2048Mi"}}}),
    )
    .await;
    let admin = free_port();
    let _operator = operator(&kubeconfig, admin);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let stored = eventually("the Deployment", async || {
        deployments.get_opt("main-gateway").await.unwrap()
    })
    .await;
    let resources = serde_json::to_value(&stored).unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["resources"]
        .clone();
    assert_eq!(resources["requests"]["memory"], "1Gi", "stored canonical");
    let reconciles = async || {
        reconciles_by_controller(admin)
            .await
            .get("llmgateway")
            .copied()
            .unwrap_or(0.0)
    };
    // Each label edit is a new reconcile; none of them may patch the Deployment again. The
    // server records a request after it stored its effect, so the PATCH that created the
    // Deployment may show in the log only after the Deployment itself: wait for it.
    let patched = eventually("the creating PATCH in the request log", async || {
        let patches = deployment_patches(&server);
        (patches > 0).then_some(patches)
    })
    .await;
    for round in 0..3 {
        let seen = reconciles().await;
        let label = json!({"metadata": {"labels": {"round": round.to_string()}}});
        gateways
            .patch("main", &PatchParams::default(), &Patch::Merge(&label))
            .await
            .unwrap();
        eventually("a reconcile after the edit", async || {
            (reconciles().await > seen).then_some(())
        })
        .await;
    }
    assert_eq!(
        deployment_patches(&server),
        patched,
        "re-applied an unchanged Deployment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_removed_from_the_spec_leaves_the_child() {
    let (_server, client, kubeconfig) = cluster().await;
    let gateways = create_gateway(
        &client,
        json!({"replicas": 1, "nodeSelector": {"disk": "ssd"}}),
    )
    .await;
    let _operator = operator(&kubeconfig, free_port());
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "default");
    let node_selector = async || {
        let deployment = deployments.get_opt("main-gateway").await.unwrap()?;
        let pod = serde_json::to_value(deployment).unwrap()["spec"]["template"]["spec"].clone();
        // An empty selector selects nothing: the same as none.
        let selector = pod
            .get("nodeSelector")
            .filter(|s| s.as_object().is_some_and(|o| !o.is_empty()));
        Some(selector.cloned())
    };
    eventually("the Deployment with the node selector", async || {
        node_selector().await.flatten()
    })
    .await;
    let removed = json!({"spec": {"nodeSelector": null}});
    gateways
        .patch("main", &PatchParams::default(), &Patch::Merge(&removed))
        .await
        .unwrap();
    // Before the fix the live Deployment still held every desired field, so nothing was
    // applied and the selector stayed.
    eventually("the node selector gone from the Deployment", async || {
        node_selector().await?.is_none().then_some(())
    })
    .await;
}
