//! `spec.exposure` → an Ingress (networking.k8s.io/v1) and/or an HTTPRoute
//! (gateway.networking.k8s.io/v1) to the gateway's Service, labelled and owned like the
//! gateway's other children.
//!
//! Streams are long and must not sit in a proxy's buffer: for ingress-nginx the Ingress turns
//! buffering off and raises the proxy timeouts to the request timeout (nginx's 60 s default
//! read timeout would cut a non-streamed completion that thinks longer), and its body limit
//! follows the gateway's so nginx does not refuse (1 MiB by default) what the gateway accepts.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use llm_gateway_crds::Duration;
use llm_gateway_crds::exposure::{DEFAULT_REQUEST_TIMEOUT, IngressExposure, annotation_allowed};
use llm_gateway_crds::llm_gateway::LlmGateway;

use super::gateway::Base;
use super::workload::HTTP;
use super::{Child, http_route, resource, typed};

/// The gateway's default `MAX_REQUEST_BODY_BYTES` (gateway/src/args.rs), used for nginx's body
/// limit unless `spec.env` sets another.
const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Prefix of ingress-nginx's annotations.
const NGINX: &str = "nginx.ingress.kubernetes.io";

/// The Ingress kind.
pub fn ingress_resource() -> kube::discovery::ApiResource {
    kube::discovery::ApiResource::erase::<Ingress>(&())
}

/// The Gateway API HTTPRoute kind (served only where the Gateway API CRDs are installed).
pub fn http_route_resource() -> kube::discovery::ApiResource {
    resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
}

/// The exposure children `spec.exposure` asks for (none without it).
pub(super) fn children(gateway: &LlmGateway, base: &Base) -> Vec<Child> {
    let Some(exposure) = &gateway.spec.exposure else {
        return Vec::new();
    };
    let timeout = request_timeout_seconds(gateway);
    let mut out = Vec::new();
    if let Some(ingress_spec) = &exposure.ingress {
        out.push(ingress(gateway, base, ingress_spec, timeout));
    }
    if let Some(route) = &exposure.http_route {
        out.push(http_route::http_route(gateway, base, route, timeout));
    }
    out
}

/// Longest a request may take through the proxy, in whole seconds: `exposure.requestTimeout`,
/// else the larger of the drain timeout and the default provider `timeouts.total`.
pub fn request_timeout_seconds(gateway: &LlmGateway) -> u64 {
    let spec = &gateway.spec;
    let timeout = spec
        .exposure
        .as_ref()
        .and_then(|e| e.request_timeout)
        .unwrap_or_else(|| spec.shutdown.drain_timeout.max(DEFAULT_REQUEST_TIMEOUT));
    seconds(timeout)
}

