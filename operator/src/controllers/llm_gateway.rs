//! LlmGateway → its children (see `build::gateway`), applied when they differ from the live
//! objects, pruned when no longer wanted, re-created or corrected when someone deletes or edits
//! them (the controller watches what it owns); status reports ready replicas and the URL.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::llm_gateway::{LlmGateway, LlmGatewayStatus};

use crate::build::gateway::{self, GATEWAY_LABEL};
use crate::conditions::condition;
use crate::{Context, Error, apply};

const NAME: &str = "llmgateway";

/// Runs the controller until shutdown.
pub async fn run(context: Context) {
    let client = context.client.clone();
    let owned =
        || watcher::Config::default().labels("app.kubernetes.io/managed-by=llm-gateway-operator");
    Controller::new(
        Api::<LlmGateway>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Deployment>::all(client.clone()), owned())
    .owns(Api::<Service>::all(client.clone()), owned())
    .owns(Api::<ConfigMap>::all(client), owned())
    .shutdown_on_signal()
    .run(reconcile, super::error_policy, Arc::new(context))
    .for_each(|_| async {})
    .await;
}

/// One reconcile of one LlmGateway.
pub async fn reconcile(gateway: Arc<LlmGateway>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(NAME, &context, reconcile_inner(&gateway, &context)).await
}

async fn reconcile_inner(gateway: &LlmGateway, context: &Context) -> Result<Action, Error> {
    let namespace = gateway.namespace().unwrap_or_else(|| "default".to_owned());
    let client = &context.client;
    let children = gateway::children(gateway);
    for child in &children {
        apply::apply(client, &namespace, child).await?;
    }
    let selector = format!("{GATEWAY_LABEL}={}", gateway.name_any());
    for resource in gateway::prunable() {
        let keep: Vec<&str> = children
            .iter()
            .filter(|c| c.resource.kind == resource.kind)
            .map(|c| c.name())
            .collect();
        apply::prune(client, &namespace, &resource, &selector, &keep).await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let name = format!("{}-gateway", gateway.name_any());
    let ready = deployments
        .get_opt(&name)
        .await?
        .and_then(|d| d.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let desired = desired_status(gateway, ready);
    crate::status::update(
        context,
        gateway,
        gateway.status.as_ref(),
        &desired,
        |s: &LlmGatewayStatus| &s.conditions,
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The status of a gateway whose Deployment has `ready` ready pods.
pub fn desired_status(gateway: &LlmGateway, ready: i32) -> LlmGatewayStatus {
    let current = gateway.status.clone().unwrap_or_default();
    let generation = gateway.meta().generation;
    let (ok, reason, message) = if ready > 0 {
        (true, "Available", format!("{ready} gateway pod(s) ready"))
    } else {
        (
            false,
            "Progressing",
            "children applied; waiting for gateway pods to become ready".to_owned(),
        )
    };
    LlmGatewayStatus {
        observed_generation: generation,
        ready_replicas: Some(ready),
        url: Some(gateway::url(gateway)),
        conditions: vec![condition(
            &current.conditions,
            "Ready",
            ok,
            reason,
            message,
            generation,
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_when_a_pod_is() {
        let gateway: LlmGateway = serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
            "metadata": {"name": "main", "namespace": "ai", "generation": 1}, "spec": {}}),
        )
        .expect("valid LlmGateway");
        let waiting = desired_status(&gateway, 0);
        assert_eq!(waiting.conditions[0].reason, "Progressing");
        assert_eq!(
            waiting.url.as_deref(),
            Some("http://main-gateway.ai.svc.cluster.local:80")
        );
        assert_eq!(desired_status(&gateway, 2).conditions[0].status, "True");
    }
}
