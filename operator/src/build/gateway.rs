//! LlmGateway → ServiceAccount, Role, RoleBinding, settings ConfigMap, Deployment, Service,
//! PodDisruptionBudget, HorizontalPodAutoscaler (when autoscaling), Ingress and HTTPRoute (when
//! `spec.exposure` asks), with the original deployment guide's defaults: probes on `/health`
//! and `/ready`, requests 250m/512Mi, limits 500m/1Gi, non-root, a settings checksum that rolls
//! pods on change, and a shutdown delay (readiness false, listener open) before the drain. The
//! pod template is built in [`super::gateway_pod`], the exposure in [`super::exposure`].

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use llm_gateway_crds::llm_gateway::{LlmGateway, LogLevel, OnUnavailable};
use serde_json::Value;

use super::{
    Child, Labels, bundle, exposure, gateway_pod, labels, owner_reference, rbac, typed, workload,
};

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
    vec![kube::discovery::ApiResource::erase::<HorizontalPodAutoscaler>(&())]
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

/// The label selector of the gateway's pods, as a string (the LlmGateway's `status.selector`,
/// which its scale subresource reports).
pub fn pod_selector(gateway: &LlmGateway) -> String {
    let base = Base::of(gateway);
    let pairs: Vec<String> = base
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
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
    pub(super) labels: Labels,
    pub(super) selector: Labels,
    owner: Option<OwnerReference>,
}

impl Base {
    pub(super) fn of(gateway: &LlmGateway) -> Self {
        let name = workload_name(gateway);
        let selector = Labels::from([
            (
                "app.kubernetes.io/name".to_owned(),
                "llm-gateway".to_owned(),
            ),
            (GATEWAY_LABEL.to_owned(), gateway.name_any()),
        ]);
        Self {
            name,
            gateway: gateway.name_any(),
            namespace: gateway.namespace().unwrap_or_else(|| "default".to_owned()),
            labels: labels(&selector),
            selector,
            owner: owner_reference(gateway),
        }
    }

    pub(super) fn metadata(&self, name: &str) -> ObjectMeta {
        super::metadata(
            name,
            Some(self.namespace.clone()),
            &self.labels,
            self.owner.as_ref(),
        )
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
    if let Some(telemetry) = &spec.telemetry {
        let namespace = gateway.namespace().unwrap_or_default();
        data.extend(telemetry.env(&namespace, &gateway.name_any()));
    }
    if let Some(events) = &spec.usage_events {
        let (name, value) = events.env();
        data.insert(name, value);
    }
    if let Some(cors) = &spec.cors {
        data.insert("CORS_ALLOWED_ORIGINS", cors.allowed_origins.join(","));
        data.insert("CORS_ALLOW_CREDENTIALS", cors.allow_credentials.to_string());
        data.insert("CORS_MAX_AGE", cors.max_age.to_string());
    }
    if let Some(redis) = &spec.redis {
        let mode = match redis.on_unavailable {
            OnUnavailable::FailOpen => "failOpen",
            OnUnavailable::FailClosed => "failClosed",
        };
        data.insert("REDIS_ON_UNAVAILABLE", mode.to_owned());
        data.insert("RATE_LIMIT_STORAGE", "redis".to_owned());
        if redis.cluster {
            data.insert("REDIS_CLUSTER", "true".to_owned());
        }
    }
    let data = data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    typed(&ConfigMap {
        metadata: base.metadata(&format!("{}-settings", base.name)),
        data: Some(data),
        ..ConfigMap::default()
    })
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
        metadata.annotations = Some(gateway.spec.service_annotations.clone());
    }
    typed(&workload::service(
        metadata,
        &base.selector,
        port,
        Some(service_type),
    ))
}

fn pdb(base: &Base) -> Child {
    typed(&PodDisruptionBudget {
        metadata: base.metadata(&base.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(workload::selector(&base.selector)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

fn hpa(gateway: &LlmGateway, base: &Base) -> Option<Child> {
    let scaling = gateway.spec.autoscaling.as_ref()?;
    let mut metrics = vec![
        workload::utilization("cpu", scaling.target_cpu_utilization_percentage),
        workload::utilization("memory", scaling.target_memory_utilization_percentage),
    ];
    metrics.extend(scaling.target_in_flight_requests_per_pod.map(in_flight));
    let replicas = (scaling.min_replicas, scaling.max_replicas);
    Some(typed(&workload::hpa(
        base.metadata(&base.name),
        &base.name,
        replicas,
        metrics,
    )))
}

/// A metric holding [`IN_FLIGHT_METRIC`] at `per_pod` on average.
fn in_flight(per_pod: i32) -> MetricSpec {
    MetricSpec {
        type_: "Pods".to_owned(),
        pods: Some(PodsMetricSource {
            metric: MetricIdentifier {
                name: IN_FLIGHT_METRIC.to_owned(),
                ..MetricIdentifier::default()
            },
            target: MetricTarget {
                type_: "AverageValue".to_owned(),
                average_value: Some(Quantity(per_pod.to_string())),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
pub(super) mod tests;
