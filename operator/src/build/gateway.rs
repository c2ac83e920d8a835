//! LlmGateway → ServiceAccount, Role, RoleBinding, settings ConfigMap, Deployment, Service,
//! PodDisruptionBudget, HorizontalPodAutoscaler (when autoscaling), Ingress and HTTPRoute (when
//! `spec.exposure` asks), with the original deployment guide's defaults: probes on `/health`
//! and `/ready`, requests 250m/512Mi, limits 500m/1Gi, non-root, a settings checksum that rolls
//! pods on change, and a shutdown delay (readiness false, listener open) before the drain. The
//! pod template is built in [`super::gateway_pod`], the exposure in [`super::exposure`].

use std::collections::BTreeMap;

use kube::ResourceExt;
use llm_gateway_crds::llm_gateway::{LlmGateway, LogLevel, OnUnavailable};
use serde_json::{Value, json};

use super::{Child, bundle, child, exposure, gateway_pod, labels, owner_reference, rbac, resource};

/// Image used when `spec.image` is unset: the gateway of the operator's own version.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/llm-gateway/llm-gateway:",
    env!("CARGO_PKG_VERSION")
);

/// Label naming the LlmGateway a child belongs to (children are found and pruned by it).
pub const GATEWAY_LABEL: &str = "llmgateway.io/gateway";

/// The custom metric an HPA scales on for in-flight requests (the gateway's gauge as a
/// metrics adapter names it).
pub const IN_FLIGHT_METRIC: &str = "llm_requests_in_flight";

/// Port the gateway listens on inside the pod.
pub const CONTAINER_PORT: i32 = 8000;

/// Where the last-known-good ConfigMap and the credentials Secret are mounted.
pub const LAST_KNOWN_GOOD_DIR: &str = "/etc/llm-gateway/last-known-good";

/// Where the gateway's service-account credentials are mounted: the path in-cluster clients
/// read them from.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The gateway's admin listener (`/metrics`, `/health/detailed`), scraped by the chart's
/// PodMonitor and never part of the Service.
pub(super) const ADMIN_PORT: i32 = 9090;

/// Every child of `gateway`, in apply order (identity and permissions before the pods).
pub fn children(gateway: &LlmGateway) -> Vec<Child> {
    let base = Base::of(gateway);
    let settings = settings(gateway, &base);
    let checksum = checksum(&settings.object["data"]);
    let mut out = vec![
        rbac::service_account(&base),
        rbac::role(&base, &bundle::credentials_name(gateway)),
        rbac::role_binding(&base),
        settings,
        gateway_pod::deployment(gateway, &base, &checksum),
        service(gateway, &base),
        pdb(&base),
    ];
    if let Some(hpa) = hpa(gateway, &base) {
        out.push(hpa);
    }
    out.extend(exposure::children(gateway, &base));
    out
}

/// Names of the children kinds that may be pruned when no longer wanted, and that every
/// cluster serves (listing them cannot fail for want of the kind).
pub fn prunable() -> Vec<kube::discovery::ApiResource> {
    vec![resource(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    )]
}

/// Kinds of exposure children to prune when no longer wanted, which a cluster may not serve:
/// HTTPRoute exists only where the Gateway API CRDs are installed (listing it otherwise fails
/// with 404), and the Ingress kind may be missing from minimal API servers.
/// They are apart from [`prunable`] so that a 404 on listing one of them reads as "none to
/// prune", not as a failed reconcile: every cluster then works, and an Ingress or HTTPRoute
/// dropped from `spec.exposure` is still deleted where its kind is served. (Pruning only the
/// kinds the spec asks for would leave the child of a removed `exposure.httpRoute` behind.)
pub fn optional_prunable() -> Vec<kube::discovery::ApiResource> {
    vec![
        exposure::ingress_resource(),
        exposure::http_route_resource(),
    ]
}

/// Name of the gateway's Deployment, Service and most other children.
pub fn workload_name(gateway: &LlmGateway) -> String {
    format!("{}-gateway", gateway.name_any())
}

/// The in-cluster URL of the gateway's Service.
pub fn url(gateway: &LlmGateway) -> String {
    let base = Base::of(gateway);
    let port = gateway.spec.service.as_ref().map_or(80, |s| s.port);
    format!(
        "http://{}.{}.svc.cluster.local:{port}",
        base.name, base.namespace
    )
}

/// Name, namespace, labels and owner reference shared by every child.
pub(super) struct Base {
    pub(super) name: String,
    gateway: String,
    pub(super) namespace: String,
    pub(super) labels: Value,
    pub(super) selector: Value,
    owner: Value,
}