fn seconds(duration: Duration) -> u64 {
    u64::try_from(duration.get().as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

// The builders below never write an empty string, list or map: the API server leaves those
// out of an Ingress on read, so they would look like drift, and in an HTTPRoute they are
// invalid or say what leaving them out says. Admission refuses most of them already (names
// have patterns, `paths` at least one entry); these guards cover objects written past it.

/// `value` unless it is empty.
pub(super) fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

/// The path prefixes to route: the spec's, or `/` (the field's default) for an empty list.
pub(super) fn paths_or_root(paths: &[String]) -> Vec<&str> {
    if paths.is_empty() {
        vec!["/"]
    } else {
        paths.iter().map(String::as_str).collect()
    }
}

/// The spec's annotations, minus the `-snippet` ones (refused at admission, dropped here
/// too): raw proxy configuration that could read the controller's credentials.
pub(super) fn user_annotations(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(key, _)| annotation_allowed(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn ingress(gateway: &LlmGateway, base: &Base, spec: &IngressExposure, timeout: u64) -> Child {
    let hosts: Vec<String> = spec
        .hosts
        .iter()
        .filter(|h| !h.is_empty())
        .cloned()
        .collect();
    let rule = |host: Option<&String>| IngressRule {
        host: host.cloned(),
        http: Some(HTTPIngressRuleValue {
            paths: ingress_paths(&base.name, &spec.paths),
        }),
    };
    let rules = if hosts.is_empty() {
        vec![rule(None)]
    } else {
        hosts.iter().map(Some).map(rule).collect()
    };
    let tls = spec.tls.as_ref().map(|tls| {
        let secret = non_empty(tls.secret_name.as_ref())
            .map_or_else(|| format!("{}-tls", base.name), str::to_owned);
        vec![IngressTLS {
            secret_name: Some(secret),
            hosts: Some(hosts.clone()).filter(|h| !h.is_empty()),
        }]
    });
    let mut metadata = base.metadata(&base.name);
    let annotations = ingress_annotations(gateway, spec, timeout);
    metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    typed(&Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: non_empty(spec.class_name.as_ref()).map(str::to_owned),
            rules: Some(rules),
            tls,
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

/// The Ingress paths: each prefix to the Service `service`'s `http` port.
fn ingress_paths(service: &str, paths: &[String]) -> Vec<HTTPIngressPath> {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.to_owned(),
            port: Some(ServiceBackendPort {
                name: Some(HTTP.to_owned()),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    paths_or_root(paths)
        .into_iter()
        .map(|path| HTTPIngressPath {
            path: Some(path.to_owned()),
            path_type: "Prefix".to_owned(),
            backend: backend.clone(),
        })
        .collect()
}

/// cert-manager's issuer annotation, ingress-nginx's streaming settings (for an nginx or
/// unnamed class: other controllers ignore them), then the spec's annotations, which win.
fn ingress_annotations(
    gateway: &LlmGateway,
    spec: &IngressExposure,
    timeout: u64,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if let Some(tls) = &spec.tls {
        if let Some(issuer) = non_empty(tls.cluster_issuer.as_ref()) {
            annotations.insert(
                "cert-manager.io/cluster-issuer".to_owned(),
                issuer.to_owned(),
            );
        }
        if let Some(issuer) = non_empty(tls.issuer.as_ref()) {
            annotations.insert("cert-manager.io/issuer".to_owned(), issuer.to_owned());
        }
    }
    if non_empty(spec.class_name.as_ref()).is_none_or(|c| c.contains("nginx")) {
        for (key, value) in [
            ("proxy-buffering", "off".to_owned()),
            ("proxy-read-timeout", timeout.to_string()),
            ("proxy-send-timeout", timeout.to_string()),
            (
                "proxy-body-size",
                nginx_size(max_request_body_bytes(gateway)),
            ),
        ] {
            annotations.insert(format!("{NGINX}/{key}"), value);
        }
    }
    annotations.extend(user_annotations(&spec.annotations));
    annotations
}

/// The gateway's request body limit: a literal `MAX_REQUEST_BODY_BYTES` in `spec.env` (its
/// last definition, the one the pod gets), else the gateway's default.
fn max_request_body_bytes(gateway: &LlmGateway) -> u64 {
    gateway
        .spec
        .env
        .iter()
        .rfind(|v| v.name == "MAX_REQUEST_BODY_BYTES")
        .and_then(|v| v.value.as_deref()?.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_REQUEST_BODY_BYTES)
}

/// `bytes` in nginx's size syntax (`k` and `m` are binary units).
fn nginx_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes > 0 && bytes.is_multiple_of(MIB) {
        format!("{}m", bytes / MIB)
    } else if bytes > 0 && bytes.is_multiple_of(1024) {
        format!("{}k", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::gateway::tests::{find, gateway};
    use crate::build::gateway::{GATEWAY_LABEL, children as all_children};
    use serde_json::{Value, json};

    fn exposed(spec: Value) -> Vec<Child> {
        all_children(&gateway(spec))
    }

    #[test]
    fn an_nginx_ingress_streams_unbuffered_with_cert_manager_tls() {
        let children = exposed(json!({"exposure": {"ingress": {
            "className": "nginx", "hosts": ["llm.example.com"],
            "tls": {"clusterIssuer": "letsencrypt"},
            "annotations": {"nginx.ingress.kubernetes.io/proxy-send-timeout": "900"},
        }}}));
        let ingress = find(&children, "Ingress");
        assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(ingress["metadata"]["name"], "main-gateway");
        assert_eq!(ingress["metadata"]["labels"][GATEWAY_LABEL], "main");
        assert_eq!(ingress["metadata"]["ownerReferences"][0]["uid"], "u-9");
        let annotations = &ingress["metadata"]["annotations"];
        assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
            "off"
        );
        // The default drain (5m) and provider total timeout (5m): 300 s.
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
            "300"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"],
            "900"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
            "10m"
        );
        let spec = &ingress["spec"];
        assert_eq!(spec["ingressClassName"], "nginx");
        assert_eq!(
            spec["tls"],
            json!([{"hosts": ["llm.example.com"], "secretName": "main-gateway-tls"}])
        );
        let rule = &spec["rules"][0];
        assert_eq!(rule["host"], "llm.example.com");
        assert_eq!(
            rule["http"]["paths"][0],
            json!({"path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "main-gateway", "port": {"name": "http"}}}})
        );
    }

    #[test]
    fn ingress_timeouts_and_body_size_follow_the_gateway() {
        let children = exposed(json!({
            "shutdown": {"drainTimeout": "20m"},
            "env": [{"name": "MAX_REQUEST_BODY_BYTES", "value": "33554432"}],
            "exposure": {"ingress": {}},
        }));
        let annotations = &find(&children, "Ingress")["metadata"]["annotations"];
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
            "1200"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
            "32m"
        );
        let explicit = exposed(
            json!({"exposure": {"requestTimeout": "90500ms", "ingress": {
            "className": "traefik", "tls": {"issuer": "local", "secretName": "mine"}, "hosts": ["a.example"]}}}),
        );
        let ingress = find(&explicit, "Ingress");
        let annotations = ingress["metadata"]["annotations"].as_object().expect("map");
        assert_eq!(
            annotations.len(),
            1,
            "{annotations:?}: no nginx settings for traefik"
        );
        assert_eq!(annotations["cert-manager.io/issuer"], "local");
        assert_eq!(ingress["spec"]["tls"][0]["secretName"], "mine");
        assert_eq!(
            request_timeout_seconds(&gateway(
                json!({"exposure": {"requestTimeout": "90500ms", "ingress": {}}})
            )),
            91
        );
        assert_eq!(nginx_size(1500), "1500");
        assert_eq!(nginx_size(3 * 1024), "3k");
    }

    #[test]
    fn snippet_annotations_are_dropped() {
        let children = exposed(json!({"exposure": {
            "ingress": {"annotations": {
                "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;",
                "nginx.ingress.kubernetes.io/server-snippet": "location /x {}",
                "example.com/team": "ai",
            }},
            "httpRoute": {"parentRefs": [{"name": "public"}], "annotations": {
                "example.com/auth-snippet": "x", "example.com/team": "ai",
            }},
        }}));
        for kind in ["Ingress", "HTTPRoute"] {
            let annotations = find(&children, kind)["metadata"]["annotations"]
                .as_object()
                .expect("annotations")
                .clone();
            assert!(
                annotations.keys().all(|k| !k.ends_with("-snippet")),
                "{kind}: {annotations:?}"
            );
            assert_eq!(annotations["example.com/team"], "ai");
        }
    }

    #[test]
    fn no_empty_value_reaches_the_ingress_or_the_route() {
        let children = exposed(json!({"exposure": {
            "ingress": {"className": "traefik", "paths": [], "tls": {"secretName": ""}},
            "httpRoute": {"parentRefs": [{"name": "public", "namespace": "", "sectionName": ""}],
                          "hostnames": [], "paths": []},
        }}));
        let ingress = find(&children, "Ingress");
        assert!(
            ingress["metadata"].get("annotations").is_none(),
            "{ingress}"
        );
        assert_eq!(
            ingress["spec"]["tls"],
            json!([{"secretName": "main-gateway-tls"}])
        );
        assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["path"], "/");
        let unnamed = exposed(json!({"exposure": {"ingress": {"className": ""}}}));
        let unnamed = find(&unnamed, "Ingress");
        assert!(unnamed["spec"].get("ingressClassName").is_none());
        assert_eq!(
            unnamed["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"],
            "off",
            "no class is the default class, possibly ingress-nginx"
        );
        let route = find(&children, "HTTPRoute");
        assert!(route["metadata"].get("annotations").is_none(), "{route}");
        assert!(route["spec"].get("hostnames").is_none());
        assert_eq!(
            route["spec"]["parentRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}])
        );
        assert_eq!(
            route["spec"]["rules"][0]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/"}}])
        );
    }

    #[test]
    fn nothing_is_exposed_by_default() {
        let children = exposed(json!({}));
        assert!(
            children
                .iter()
                .all(|c| !matches!(c.resource.kind.as_str(), "Ingress" | "HTTPRoute"))
        );
    }
}
