//! LlmGateway → its children (see `build::gateway`), applied when they differ from the live
//! objects, pruned when no longer wanted, re-created or corrected when someone deletes or edits
//! them (the controller watches what it owns); status reports ready replicas and the URL.
//!
//! It also keeps the gateway's credentials Secret and last-known-good ConfigMap (see
//! `build::bundle`) in step with the namespace's providers, policies, keys and Secrets, which
//! it watches; `LastKnownGood=False` says why the snapshot was not replaced.
//!
//! A gateway whose `spec.image` the operator may not run (`pod_policy`) gets nothing written,
//! not even its credentials Secret: `Ready=False` names the rule and existing children stay
//! as they were.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use llm_gateway_crds::llm_gateway::{LlmGateway, LlmGatewayStatus};
use llm_gateway_crds::manifest::Manifests;

use crate::apply::Prunable;
use crate::build::bundle::{self, Refused};
use crate::build::gateway::{self, GATEWAY_LABEL};
use crate::caches::in_namespace;
use crate::conditions::condition;
use crate::pod_policy::{self, Refusal};
use crate::{Context, Error, apply};

const NAME: &str = "llmgateway";

/// Runs the controller until `shutdown` (then lets reconciles in flight finish).
pub async fn run(context: Context, shutdown: crate::shutdown::Shutdown) {
    let owned =
        || watcher::Config::default().labels("app.kubernetes.io/managed-by=llm-gateway-operator");
    let controller = Controller::new(context.api::<LlmGateway>(), watcher::Config::default());
    let reader = controller.store();
    // Any provider, policy, key or Secret change in a namespace re-checks its gateways' bundle,
    // triggered from the caches the reconcile reads, after they applied the change.
    let changes = context
        .caches
        .namespace_changes()
        .flat_map(move |namespace| {
            futures_util::stream::iter(gateways_in(&reader, Some(&namespace)))
        });
    controller
        .owns(context.api::<Deployment>(), owned())
        .owns(context.api::<Service>(), owned())
        .owns(context.api::<ConfigMap>(), owned())
        .owns(context.api::<Secret>(), owned())
        .reconcile_on(changes)
        .with_config(super::config(Duration::from_millis(500)))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, super::error_policy, Arc::new(context))
        .for_each(|_| async {})
        .await;
}

