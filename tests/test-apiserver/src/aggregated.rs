//! Aggregated discovery (`apidiscovery.k8s.io/v2` and `v2beta1` `APIGroupDiscoveryList`): every
//! group, version and resource of `/api` or `/apis` in one document, which kubectl 1.26+ and
//! client-go ask for before falling back to the per-group documents.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// The `APIGroupDiscoveryList` of the core group (`core`) or of all named groups.
pub fn document(version: &str, core: bool, types: &[ResourceType]) -> Value {
    let mut groups: Vec<&str> = types
        .iter()
        .filter(|t| t.group.is_empty() == core)
        .map(|t| t.group.as_str())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let items: Vec<Value> = groups.iter().map(|g| group(g, types)).collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn group(name: &str, types: &[ResourceType]) -> Value {
    let members: Vec<&ResourceType> = types.iter().filter(|t| t.group == name).collect();
    let version = members
        .first()
        .map(|t| t.version.clone())
        .unwrap_or_default();
    let resources: Vec<Value> = members.iter().map(|t| resource(t)).collect();
    let metadata = if name.is_empty() {
        json!({})
    } else {
        json!({"name": name})
    };
    json!({
        "metadata": metadata,
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

fn resource(rtype: &ResourceType) -> Value {
    let kind = json!({"group": "", "version": "", "kind": rtype.kind});
    let mut entry = json!({
        "resource": rtype.plural,
        "responseKind": kind,
        "scope": if rtype.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rtype.singular,
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    });
    if !rtype.short_names.is_empty() {
        entry["shortNames"] = json!(rtype.short_names);
    }
    if !rtype.categories.is_empty() {
        entry["categories"] = json!(rtype.categories);
    }
    if rtype.status_subresource {
        entry["subresources"] = json!([{"subresource": "status", "responseKind": kind,
            "verbs": ["get", "patch", "update"]}]);
    }
    entry
}
