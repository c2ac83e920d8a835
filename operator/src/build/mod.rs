//! Pure builders: the children each resource should have, as JSON manifests, so every
//! decision is unit-testable without a cluster.
//!
//! Built-in kinds are built as k8s-openapi's typed structs, so a misspelt or misplaced field
//! does not compile, then converted with [`typed`] to the JSON [`Child`] that applying and
//! comparing handle alike for every kind (the HTTPRoute, which has no k8s-openapi type, is
//! built from a small typed struct of its own in `http_route.rs`).

pub mod bundle;
pub mod compare;
pub mod exposure;
pub mod gateway;
mod gateway_container;
pub mod gateway_pod;
mod http_route;
pub mod model_server;
pub mod quantity;
pub mod rbac;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::discovery::ApiResource;
use serde_json::Value;

/// One child object to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// Its API type.
    pub resource: ApiResource,
    /// The manifest (only the fields the operator owns).
    pub object: Value,
}

impl Child {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// A child of type `resource` (sets `apiVersion` and `kind` on `object`).
pub fn child(resource: ApiResource, mut object: Value) -> Child {
    object["apiVersion"] = Value::from(resource.api_version.clone());
    object["kind"] = Value::from(resource.kind.clone());
    Child { resource, object }
}

/// The child `object` of a built-in kind: its type names the kind, and its manifest is what
/// the type serialises to (unset fields left out). Serialising a k8s-openapi object cannot
/// fail (its maps are keyed by strings), so the `Null` fallback is never written.
pub fn typed<K>(object: &K) -> Child
where
    K: kube::Resource<DynamicType = ()> + serde::Serialize,
{
    child(
        ApiResource::erase::<K>(&()),
        serde_json::to_value(object).unwrap_or_default(),
    )
}

/// Labels (or annotations, or a label selector's `matchLabels`).
pub type Labels = BTreeMap<String, String>;

/// The labels of a child: its `selector` labels plus the operator's managed-by label (which
/// the controllers' watches of owned objects select on).
pub fn labels(selector: &Labels) -> Labels {
    let mut labels = selector.clone();
    labels.insert(
        crate::MANAGED_BY.0.to_owned(),
        crate::MANAGED_BY.1.to_owned(),
    );
    labels
}

/// The controller owner reference to `owner` (so deleting it collects the child); `None` only
/// for an owner without a name or uid, which the API server never returns.
pub fn owner_reference<K: kube::Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// The metadata of a child: its name and namespace, `labels`, and `owner` as its controller.
pub fn metadata(
    name: &str,
    namespace: Option<String>,
    labels: &Labels,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace,
        labels: Some(labels.clone()),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..ObjectMeta::default()
    }
}

/// An ApiResource for `group/version`, `kind`, `plural`.
pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}
