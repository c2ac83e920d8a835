//! Pure builders: the children each resource should have, as JSON manifests, so every
//! decision is unit-testable without a cluster.

pub mod bundle;
pub mod compare;
pub mod exposure;
pub mod gateway;
pub mod gateway_pod;
pub mod model_server;
pub mod quantity;
pub mod rbac;

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

/// The labels of a child: its `selector` labels plus the operator's managed-by label (which
/// the controllers' watches of owned objects select on).
pub fn labels(selector: &Value) -> Value {
    let mut labels = selector.clone();
    labels[crate::MANAGED_BY.0] = Value::from(crate::MANAGED_BY.1);
    labels
}

/// The controller owner reference to `owner` (so deleting it collects the child).
pub fn owner_reference<K: kube::Resource<DynamicType = ()>>(owner: &K) -> Value {
    owner
        .controller_owner_ref(&())
        .and_then(|o| serde_json::to_value(o).ok())
        .unwrap_or(Value::Null)
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