impl Base {
    pub(super) fn of(gateway: &LlmGateway) -> Self {
        let name = workload_name(gateway);
        let selector =
            json!({"app.kubernetes.io/name": "llm-gateway", GATEWAY_LABEL: gateway.name_any()});
        Self {
            name,
            gateway: gateway.name_any(),
            namespace: gateway.namespace().unwrap_or_else(|| "default".to_owned()),
            labels: labels(&selector),
            selector,
            owner: owner_reference(gateway),
        }
    }

    pub(super) fn metadata(&self, name: &str) -> Value {
        json!({"name": name, "namespace": self.namespace, "labels": self.labels, "ownerReferences": [self.owner]})
    }
}

/// The gateway's settings as environment variables (the Deployment loads them with envFrom).
fn settings(gateway: &LlmGateway, base: &Base) -> Child {
    let spec = &gateway.spec;
    let level = match spec.log_level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let mut data = BTreeMap::from([
        ("WATCH_NAMESPACE", base.namespace.clone()),
        ("GATEWAY_NAME", base.gateway.clone()),
        ("PORT", CONTAINER_PORT.to_string()),
        // Metrics and detailed health on their own port, which the Service does not expose.
        ("ADMIN_ADDRESS", format!("0.0.0.0:{ADMIN_PORT}")),
        ("LOG_LEVEL", level.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        // The gateway delays and drains itself: the image is distroless (no `sleep` for an
        // exec hook) and a `preStop.sleep` hook needs Kubernetes 1.30 while the chart supports
        // 1.25. The pods' grace period is derived from both (gateway_pod.rs).
        ("SHUTDOWN_DELAY", spec.shutdown.delay.to_string()),
        ("DRAIN_TIMEOUT", spec.shutdown.drain_timeout.to_string()),
        ("CREDENTIALS_SECRET", bundle::credentials_name(gateway)),
        ("LAST_KNOWN_GOOD_DIR", LAST_KNOWN_GOOD_DIR.to_owned()),
        (
            "GATEWAY_REPLICAS",
            spec.autoscaling
                .as_ref()
                .map_or(spec.replicas, |a| a.min_replicas)
                .to_string(),
        ),
    ]);
    if let Some(redis) = &spec.redis {
        let mode = match redis.on_unavailable {
            OnUnavailable::FailOpen => "failOpen",
            OnUnavailable::FailClosed => "failClosed",
        };
        data.insert("REDIS_ON_UNAVAILABLE", mode.to_owned());
        data.insert("RATE_LIMIT_STORAGE", "redis".to_owned());
    }
    child(
        resource("", "v1", "ConfigMap", "configmaps"),
        json!({"metadata": base.metadata(&format!("{}-settings", base.name)), "data": data}),
    )
}

/// A digest of the settings that need a restart to apply. SHA-256, whose value no toolchain
/// upgrade changes (std's `DefaultHasher` may, which would roll every gateway at once).
/// `GATEWAY_REPLICAS` is left out: scaling (`kubectl scale`, the scale subresource) must not
/// restart every pod; pods started later read the new count, and it only sizes the per-pod
/// share of the limits while Redis is unreachable.
fn checksum(data: &Value) -> String {
    use sha2::Digest;
    let mut settings = data.clone();
    if let Some(map) = settings.as_object_mut() {
        map.remove("GATEWAY_REPLICAS");
    }
    let digest = sha2::Sha256::digest(settings.to_string());
    hex::encode(&digest[..8])
}

fn service(gateway: &LlmGateway, base: &Base) -> Child {
    let (service_type, port) = gateway
        .spec
        .service
        .as_ref()
        .map_or(("ClusterIP".to_owned(), 80), |s| {
            (format!("{:?}", s.service_type), s.port)
        });
    let mut metadata = base.metadata(&base.name);
    if !gateway.spec.service_annotations.is_empty() {
        metadata["annotations"] = json!(gateway.spec.service_annotations);
    }
    child(
        resource("", "v1", "Service", "services"),
        json!({
            "metadata": metadata,
            "spec": {"type": service_type, "selector": base.selector,
                     "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]},
        }),
    )
}

fn pdb(base: &Base) -> Child {
    child(
        resource(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        ),
        json!({"metadata": base.metadata(&base.name), "spec": {"maxUnavailable": 1, "selector": {"matchLabels": base.selector}}}),
    )
}

fn hpa(gateway: &LlmGateway, base: &Base) -> Option<Child> {
    let scaling = gateway.spec.autoscaling.as_ref()?;
    let target = |name: &str, percent: i32| json!({"type": "Resource", "resource": {"name": name, "target": {"type": "Utilization", "averageUtilization": percent}}});
    let mut metrics = vec![
        target("cpu", scaling.target_cpu_utilization_percentage),
        target("memory", scaling.target_memory_utilization_percentage),
    ];
    if let Some(per_pod) = scaling.target_in_flight_requests_per_pod {
        metrics.push(json!({"type": "Pods", "pods": {
            "metric": {"name": IN_FLIGHT_METRIC},
            "target": {"type": "AverageValue", "averageValue": per_pod.to_string()},
        }}));
    }
    Some(child(
        resource(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        ),
        json!({
            "metadata": base.metadata(&base.name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": base.name},
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": metrics,
            },
        }),
    ))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::build) fn gateway(spec: Value) -> LlmGateway {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
            "metadata": {"name": "main", "namespace": "ai", "uid": "u-9"}, "spec": spec}),
        )
        .expect("valid LlmGateway")
    }

    pub(in crate::build) fn find<'c>(children: &'c [Child], kind: &str) -> &'c Value {
        &children
            .iter()
            .find(|c| c.resource.kind == kind)
            .expect(kind)
            .object
    }

    #[test]
    fn the_guide_s_defaults_and_least_privilege() {
        let children = children(&gateway(json!({})));
        let kinds: Vec<&str> = children.iter().map(|c| c.resource.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ConfigMap",
                "Deployment",
                "Service",
                "PodDisruptionBudget"
            ]
        );
        for child in &children {
            assert_eq!(child.object["metadata"]["ownerReferences"][0]["uid"], "u-9");
            assert_eq!(child.object["metadata"]["labels"][GATEWAY_LABEL], "main");
        }
        let deployment = find(&children, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], 3);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["resources"]["requests"],
            json!({"cpu": "250m", "memory": "512Mi"})
        );
        assert_eq!(
            container["resources"]["limits"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        let verbs: Vec<&Value> = find(&children, "Role")["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .flat_map(|r| r["verbs"].as_array().expect("verbs"))
            .collect();
        assert!(verbs.iter().all(|v| {
            ["get", "list", "watch", "create", "patch"].contains(&v.as_str().expect("verb"))
        }));
        assert_eq!(find(&children, "Service")["spec"]["ports"][0]["port"], 80);
        assert_eq!(
            find(&children, "ConfigMap")["data"]["WATCH_NAMESPACE"],
            "ai"
        );
    }

    #[test]
    fn shutdown_needs_no_field_newer_than_the_chart_s_minimum_kubernetes() {
        let children = children(&gateway(json!({})));
        let pod = &find(&children, "Deployment")["spec"]["template"]["spec"];
        // `lifecycle.preStop.sleep` needs Kubernetes 1.30 (the chart declares ≥ 1.25) and the
        // distroless image has no `sleep` for an exec hook: the gateway's SHUTDOWN_DELAY does it.
        assert!(
            pod["containers"][0].get("lifecycle").is_none(),
            "no lifecycle hooks"
        );
        let settings = &find(&children, "ConfigMap")["data"];
        assert_eq!(settings["SHUTDOWN_DELAY"], "10s");
        // The default provider `timeouts.total`: a rollout does not cut a default stream.
        assert_eq!(settings["DRAIN_TIMEOUT"], "5m");
        // Delay + drain + 5 s for cut streams + 10 s to settle, with margin.
        assert_eq!(pod["terminationGracePeriodSeconds"], 10 + 300 + 5 + 10 + 5);
    }

    #[test]
    fn settings_changes_roll_the_pods_and_autoscaling_adds_an_hpa() {
        let checksum = |c: &[Child]| {
            find(c, "Deployment")["spec"]["template"]["metadata"]["annotations"]["llmgateway.io/settings-checksum"].clone()
        };
        let quiet = children(&gateway(json!({})));
        let loud = children(&gateway(json!({"logLevel": "debug"})));
        assert_ne!(checksum(&quiet), checksum(&loud));
        let more = children(&gateway(json!({"replicas": 7})));
        assert_eq!(checksum(&quiet), checksum(&more), "scaling restarts no pod");
        assert_eq!(
            checksum(&quiet),
            json!("1abc9aaadbb6535f"),
            "stable across toolchains: a change rolls every gateway"
        );
        let scaled = children(&gateway(json!({"autoscaling": {}})));
        let hpa = find(&scaled, "HorizontalPodAutoscaler");
        assert_eq!(
            (
                hpa["spec"]["minReplicas"].clone(),
                hpa["spec"]["maxReplicas"].clone()
            ),
            (json!(3), json!(10))
        );
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(
            hpa["spec"]["metrics"][1]["resource"]["target"]["averageUtilization"],
            80
        );
        let busy = children(&gateway(
            json!({"autoscaling": {"targetInFlightRequestsPerPod": 200}}),
        ));
        let metric = &find(&busy, "HorizontalPodAutoscaler")["spec"]["metrics"][2];
        assert_eq!(metric["pods"]["metric"]["name"], IN_FLIGHT_METRIC);
        assert_eq!(metric["pods"]["target"]["averageValue"], "200");
        assert!(
            find(&scaled, "Deployment")["spec"]
                .get("replicas")
                .is_none(),
            "the HPA owns replicas"
        );
    }
}
