//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}` and
//! `/apis/{group}/{version}`, built from the served types (so CRDs appear once created).

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// The document for a discovery path, or `None` when the path is not one.
pub fn document(path: &str, types: &[ResourceType]) -> Option<Value> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Some(json!({
            "major": "1", "minor": "31", "gitVersion": "v1.31.0-llm-gateway-test-apiserver",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64",
        })),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })),
        ["api", "v1"] => Some(resource_list(
            "v1",
            types.iter().filter(|t| t.group.is_empty()),
        )),
        ["apis"] => Some(json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": groups(types).iter().map(|g| group(g, types)).collect::<Vec<_>>(),
        })),
        ["apis", name] => groups(types).iter().find(|g| g == name).map(|g| {
            let mut doc = group(g, types);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        }),
        ["apis", name, version] => {
            let matching: Vec<_> = types
                .iter()
                .filter(|t| t.group == *name && t.version == *version)
                .collect();
            (!matching.is_empty())
                .then(|| resource_list(&format!("{name}/{version}"), matching.into_iter()))
        }
        _ => None,
    }
}

fn groups(types: &[ResourceType]) -> Vec<String> {
    let mut names: Vec<String> = types
        .iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| t.group.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn group(name: &str, types: &[ResourceType]) -> Value {
    let version = types
        .iter()
        .find(|t| t.group == name)
        .map(|t| t.version.clone())
        .unwrap_or_default();
    let entry = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [entry], "preferredVersion": entry})
}

fn resource_list<'a>(group_version: &str, types: impl Iterator<Item = &'a ResourceType>) -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": types.flat_map(ResourceType::discovery_entries).collect::<Vec<_>>(),
    })
}
