//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}` and
//! `/apis/{group}/{version}`, built from the served types (so CRDs appear once created), with
//! each resource's short names, singular name and categories (what `kubectl get <category>`
//! expands); the aggregated form (`apidiscovery.k8s.io`) of `/api` and `/apis` for clients
//! that ask for it; and the OpenAPI v3 documents.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// The answer to a discovery or OpenAPI path, or `None` when the path is neither.
pub fn respond(path: &str, headers: &HeaderMap, types: &[ResourceType]) -> Option<Response> {
    if let Some(document) = crate::openapi::document(path, types) {
        return Some(Json(document).into_response());
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if path.trim_end_matches('/') == "/openapi/v2" {
        let (content_type, body) = crate::openapi::v2(accept.contains("protobuf"));
        return Some(([(header::CONTENT_TYPE, content_type)], body).into_response());
    }
    if let Some(version) = aggregated_version(accept)
        && matches!(path.trim_end_matches('/'), "/api" | "/apis")
    {
        let core = path.trim_end_matches('/') == "/api";
        let content_type =
            format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
        let body = crate::aggregated::document(version, core, types);
        return Some(([(header::CONTENT_TYPE, content_type)], Json(body)).into_response());
    }
    document(path, types).map(|d| Json(d).into_response())
}

/// The aggregated discovery version the client accepts (`v2`, else `v2beta1`), if any.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    let offers: Vec<&str> = accept
        .split(',')
        .filter(|media| {
            media.contains("g=apidiscovery.k8s.io") && media.contains("as=APIGroupDiscoveryList")
        })
        .collect();
    ["v2", "v2beta1"].into_iter().find(|version| {
        offers
            .iter()
            .any(|m| m.split(';').any(|p| p.trim() == format!("v={version}")))
    })
}

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
