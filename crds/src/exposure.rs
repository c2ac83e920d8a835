//! `LlmGateway.spec.exposure`: reaching the gateway from outside the cluster through an
//! Ingress (networking.k8s.io/v1) and/or a Gateway API HTTPRoute (gateway.networking.k8s.io/v1)
//! the operator owns like the gateway's other children.
//!
//! LLM traffic is long and streamed (server-sent events): proxies must not buffer it and must
//! not time it out before the upstream's own timeouts, so the operator writes the proxy
//! settings itself (ingress-nginx annotations, the HTTPRoute's `timeouts.request`) from
//! `requestTimeout`, which defaults to cover the default provider `timeouts.total`.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// A DNS name as Ingress and HTTPRoute accept it: lower-case RFC 1123 labels, optionally
/// behind one leading `*.` wildcard label.
pub const HOSTNAME_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// An absolute URL path prefix.
pub const PATH_PATTERN: &str = r"^/[^\s?#]*$";

/// The default request timeout through the Ingress or HTTPRoute when `requestTimeout` is not
/// set and `shutdown.drainTimeout` is shorter: the default provider `timeouts.total`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Suffix of the annotations that paste configuration text into the proxy: ingress-nginx's
/// `configuration-snippet`, `server-snippet`, `auth-snippet`, `stream-snippet` and the like
/// (under any annotation prefix), the CVE-2021-25742 class: raw nginx directives can read the
/// controller's files and service account token, or any Secret it can see. `annotations` of
/// the Ingress and the HTTPRoute may not end with it.
pub const SNIPPET_SUFFIX: &str = "-snippet";

/// The CEL rule refusing snippet annotations (`endsWith` costs only its argument's length).
pub fn annotations_rule() -> String {
    format!("self.all(k, !k.endsWith('{SNIPPET_SUFFIX}'))")
}

/// Whether `annotations` of the Ingress or HTTPRoute may set `key`.
pub fn annotation_allowed(key: &str) -> bool {
    !key.ends_with(SNIPPET_SUFFIX)
}

/// How the gateway is reached from outside the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.ingress) || has(self.httpRoute)").message("exposure needs an ingress, an httpRoute or both"))]
#[x_kube(validation = Rule::new("!has(self.requestTimeout) || (duration(self.requestTimeout) >= duration('1s') && duration(self.requestTimeout) <= duration('24h'))").message("exposure.requestTimeout must be between 1s and 24h"))]
pub struct Exposure {
    /// Longest a request or stream may take through the Ingress or HTTPRoute (ingress-nginx's
    /// proxy read and send timeouts, the HTTPRoute's `timeouts.request`), rounded up to whole
    /// seconds. Default: the larger of `shutdown.drainTimeout` and 5m (the default provider
    /// `timeouts.total`); raise it with longer provider timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// An Ingress in front of the gateway's Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressExposure>,
    /// A Gateway API HTTPRoute to the gateway's Service (needs the Gateway API CRDs and a
    /// Gateway to attach to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteExposure>,
}

/// The Ingress the operator writes (named like the gateway's Service, path type `Prefix`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tls) || (has(self.hosts) && size(self.hosts) > 0)").message("ingress.tls needs ingress.hosts: a certificate is issued for named hosts"))]
#[x_kube(validation = Rule::new("!has(self.hosts) || self.hosts.all(h, !h.matches('^[0-9.]+$'))").message("ingress.hosts must be DNS names, not IP addresses"))]
pub struct IngressExposure {
    /// The IngressClass (`spec.ingressClassName`); unset uses the cluster's default class. For
    /// ingress-nginx (unset, or a class whose name contains `nginx`) the operator adds the
    /// annotations streaming needs: `proxy-buffering: "off"`, `proxy-read-timeout` and
    /// `proxy-send-timeout` of `exposure.requestTimeout`, and `proxy-body-size` of the
    /// gateway's largest request body (10m, or `MAX_REQUEST_BODY_BYTES` set in `spec.env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub class_name: Option<String>,
    /// Host names routed to the gateway; empty matches every host (not allowed with `tls`).
    #[serde(default)]
    #[schemars(length(max = 16), inner(regex(pattern = HOSTNAME_PATTERN), length(max = 253)))]
    pub hosts: Vec<String>,
    /// URL path prefixes routed to the gateway.
    #[serde(default = "default_paths")]
    #[schemars(length(min = 1, max = 16), inner(regex(pattern = PATH_PATTERN), length(max = 1024)))]
    pub paths: Vec<String>,
    /// Serve the hosts over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
    /// Further annotations of the Ingress; they override the operator's (e.g. a different
    /// `nginx.ingress.kubernetes.io/proxy-read-timeout`). No key may end in `-snippet`
    /// (ingress-nginx's `configuration-snippet`, `server-snippet`, …: raw proxy configuration).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(annotations_rule()).message("ingress.annotations may not set an annotation ending in -snippet (configuration-snippet, server-snippet, ...): it injects raw proxy configuration"))]
    pub annotations: BTreeMap<String, String>,
}

