//! `spec.exposure.httpRoute` → a Gateway API HTTPRoute (gateway.networking.k8s.io/v1) to the
//! gateway's Service. k8s-openapi has no type for it (the Gateway API is a set of CRDs) and
//! no crate of the workspace provides one, so the few fields the operator writes are typed
//! here instead: named once, in the API's spelling, so a misspelt field cannot reach the
//! manifest any more than in the built-in kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use llm_gateway_crds::exposure::HttpRouteExposure;
use llm_gateway_crds::llm_gateway::LlmGateway;
use serde::Serialize;

use super::exposure::{http_route_resource, non_empty, paths_or_root, user_annotations};
use super::gateway::Base;
use super::{Child, child};

/// The HTTPRoute's fields the operator writes. These types are only serialised, so every
/// field they can hold is declared below (what `deny_unknown_fields` gives a parsed type);
/// optional fields are left out when unset, as k8s-openapi's types do.
#[derive(Debug, Serialize)]
struct HttpRoute {
    metadata: ObjectMeta,
    spec: HttpRouteSpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRouteSpec {
    parent_refs: Vec<ParentReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hostnames: Vec<String>,
    rules: Vec<HttpRouteRule>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ParentReference {
    group: &'static str,
    kind: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    section_name: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRouteRule {
    matches: Vec<HttpRouteMatch>,
    backend_refs: Vec<BackendRef>,
    timeouts: HttpRouteTimeouts,
}

#[derive(Debug, Serialize)]
struct HttpRouteMatch {
    path: HttpPathMatch,
}

#[derive(Debug, Serialize)]
struct HttpPathMatch {
    #[serde(rename = "type")]
    type_: &'static str,
    value: String,
}

#[derive(Debug, Serialize)]
struct BackendRef {
    group: &'static str,
    kind: &'static str,
    name: String,
    port: i32,
}

#[derive(Debug, Serialize)]
struct HttpRouteTimeouts {
    request: String,
}

pub(super) fn http_route(
    gateway: &LlmGateway,
    base: &Base,
    spec: &HttpRouteExposure,
    timeout: u64,
) -> Child {
    let port = gateway.spec.service.as_ref().map_or(80, |s| s.port);
    let parent_refs = spec
        .parent_refs
        .iter()
        .map(|p| ParentReference {
            group: "gateway.networking.k8s.io",
            kind: "Gateway",
            name: p.name.clone(),
            namespace: non_empty(p.namespace.as_ref()).map(str::to_owned),
            section_name: non_empty(p.section_name.as_ref()).map(str::to_owned),
        })
        .collect();
    let matches = paths_or_root(&spec.paths)
        .into_iter()
        .map(|path| HttpRouteMatch {
            path: HttpPathMatch {
                type_: "PathPrefix",
                value: path.to_owned(),
            },
        })
        .collect();
    // `timeouts` is in the Gateway API's standard channel from v1.2 (docs/operator.md). The
    // backend's `group: ""` (the core API group of Services) is the only empty value written:
    // it is the HTTPRoute schema's default, so the API server returns it on read.
    let rule = HttpRouteRule {
        matches,
        backend_refs: vec![BackendRef {
            group: "",
            kind: "Service",
            name: base.name.clone(),
            port,
        }],
        timeouts: HttpRouteTimeouts {
            request: gateway_api_duration(timeout),
        },
    };
    let mut metadata = base.metadata(&base.name);
    metadata.annotations = Some(user_annotations(&spec.annotations)).filter(|a| !a.is_empty());
    let route = HttpRoute {
        metadata,
        spec: HttpRouteSpec {
            parent_refs,
            hostnames: spec
                .hostnames
                .iter()
                .filter(|h| !h.is_empty())
                .cloned()
                .collect(),
            rules: vec![rule],
        },
    };
    // Serialising strings, numbers and ObjectMeta cannot fail.
    child(
        http_route_resource(),
        serde_json::to_value(&route).unwrap_or_default(),
    )
}

/// Whole seconds in the Gateway API's duration syntax (at most five digits per unit).
fn gateway_api_duration(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (secs, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::build::gateway::children;
    use crate::build::gateway::tests::{find, gateway};

    fn exposed(spec: serde_json::Value) -> Vec<Child> {
        children(&gateway(spec))
    }

    #[test]
    fn an_http_route_attaches_to_its_gateways_with_a_stream_long_timeout() {
        let children = exposed(json!({
            "service": {"port": 8080},
            "exposure": {"requestTimeout": "1h1m5s", "httpRoute": {
                "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
                "hostnames": ["llm.example.com"], "paths": ["/v1"],
            }},
        }));
        assert!(children.iter().all(|c| c.resource.kind != "Ingress"));
        let route = find(&children, "HTTPRoute");
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(route["metadata"]["ownerReferences"][0]["uid"], "u-9");
        let spec = &route["spec"];
        assert_eq!(
            spec["parentRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                    "namespace": "gateways", "sectionName": "https"}])
        );
        assert_eq!(spec["hostnames"], json!(["llm.example.com"]));
        let rule = &spec["rules"][0];
        assert_eq!(
            rule["matches"][0]["path"],
            json!({"type": "PathPrefix", "value": "/v1"})
        );
        assert_eq!(
            rule["backendRefs"][0],
            json!({"group": "", "kind": "Service", "name": "main-gateway", "port": 8080})
        );
        assert_eq!(rule["timeouts"]["request"], "1h1m5s");
        assert_eq!(gateway_api_duration(300), "5m");
    }
}
