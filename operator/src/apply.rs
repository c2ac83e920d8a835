//! Writing children: server-side apply with the operator's field manager, skipped when the
//! live object is the one last applied and still has every desired value (so an unchanged
//! resource costs a read, never a write; see `build::compare`), and pruning of children no
//! longer wanted, found by label and owner.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::build::Child;
use crate::build::compare::{stamped, up_to_date};
use crate::error::Rejection;
use crate::{Error, FIELD_MANAGER};

/// Applies `child` in `namespace` unless it is already as desired; returns whether it wrote.
pub async fn apply(client: &kube::Client, namespace: &str, child: &Child) -> Result<bool, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &child.resource);
    let desired = stamped(&child.object);
    if let Some(live) = api.get_opt(child.name()).await? {
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        if up_to_date(&desired, &live) {
            return Ok(false);
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch(child.name(), &params, &Patch::Apply(&desired))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if REJECTIONS.contains(&e.code) => {
            let message = if e.code == 404 {
                format!(
                    "this cluster does not serve {} (is its CRD installed?)",
                    child.resource.api_version
                )
            } else {
                shorten(&e.message)
            };
            Err(Error::ChildRejected(Rejection {
                kind: child.resource.kind.clone(),
                name: child.name().to_owned(),
                code: e.code,
                message,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Status codes that say the child itself is refused (invalid, malformed, forbidden by RBAC,
/// a quota or an admission policy, or of a kind the cluster does not serve), as opposed to a
/// conflict or an unavailable API server.
const REJECTIONS: [u16; 4] = [400, 403, 404, 422];

/// Longest rejection message kept (a condition and an Event carry it).
const MAX_REJECTION_MESSAGE: usize = 600;

fn shorten(message: &str) -> String {
    match message.char_indices().nth(MAX_REJECTION_MESSAGE) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// What marks the children of one owner: their label selector and the owner's UID.
#[derive(Clone, Copy, Debug)]
pub struct Owned<'a> {
    /// Labels every child carries.
    pub selector: &'a str,
    /// The owner's `metadata.uid`, in each child's `ownerReferences`.
    pub owner_uid: &'a str,
}

impl Owned<'_> {
    /// Whether `object` is one of these children: labels can be copied onto anything, so an
    /// object someone labelled alike but that the owner does not own is never pruned.
    fn owns(&self, object: &DynamicObject) -> bool {
        object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|reference| reference.uid == self.owner_uid)
    }
}

/// Deletes the children of `owned` of type `resource` whose names are not in `keep`.
pub async fn prune(
    client: &kube::Client,
    namespace: &str,
    resource: &kube::discovery::ApiResource,
    owned: Owned<'_>,
    keep: &[&str],
) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    for object in api
        .list(&ListParams::default().labels(owned.selector))
        .await?
    {
        let name = object.metadata.name.clone().unwrap_or_default();
        if !keep.contains(&name.as_str()) && owned.owns(&object) {
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// Applies every child in order, then deletes the children of `owned` of the `prunable` kinds
/// that are not among them. Kinds the cluster may not serve (a CRD's, such as the Gateway
/// API's HTTPRoute) go in `prunable` with `optional` set: a 404 on listing one means there is
/// nothing of it to prune.
pub async fn converge(
    client: &kube::Client,
    namespace: &str,
    children: &[Child],
    prunable: &[Prunable],
    owned: Owned<'_>,
) -> Result<(), Error> {
    for child in children {
        apply(client, namespace, child).await?;
    }
    for kind in prunable {
        let keep: Vec<&str> = children
            .iter()
            .filter(|c| c.resource.kind == kind.resource.kind)
            .map(Child::name)
            .collect();
        match prune(client, namespace, &kind.resource, owned, &keep).await {
            // Not served, or not granted (RBAC copied without it): nothing of it was made.
            Err(Error::Kube(kube::Error::Api(e)))
                if matches!(e.code, 403 | 404) && kind.optional => {}
            other => other?,
        }
    }
    Ok(())
}

/// A kind whose unwanted children are deleted.
#[derive(Clone, Debug)]
pub struct Prunable {
    /// The kind.
    pub resource: kube::discovery::ApiResource,
    /// Whether the cluster may not serve it.
    pub optional: bool,
}

impl Prunable {
    /// Kinds every cluster serves.
    pub fn always(resources: Vec<kube::discovery::ApiResource>) -> Vec<Self> {
        resources
            .into_iter()
            .map(|resource| Self {
                resource,
                optional: false,
            })
            .collect()
    }

    /// Kinds a cluster may not serve.
    pub fn optional(resources: Vec<kube::discovery::ApiResource>) -> Vec<Self> {
        resources
            .into_iter()
            .map(|resource| Self {
                resource,
                optional: true,
            })
            .collect()
    }
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