fn gateways_in(reader: &Store<LlmGateway>, namespace: Option<&str>) -> Vec<ObjectRef<LlmGateway>> {
    reader
        .state()
        .iter()
        .filter(|g| g.namespace().as_deref() == namespace)
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// One reconcile of one LlmGateway.
pub async fn reconcile(gateway: Arc<LlmGateway>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(
        NAME,
        &context,
        &*gateway,
        reconcile_inner(&gateway, &context),
    )
    .await
}

async fn reconcile_inner(gateway: &LlmGateway, context: &Context) -> Result<Action, Error> {
    let namespace = gateway.namespace().unwrap_or_else(|| "default".to_owned());
    if let Err(refusal) = pod_policy::check_gateway(gateway, &context.settings.images) {
        tracing::warn!(gateway = %gateway.name_any(), %namespace, reason = refusal.reason, "gateway refused");
        write_status(context, gateway, &refused_status(gateway, &refusal)).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    match write_children(gateway, context, &namespace).await {
        Ok((ready, snapshot)) => {
            write_status(context, gateway, &desired_status(gateway, ready, &snapshot)).await?;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        // Reported where the owner looks (a condition, and an Event with it), then retried
        // ever less often: only an edit or a policy change can clear it.
        Err(Error::ChildRejected(rejection)) => {
            let status = refused_status(gateway, &rejection.refusal());
            write_status(context, gateway, &status).await?;
            Err(Error::ChildRejected(rejection))
        }
        Err(e) => Err(e),
    }
}

/// Writes the bundle and the children, prunes what is no longer wanted; returns the ready
/// pods and whether the snapshot was replaced.
async fn write_children(
    gateway: &LlmGateway,
    context: &Context,
    namespace: &str,
) -> Result<(i32, Result<(), Refused>), Error> {
    let client = &context.client;
    // The bundle first: the pods' environment references the credentials Secret.
    let snapshot = write_bundle(gateway, context, namespace).await?;
    let mut children = gateway::children(gateway);
    bundle::stamp_pepper(&mut children, &context.settings.key_pepper);
    let selector = format!("{GATEWAY_LABEL}={}", gateway.name_any());
    let uid = gateway.uid().unwrap_or_default();
    let owned = apply::Owned {
        selector: &selector,
        owner_uid: &uid,
    };
    let mut prunable = Prunable::always(gateway::prunable());
    prunable.extend(Prunable::optional(gateway::optional_prunable()));
    apply::converge(client, namespace, &children, &prunable, owned).await?;
    let ready = apply::ready_replicas(client, namespace, &gateway::workload_name(gateway)).await?;
    Ok((ready, snapshot))
}

/// Writes `desired` unless the stored status already says the same.
async fn write_status(
    context: &Context,
    gateway: &LlmGateway,
    desired: &LlmGatewayStatus,
) -> Result<(), Error> {
    crate::status::update(
        context,
        gateway,
        gateway.status.as_ref(),
        desired,
        |s: &LlmGatewayStatus| &s.conditions,
    )
    .await?;
    Ok(())
}

/// Reads the namespace, writes the credentials Secret and, when the namespace compiles, the
/// last-known-good ConfigMap.
async fn write_bundle(
    gateway: &LlmGateway,
    context: &Context,
    namespace: &str,
) -> Result<Result<(), Refused>, Error> {
    let client = &context.client;
    let caches = &context.caches;
    let manifests = Manifests {
        providers: in_namespace(&caches.providers, namespace),
        route_policies: in_namespace(&caches.route_policies, namespace),
        api_keys: in_namespace(&caches.api_keys, namespace),
        gateways: vec![gateway.clone()],
        secrets: in_namespace(&caches.secrets, namespace),
        quotas: in_namespace(&caches.quotas, namespace),
    };
    let made = bundle::bundle(gateway, &manifests, &context.settings.key_pepper);
    apply::apply(client, namespace, &made.credentials).await?;
    if let Ok(config) = &made.last_known_good {
        apply::apply(client, namespace, config).await?;
    }
    Ok(made.last_known_good.map(drop))
}

/// The status of a gateway whose Deployment has `ready` ready pods and whose last-known-good
/// snapshot was written (or refused).
pub fn desired_status(
    gateway: &LlmGateway,
    ready: i32,
    snapshot: &Result<(), Refused>,
) -> LlmGatewayStatus {
    let current = gateway.status.clone().unwrap_or_default();
    let generation = gateway.meta().generation;
    let wanted = gateway
        .spec
        .autoscaling
        .as_ref()
        .map_or(gateway.spec.replicas, |a| a.min_replicas);
    let (ok, reason, message) = match (wanted, ready) {
        (0, _) => (true, "ScaledToZero", "spec.replicas is 0".to_owned()),
        (_, 0) => (
            false,
            "Progressing",
            "children applied; waiting for gateway pods to become ready".to_owned(),
        ),
        // One pod of three is serving, but not the capacity asked for (a rollout stuck on
        // a bad node, a pod crash-looping): not Ready yet.
        _ if ready < wanted => (
            false,
            "Progressing",
            format!("{ready} of {wanted} gateway pods ready"),
        ),
        _ => (true, "Available", format!("{ready} gateway pod(s) ready")),
    };
    LlmGatewayStatus {
        observed_generation: generation,
        ready_replicas: Some(ready),
        url: Some(gateway::url(gateway)),
        selector: Some(gateway::pod_selector(gateway)),
        conditions: vec![
            condition(
                &current.conditions,
                "Ready",
                ok,
                reason,
                message,
                generation,
            ),
            snapshot_condition(&current.conditions, snapshot, generation),
        ],
    }
}

/// The status of a refused gateway: `Ready=False` naming the rule (the Event follows from the
/// condition change); what it reported of children built before is kept.
pub fn refused_status(gateway: &LlmGateway, refusal: &Refusal) -> LlmGatewayStatus {
    let current = gateway.status.clone().unwrap_or_default();
    let generation = gateway.meta().generation;
    let mut conditions = vec![condition(
        &current.conditions,
        "Ready",
        false,
        refusal.reason,
        refusal.message.clone(),
        generation,
    )];
    conditions.extend(
        current
            .conditions
            .iter()
            .filter(|c| c.type_ == "LastKnownGood")
            .cloned(),
    );
    LlmGatewayStatus {
        observed_generation: generation,
        ready_replicas: current.ready_replicas,
        url: Some(gateway::url(gateway)),
        selector: Some(gateway::pod_selector(gateway)),
        conditions,
    }
}

fn snapshot_condition(
    current: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    snapshot: &Result<(), Refused>,
    generation: Option<i64>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let (ok, reason, message) = match snapshot {
        Ok(()) => (true, "Saved", "the namespace's configuration compiles; pods fall back to it when the API server is unreachable".to_owned()),
        Err(Refused::Invalid(errors)) => {
            let mut text = format!("the namespace's configuration does not compile, so the previous snapshot is kept: {}", errors.join("; "));
            text.truncate(2000);
            (false, "InvalidConfiguration", text)
        }
        Err(Refused::TooLarge(bytes)) => (false, "TooLarge", format!("the snapshot is {bytes} bytes, more than a ConfigMap holds ({} bytes); the previous one is kept", bundle::MAX_CONFIG_BYTES)),
    };
    condition(current, "LastKnownGood", ok, reason, message, generation)
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
        let waiting = desired_status(&gateway, 0, &Ok(()));
        assert_eq!(waiting.conditions[0].reason, "Progressing");
        assert_eq!(
            waiting.url.as_deref(),
            Some("http://main-gateway.ai.svc.cluster.local:80")
        );
        assert_eq!(
            waiting.selector.as_deref(),
            Some("app.kubernetes.io/name=llm-gateway,llmgateway.io/gateway=main"),
            "the scale subresource's selector is the Deployment's"
        );
        let partly = desired_status(&gateway, 1, &Ok(()));
        assert_eq!(
            (
                partly.conditions[0].status.as_str(),
                partly.conditions[0].message.as_str()
            ),
            ("False", "1 of 3 gateway pods ready"),
            "one pod of the default three is not the capacity asked for"
        );
        let serving = desired_status(&gateway, 3, &Err(Refused::TooLarge(2_000_000)));
        assert_eq!(serving.conditions[0].status, "True");
        assert_eq!(
            (
                serving.conditions[1].type_.as_str(),
                serving.conditions[1].reason.as_str()
            ),
            ("LastKnownGood", "TooLarge")
        );
        let mut running = gateway.clone();
        running.status = Some(serving);
        let refusal = Refusal {
            reason: "ImageNotAllowed",
            message: "not allowed".to_owned(),
        };
        let refused = refused_status(&running, &refusal);
        assert_eq!(
            (
                refused.conditions[0].status.as_str(),
                refused.conditions[0].reason.as_str()
            ),
            ("False", "ImageNotAllowed")
        );
        assert_eq!(refused.conditions[1].reason, "TooLarge", "kept as it was");
        assert_eq!(refused.ready_replicas, Some(3));
    }
}
