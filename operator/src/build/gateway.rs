//! LlmGateway → ServiceAccount, Role, RoleBinding, settings ConfigMap, Deployment, Service,
//! HorizontalPodAutoscaler (when autoscaling) and PodDisruptionBudget, with the original
//! deployment guide's defaults: probes on `/health` and `/ready`, requests 250m/512Mi, limits
//! 500m/1Gi, non-root, a settings checksum that rolls pods on change, and a shutdown delay
//! (readiness false, listener open) before the drain.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use kube::ResourceExt;
use llm_gateway_crds::llm_gateway::{LlmGateway, LogLevel, OnUnavailable};
use serde_json::{Value, json};

use super::{Child, bundle, child, labels, owner_reference, rbac, resource};

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

/// Seconds between SIGTERM (readiness false at once) and the listener closing, so endpoints
/// drop the pod before it stops accepting connections. The gateway does this itself
/// (`SHUTDOWN_DELAY`): the image is distroless (no `sleep` for an exec hook) and a
/// `preStop.sleep` hook needs Kubernetes 1.30 while the chart supports 1.25.
const SHUTDOWN_DELAY_SECONDS: i32 = 10;
/// Seconds in-flight requests and streams get to finish once the listener is closed.
const DRAIN_TIMEOUT_SECONDS: i32 = 30;
/// The gateway's admin listener (`/metrics`, `/health/detailed`), scraped by the chart's
/// PodMonitor and never part of the Service.
const ADMIN_PORT: i32 = 9090;

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
        deployment(gateway, &base, &checksum),
        service(gateway, &base),
        pdb(&base),
    ];
    if let Some(hpa) = hpa(gateway, &base) {
        out.push(hpa);
    }
    out
}

/// Names of the children kinds that may be pruned when no longer wanted.
pub fn prunable() -> Vec<kube::discovery::ApiResource> {
    vec![resource(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    )]
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
    labels: Value,
    selector: Value,
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
        ("SHUTDOWN_DELAY", format!("{SHUTDOWN_DELAY_SECONDS}s")),
        ("DRAIN_TIMEOUT", format!("{DRAIN_TIMEOUT_SECONDS}s")),
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

fn checksum(data: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.to_string().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn deployment(gateway: &LlmGateway, base: &Base, checksum: &str) -> Child {
    let spec = &gateway.spec;
    let resources = spec.resources.as_ref().map_or_else(
        || json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}),
        |r| serde_json::to_value(r).unwrap_or_default(),
    );
    let mut env = vec![];
    if let Some(redis) = &spec.redis {
        env.push(json!({"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": redis.url_secret_ref.name, "key": redis.url_secret_ref.key}}}));
    }
    env.push(
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    );
    env.push(json!({"name": "API_KEY_PEPPER", "valueFrom": {"secretKeyRef": {"name": bundle::credentials_name(gateway), "key": llm_gateway_crds::snapshot::PEPPER_ENTRY}}}));
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3});
    let mut deployment_spec = json!({
        "selector": {"matchLabels": base.selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": base.labels, "annotations": {"llmgateway.io/settings-checksum": checksum}},
            "spec": {
                "serviceAccountName": base.name,
                // The token is mounted explicitly (`service-account`), for the gateway's own
                // least-privilege account only: nothing added to the pod gets one by default.
                "automountServiceAccountToken": false,
                // SHUTDOWN_DELAY + DRAIN_TIMEOUT + 5 s for cut streams to close + 10 s for
                // settlements to reach Redis + 5 s of margin. No preStop hook: SIGTERM comes at once.
                "terminationGracePeriodSeconds": SHUTDOWN_DELAY_SECONDS + DRAIN_TIMEOUT_SECONDS + 5 + 10 + 5,
                "volumes": [
                    {"name": "last-known-good", "projected": {"sources": [
                        {"configMap": {"name": bundle::last_known_good_name(gateway), "optional": true}},
                        {"secret": {"name": bundle::credentials_name(gateway), "optional": true}},
                    ]}},
                    rbac::token_volume(),
                ],
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "gateway",
                    "image": spec.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
                    "ports": [
                        {"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"},
                        {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
                    ],
                    "envFrom": [{"configMapRef": {"name": format!("{}-settings", base.name)}}],
                    "env": env,
                    "resources": resources,
                    "volumeMounts": [
                        {"name": "last-known-good", "mountPath": LAST_KNOWN_GOOD_DIR, "readOnly": true},
                        {"name": "service-account", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true},
                    ],
                    "livenessProbe": probe("/health"),
                    "readinessProbe": probe("/ready"),
                    "securityContext": {"allowPrivilegeEscalation": false, "privileged": false, "runAsNonRoot": true, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                }],
            },
        },
    });
    if spec.autoscaling.is_none() {
        deployment_spec["replicas"] = json!(spec.replicas);
    }
    child(
        resource("apps", "v1", "Deployment", "deployments"),
        json!({"metadata": base.metadata(&base.name), "spec": deployment_spec}),
    )
}

fn service(gateway: &LlmGateway, base: &Base) -> Child {
    let (service_type, port) = gateway
        .spec
        .service
        .as_ref()
        .map_or(("ClusterIP".to_owned(), 80), |s| {
            (format!("{:?}", s.service_type), s.port)
        });
    child(
        resource("", "v1", "Service", "services"),
        json!({
            "metadata": base.metadata(&base.name),
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
mod tests {
    use super::*;

    fn gateway(spec: Value) -> LlmGateway {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
            "metadata": {"name": "main", "namespace": "ai", "uid": "u-9"}, "spec": spec}),
        )
        .expect("valid LlmGateway")
    }

    fn find<'c>(children: &'c [Child], kind: &str) -> &'c Value {
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
        assert_eq!(settings["DRAIN_TIMEOUT"], "30s");
        // Delay + drain + 5 s for cut streams + 10 s to settle, with margin.
        assert_eq!(pod["terminationGracePeriodSeconds"], 60);
    }

    #[test]
    fn settings_changes_roll_the_pods_and_autoscaling_adds_an_hpa() {
        let checksum = |c: &[Child]| {
            find(c, "Deployment")["spec"]["template"]["metadata"]["annotations"]["llmgateway.io/settings-checksum"].clone()
        };
        let quiet = children(&gateway(json!({})));
        let loud = children(&gateway(json!({"logLevel": "debug"})));
        assert_ne!(checksum(&quiet), checksum(&loud));
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
