//! Writing children: server-side apply with the operator's field manager, skipped when the live
//! object already has every desired value (so an unchanged resource costs a read, never a
//! write), and pruning of children no longer wanted, found by label.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::build::{Child, is_subset};
use crate::{Error, FIELD_MANAGER};

/// Applies `child` in `namespace` unless it is already as desired; returns whether it wrote.
pub async fn apply(client: &kube::Client, namespace: &str, child: &Child) -> Result<bool, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &child.resource);
    if let Some(live) = api.get_opt(child.name()).await? {
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        if is_subset(&child.object, &live) {
            return Ok(false);
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(child.name(), &params, &Patch::Apply(&child.object))
        .await?;
    Ok(true)
}

/// Deletes objects of `resource` labelled `selector` whose names are not in `keep`.
pub async fn prune(
    client: &kube::Client,
    namespace: &str,
    resource: &kube::discovery::ApiResource,
    selector: &str,
    keep: &[&str],
) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    for object in api.list(&ListParams::default().labels(selector)).await? {
        let name = object.metadata.name.clone().unwrap_or_default();
        if !keep.contains(&name.as_str()) {
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// Applies every child in order, then deletes the objects of the `prunable` kinds labelled
/// `selector` that are not among them.
pub async fn converge(
    client: &kube::Client,
    namespace: &str,
    children: &[Child],
    prunable: &[kube::discovery::ApiResource],
    selector: &str,
) -> Result<(), Error> {
    for child in children {
        apply(client, namespace, child).await?;
    }
    for resource in prunable {
        let keep: Vec<&str> = children
            .iter()
            .filter(|c| c.resource.kind == resource.kind)
            .map(Child::name)
            .collect();
        prune(client, namespace, resource, selector, &keep).await?;
    }
    Ok(())
}

/// Ready pods of the Deployment `name` (0 when it does not exist yet).
pub async fn ready_replicas(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<i32, Error> {
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    Ok(deployments
        .get_opt(name)
        .await?
        .and_then(|d| d.status?.ready_replicas)
        .unwrap_or(0))
}
