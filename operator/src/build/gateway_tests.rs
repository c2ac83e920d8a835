//! Unit tests of [`super`]: the guide's defaults, shutdown timing, settings and autoscaling.

use super::*;
use serde_json::json;

pub(in crate::build) fn gateway(spec: Value) -> LlmGateway {
    serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
        "metadata": {"name": "main", "namespace": "ai", "uid": "u-9"}, "spec": spec}),
    )
    .expect("valid LlmGateway")
}

/// The pod template of the Deployment built for a gateway with `spec`.
pub(in crate::build) fn pod(spec: Value) -> Value {
    let children = super::children(&gateway(spec));
    find(&children, "Deployment")["spec"]["template"].clone()
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

#[test]
fn cors_reaches_the_gateway_settings_and_rolls_the_pods() {
    let open = children(&gateway(json!({"cors": {
        "allowedOrigins": ["https://app.example.com", "https://admin.example.com"],
        "maxAge": "1h"
    }})));
    let settings = &find(&open, "ConfigMap")["data"];
    assert_eq!(
        settings["CORS_ALLOWED_ORIGINS"],
        "https://app.example.com,https://admin.example.com"
    );
    assert_eq!(settings["CORS_ALLOW_CREDENTIALS"], "false");
    assert_eq!(settings["CORS_MAX_AGE"], "1h");
    let closed = children(&gateway(json!({})));
    assert!(
        find(&closed, "ConfigMap")["data"]
            .get("CORS_ALLOWED_ORIGINS")
            .is_none()
    );
    let checksum = |c: &[Child]| {
        find(c, "Deployment")["spec"]["template"]["metadata"]["annotations"]["llmgateway.io/settings-checksum"].clone()
    };
    assert_ne!(checksum(&open), checksum(&closed));
}

#[test]
fn telemetry_reaches_the_gateway_settings() {
    let traced = children(&gateway(json!({"telemetry": {
        "otlpEndpoint": "http://otel-collector.observability:4318",
        "protocol": "httpProtobuf",
        "samplingRatio": 0.05,
        "captureContent": true
    }})));
    let settings = &find(&traced, "ConfigMap")["data"];
    assert_eq!(
        settings["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "http://otel-collector.observability:4318"
    );
    assert_eq!(settings["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    assert_eq!(settings["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
    assert_eq!(settings["OTEL_TRACES_SAMPLER_ARG"], "0.05");
    assert_eq!(
        settings["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"],
        "true"
    );
    let plain = children(&gateway(json!({})));
    assert!(
        find(&plain, "ConfigMap")["data"]
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .is_none()
    );
}

#[test]
fn usage_events_go_to_the_pods_standard_output() {
    let on = children(&gateway(json!({"usageEvents": {"output": "stdout"}})));
    assert_eq!(find(&on, "ConfigMap")["data"]["USAGE_EVENTS_PATH"], "-");
    let off = children(&gateway(json!({})));
    assert!(
        find(&off, "ConfigMap")["data"]
            .get("USAGE_EVENTS_PATH")
            .is_none()
    );
}

#[test]
fn collector_headers_come_from_a_secret_never_from_the_settings() {
    let spec = json!({"telemetry": {
        "otlpEndpoint": "https://api.honeycomb.io",
        "protocol": "httpProtobuf",
        "headersSecretRef": {"name": "collector", "key": "headers"}
    }});
    let template = pod(spec.clone());
    let env = template["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let headers = env
        .iter()
        .find(|v| v["name"] == "OTEL_EXPORTER_OTLP_HEADERS")
        .expect("the headers variable");
    assert_eq!(headers["valueFrom"]["secretKeyRef"]["name"], "collector");
    assert_eq!(headers["valueFrom"]["secretKeyRef"]["key"], "headers");
    let children = children(&gateway(spec));
    let settings = &find(&children, "ConfigMap")["data"];
    assert!(settings.get("OTEL_EXPORTER_OTLP_HEADERS").is_none());
}