/// TLS of the Ingress, for all its hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.clusterIssuer) && has(self.issuer))").message("name either tls.clusterIssuer or tls.issuer, not both"))]
pub struct IngressTls {
    /// The Secret holding the certificate and key (`kubernetes.io/tls`); default
    /// `<gateway>-gateway-tls`. cert-manager writes it when an issuer is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_name: Option<String>,
    /// A cert-manager ClusterIssuer to issue the certificate (the Ingress gets the
    /// `cert-manager.io/cluster-issuer` annotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster_issuer: Option<String>,
    /// A cert-manager Issuer of the gateway's namespace to issue the certificate (the Ingress
    /// gets the `cert-manager.io/issuer` annotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub issuer: Option<String>,
}

/// The HTTPRoute the operator writes (named like the gateway's Service, `PathPrefix` matches).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.hostnames) || self.hostnames.all(h, !h.matches('^[0-9.]+$'))").message("httpRoute.hostnames must be DNS names, not IP addresses"))]
pub struct HttpRouteExposure {
    /// The Gateways (gateway.networking.k8s.io) the route attaches to.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<ParentRef>,
    /// Host names the route matches; empty inherits the listeners' host names.
    #[serde(default)]
    #[schemars(length(max = 16), inner(regex(pattern = HOSTNAME_PATTERN), length(max = 253)))]
    pub hostnames: Vec<String>,
    /// URL path prefixes routed to the gateway.
    #[serde(default = "default_paths")]
    #[schemars(length(min = 1, max = 16), inner(regex(pattern = PATH_PATTERN), length(max = 1024)))]
    pub paths: Vec<String>,
    /// Further annotations of the HTTPRoute; no key may end in `-snippet`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(annotations_rule()).message("httpRoute.annotations may not set an annotation ending in -snippet: it injects raw proxy configuration"))]
    pub annotations: BTreeMap<String, String>,
}

/// A Gateway (gateway.networking.k8s.io/v1) an HTTPRoute attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; default the LlmGateway's (the Gateway's listeners must allow routes
    /// from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: Option<String>,
    /// One listener of the Gateway (its `name`); default all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 253)
    )]
    pub section_name: Option<String>,
}

fn default_paths() -> Vec<String> {
    vec!["/".to_owned()]
}

#[cfg(test)]
mod tests {
    use kube::core::cel::validate_cel;
    use serde_json::json;

    use crate::llm_gateway::LlmGateway;

    /// The CEL errors of an LlmGateway with `spec` (None when it is accepted).
    fn errors(spec: serde_json::Value) -> Option<String> {
        let gateway: LlmGateway = serde_json::from_value(json!({
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
            "metadata": {"name": "main"}, "spec": spec,
        }))
        .expect("valid shape");
        validate_cel(&gateway).err().map(|e| e.to_string())
    }

    #[test]
    fn exposure_rules() {
        let good = json!({"exposure": {
            "requestTimeout": "10m",
            "ingress": {"className": "nginx", "hosts": ["llm.example.com", "*.llm.example.com"],
                        "tls": {"clusterIssuer": "letsencrypt"},
                        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "900",
                                        "example.com/snippet-count": "1"}},
            "httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
                          "hostnames": ["llm.example.com"], "annotations": {"team": "ai"}},
        }});
        assert_eq!(errors(good), None);
        let cases = [
            (json!({}), "exposure needs an ingress, an httpRoute or both"),
            (
                json!({"requestTimeout": "25h", "ingress": {}}),
                "between 1s and 24h",
            ),
            (
                json!({"ingress": {"tls": {}}}),
                "ingress.tls needs ingress.hosts",
            ),
            (
                json!({"ingress": {"hosts": ["10.0.0.1"]}}),
                "DNS names, not IP addresses",
            ),
            (
                json!({"ingress": {"hosts": ["a.example"], "tls": {"issuer": "a", "clusterIssuer": "b"}}}),
                "either tls.clusterIssuer or tls.issuer",
            ),
            (
                json!({"httpRoute": {"parentRefs": [{"name": "g"}], "hostnames": ["1.2.3.4"]}}),
                "httpRoute.hostnames must be DNS names",
            ),
            (
                json!({"ingress": {"annotations": {
                    "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;"}}}),
                "ingress.annotations may not set an annotation ending in -snippet",
            ),
            (
                json!({"ingress": {"annotations": {"custom-prefix.example/server-snippet": "x"}}}),
                "ingress.annotations may not set an annotation ending in -snippet",
            ),
            (
                json!({"httpRoute": {"parentRefs": [{"name": "g"}],
                                     "annotations": {"example.com/auth-snippet": "x"}}}),
                "httpRoute.annotations may not set an annotation ending in -snippet",
            ),
        ];
        for (exposure, message) in cases {
            let got = errors(json!({"exposure": exposure.clone()})).unwrap_or_default();
            assert!(got.contains(message), "{exposure}: {got}");
        }
    }

    #[test]
    fn pod_rules() {
        let good = json!({"shutdown": {"delay": "30s", "drainTimeout": "15m"},
            "podLabels": {"team": "ai"},
            "podAnnotations": {"container.apparmor.security.beta.kubernetes.io/gateway": "runtime/default"},
            "env": [{"name": "WRITE_TIMEOUT", "value": "60s"},
                    {"name": "GREETING", "value": "$HOME (not a reference)"},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]});
        assert_eq!(errors(good), None);
        let cases = [
            (json!({"shutdown": {"drainTimeout": "2h"}}), "at most 1h"),
            (json!({"shutdown": {"delay": "6m"}}), "at most 5m"),
            (
                json!({"podLabels": {"llmgateway.io/gateway": "other"}}),
                "podLabels may not set",
            ),
            (
                json!({"env": [{"name": "DRAIN_TIMEOUT", "value": "1s"}]}),
                "env may not set a variable",
            ),
            (
                json!({"env": [{"name": "DEV_MODE", "value": "true"}]}),
                "env may not set a variable",
            ),
            (
                json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
                "env may not read Secrets",
            ),
            (
                json!({"env": [{"name": "LEAK", "value": "$(API_KEY_PEPPER)"}]}),
                "env values may not contain '$('",
            ),
            (
                json!({"env": [{"name": "LEAK", "value": "redis=$(REDIS_URL)"}]}),
                "env values may not contain '$('",
            ),
            (
                json!({"env": [{"name": "HTTPS_PROXY", "value": "http://evil.internal:3128"}]}),
                "env may not set the proxy or certificate authority variables",
            ),
            (
                json!({"env": [{"name": "no_proxy", "value": "*"}]}),
                "env may not set the proxy or certificate authority variables",
            ),
            (
                json!({"env": [{"name": "SSL_CERT_FILE", "value": "/tmp/ca.pem"}]}),
                "env may not set the proxy or certificate authority variables",
            ),
            (
                json!({"podAnnotations": {
                    "container.apparmor.security.beta.kubernetes.io/gateway": "unconfined"}}),
                "podAnnotations may not set an unconfined AppArmor profile",
            ),
        ];
        for (spec, message) in cases {
            let got = errors(spec.clone()).unwrap_or_default();
            assert!(got.contains(message), "{spec}: {got}");
        }
    }
}
