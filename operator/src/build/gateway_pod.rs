//! The gateway's Deployment: its pod template (probes, least privilege, the settings checksum
//! that rolls pods on change), where the pods run (`spec.nodeSelector`, `tolerations`,
//! `affinity`, `topologySpreadConstraints`, spread over zones and nodes by default) and how
//! long they may take to stop (`spec.shutdown`).

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use llm_gateway_crds::gateway_pod::{
    RESERVED_POD_LABELS, Shutdown, env_allowed, env_value_allowed, pod_annotation_allowed,
};
use llm_gateway_crds::llm_gateway::{LlmGateway, LlmGatewaySpec};
use serde::Serialize;
use serde_json::{Value, json};

use super::gateway::{
    ADMIN_PORT, Base, CONTAINER_PORT, DEFAULT_IMAGE, LAST_KNOWN_GOOD_DIR, SERVICE_ACCOUNT_DIR,
};
use super::{Child, bundle, child, rbac, resource};

/// Seconds, after the drain deadline, for the streams it ended to close.
const CUT_STREAMS_SECONDS: i64 = 5;
/// Seconds, after that, for the usage of ended requests to reach Redis.
const SETTLE_SECONDS: i64 = 10;
/// Seconds of margin before the kubelet's SIGKILL.
const MARGIN_SECONDS: i64 = 5;

/// The pods' `terminationGracePeriodSeconds`: the shutdown delay (listener still open), the
/// drain, then time for ended streams to close and their usage to settle, with margin. No
/// preStop hook precedes SIGTERM, so the kubelet's clock starts when the gateway's does.
pub fn termination_grace_seconds(shutdown: &Shutdown) -> i64 {
    let whole = |d: llm_gateway_crds::Duration| {
        i64::try_from(d.get().as_millis().div_ceil(1000)).unwrap_or(i64::MAX / 4)
    };
    whole(shutdown.delay)
        + whole(shutdown.drain_timeout)
        + CUT_STREAMS_SECONDS
        + SETTLE_SECONDS
        + MARGIN_SECONDS
}

/// The Deployment of the gateway's pods; `replicas` is left to the HPA under autoscaling.
pub(super) fn deployment(gateway: &LlmGateway, base: &Base, checksum: &str) -> Child {
    let spec = &gateway.spec;
    // An unconfined AppArmor profile is refused at admission and dropped here too.
    let mut annotations: BTreeMap<String, String> = spec
        .pod_annotations
        .iter()
        .filter(|(key, value)| pod_annotation_allowed(key, value))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(
        "llmgateway.io/settings-checksum".to_owned(),
        checksum.to_owned(),
    );
    let mut deployment_spec = json!({
        "selector": {"matchLabels": base.selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": pod_labels(spec, base), "annotations": annotations},
            "spec": pod_spec(gateway, base),
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

/// `spec.podLabels` under the operator's labels, which select the pods and so always win.
fn pod_labels(spec: &LlmGatewaySpec, base: &Base) -> Value {
    let mut labels: BTreeMap<String, Value> = spec
        .pod_labels
        .iter()
        .filter(|(key, _)| !RESERVED_POD_LABELS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    if let Value::Object(ours) = &base.labels {
        labels.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    json!(labels)
}

fn pod_spec(gateway: &LlmGateway, base: &Base) -> Value {
    let spec = &gateway.spec;
    let mut pod = json!({
        "serviceAccountName": base.name,
        // The token is mounted explicitly (`service-account`), for the gateway's own
        // least-privilege account only: nothing added to the pod gets one by default.
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": termination_grace_seconds(&spec.shutdown),
        "volumes": [
            {"name": "last-known-good", "projected": {"sources": [
                {"configMap": {"name": bundle::last_known_good_name(gateway), "optional": true}},
                {"secret": {"name": bundle::credentials_name(gateway), "optional": true}},
            ]}},
            rbac::token_volume(),
        ],
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(gateway, base)],
    });
    match &spec.topology_spread_constraints {
        None => pod["topologySpreadConstraints"] = default_spread(base),
        // `[]` turns spreading off: the field is left out (the API server would drop an empty
        // list on read, and the operator would see a difference on every reconcile).
        Some(constraints) if constraints.is_empty() => {}
        // A pod refuses a repeated (topologyKey, whenUnsatisfiable) pair; admission refuses it
        // in the LlmGateway, and the first is kept here for an object written before that.
        Some(constraints) => {
            pod["topologySpreadConstraints"] = to_json(&unique_by(constraints, |c| {
                (c.topology_key.clone(), c.when_unsatisfiable.clone())
            }));
        }
    }
    place(spec, &mut pod);
    pod
}

/// Copies the scheduling fields the spec sets onto the pod (unset or empty ones stay absent,
/// so the cluster's defaults apply, server-side apply owns nothing it did not write, and no
/// empty value the API server drops on read looks like drift).
fn place(spec: &LlmGatewaySpec, pod: &mut Value) {
    if !spec.node_selector.is_empty() {
        pod["nodeSelector"] = to_json(&spec.node_selector);
    }
    if !spec.tolerations.is_empty() {
        pod["tolerations"] = to_json(&spec.tolerations);
    }
    if let Some(affinity) = spec.affinity.as_ref().map(to_json).filter(non_empty) {
        pod["affinity"] = affinity;
    }
    // Secrets with no name pull nothing; a name given twice is one Secret.
    let named: Vec<_> = spec
        .image_pull_secrets
        .iter()
        .filter(|s| !s.name.is_empty())
        .collect();
    let pull_secrets = unique_by(named, |s| s.name.clone());
    if !pull_secrets.is_empty() {
        pod["imagePullSecrets"] = to_json(&pull_secrets);
    }
    if let Some(class) = spec.priority_class_name.as_ref().filter(|c| !c.is_empty()) {
        pod["priorityClassName"] = json!(class);
    }
}

/// `items` without the later repeats of a key (its first occurrence is kept, in order).
fn unique_by<T, K: Eq + Hash>(items: impl IntoIterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(key(item)))
        .collect()
}

/// Whether a JSON value is more than an empty object, list or string.
fn non_empty(value: &Value) -> bool {
    !matches!(value, Value::Null)
        && value.as_object().is_none_or(|o| !o.is_empty())
        && value.as_array().is_none_or(|a| !a.is_empty())
        && value.as_str().is_none_or(|s| !s.is_empty())
}

/// Spread over zones, then nodes, as far as the cluster allows (`ScheduleAnyway`): a zone or
/// node outage then takes a fraction of the replicas, while a small or single-zone cluster
/// still schedules every pod.
fn default_spread(base: &Base) -> Value {
    let spread = |key: &str| json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": base.selector}});
    json!([
        spread("topology.kubernetes.io/zone"),
        spread("kubernetes.io/hostname")
    ])
}

fn container(gateway: &LlmGateway, base: &Base) -> Value {
    let spec = &gateway.spec;
    let resources = spec.resources.as_ref().map_or_else(
        || json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}),
        to_json,
    );
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3});
    json!({
        "name": "gateway",
        "image": spec.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
        "ports": [
            {"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": format!("{}-settings", base.name)}}],
        "env": env(gateway),
        "resources": resources,
        "volumeMounts": [
            {"name": "last-known-good", "mountPath": LAST_KNOWN_GOOD_DIR, "readOnly": true},
            {"name": "service-account", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true},
        ],
        "livenessProbe": probe("/health"),
        "readinessProbe": probe("/ready"),
        "securityContext": {"allowPrivilegeEscalation": false, "privileged": false, "runAsNonRoot": true, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
    })
}

/// The operator's variables, then `spec.env`. Admission refuses reserved names (the
/// operator's, the proxies and CA files), Secret references and `$(` variable references in
/// `spec.env`; they are dropped here too, so an object written past admission (or a cluster
/// without CEL) cannot override the operator's settings, redirect its egress or read a Secret,
/// directly or through the expansion of an operator variable. A name given twice (refused at
/// admission since `env` is keyed by name) keeps its last definition, the one the kubelet
/// would use, and an empty `value` (the default) is left out.
fn env(gateway: &LlmGateway) -> Vec<Value> {
    let spec = &gateway.spec;
    let mut env = vec![];
    if let Some(redis) = &spec.redis {
        env.push(json!({"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": redis.url_secret_ref.name, "key": redis.url_secret_ref.key}}}));
    }
    env.push(
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    );
    env.push(json!({"name": "API_KEY_PEPPER", "valueFrom": {"secretKeyRef": {"name": bundle::credentials_name(gateway), "key": llm_gateway_crds::snapshot::PEPPER_ENTRY}}}));
    let reads_secret = |v: &k8s_openapi::api::core::v1::EnvVar| {
        v.value_from
            .as_ref()
            .is_some_and(|f| f.secret_key_ref.is_some())
    };
    let allowed: Vec<_> = spec
        .env
        .iter()
        .filter(|v| {
            env_allowed(&v.name) && !reads_secret(v) && env_value_allowed(v.value.as_deref())
        })
        .rev()
        .collect();
    let mut extra = unique_by(allowed, |v| v.name.clone());
    extra.reverse();
    env.extend(extra.into_iter().map(|v| {
        let mut var = to_json(v);
        if let Value::Object(fields) = &mut var
            && fields.get("value").is_some_and(|value| !non_empty(value))
        {
            fields.remove("value");
        }
        var
    }));
    env
}

/// A Kubernetes type as JSON (serialising k8s-openapi types cannot fail).
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::gateway::tests::{find, gateway};
    use crate::build::gateway::{GATEWAY_LABEL, children};

    fn pod(spec: Value) -> Value {
        let children = children(&gateway(spec));
        find(&children, "Deployment")["spec"]["template"].clone()
    }

    #[test]
    fn shutdown_outlasts_the_default_provider_timeout_and_follows_the_spec() {
        let template = pod(json!({}));
        // 10 s delay + 300 s drain + 5 s for cut streams + 10 s to settle + 5 s of margin.
        assert_eq!(template["spec"]["terminationGracePeriodSeconds"], 330);
        let template = pod(json!({"shutdown": {"delay": "30s", "drainTimeout": "1500ms"}}));
        assert_eq!(template["spec"]["terminationGracePeriodSeconds"], 52);
        let children = children(&gateway(
            json!({"shutdown": {"delay": "30s", "drainTimeout": "20m"}}),
        ));
        let settings = &find(&children, "ConfigMap")["data"];
        assert_eq!(
            (&settings["SHUTDOWN_DELAY"], &settings["DRAIN_TIMEOUT"]),
            (&json!("30s"), &json!("20m"))
        );
    }

    #[test]
    fn pods_spread_over_zones_and_nodes_unless_told_otherwise() {
        let spread = &pod(json!({}))["spec"]["topologySpreadConstraints"];
        let keys: Vec<&Value> = spread
            .as_array()
            .expect("list")
            .iter()
            .map(|c| &c["topologyKey"])
            .collect();
        assert_eq!(
            keys,
            ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        );
        assert_eq!(spread[0]["whenUnsatisfiable"], "ScheduleAnyway");
        assert_eq!(
            spread[1]["labelSelector"]["matchLabels"][GATEWAY_LABEL],
            "main"
        );
    }

    #[test]
    fn spreading_turned_off_leaves_the_field_out_and_repeats_are_dropped() {
        // `[]` is read back as absent: writing it would look like drift on every reconcile.
        let off = pod(json!({"topologySpreadConstraints": []}));
        assert!(
            off["spec"].get("topologySpreadConstraints").is_none(),
            "{off}"
        );
        let constraint = |skew: i32, when: &str| json!({"maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": when});
        let template = pod(json!({"topologySpreadConstraints": [
            constraint(1, "DoNotSchedule"), constraint(2, "DoNotSchedule"), constraint(3, "ScheduleAnyway"),
        ]}));
        let spread = &template["spec"]["topologySpreadConstraints"];
        assert_eq!(
            spread,
            &json!([
                constraint(1, "DoNotSchedule"),
                constraint(3, "ScheduleAnyway")
            ])
        );
    }

    #[test]
    fn no_empty_value_reaches_the_pod() {
        let template = pod(json!({
            "affinity": {},
            "priorityClassName": "",
            "imagePullSecrets": [{"name": ""}],
            "env": [{"name": "EMPTY", "value": ""}],
        }));
        let pod = &template["spec"];
        for field in ["affinity", "priorityClassName", "imagePullSecrets"] {
            assert!(pod.get(field).is_none(), "{field}: {pod}");
        }
        let env = pod["containers"][0]["env"].as_array().expect("env");
        assert_eq!(env.last(), Some(&json!({"name": "EMPTY"})));
        let twice =
            pod_of(json!({"imagePullSecrets": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}));
        assert_eq!(
            twice["imagePullSecrets"],
            json!([{"name": "a"}, {"name": "b"}])
        );
    }

    fn pod_of(spec: Value) -> Value {
        pod(spec)["spec"].clone()
    }

    #[test]
    fn an_unconfined_apparmor_profile_is_dropped() {
        let template = pod(json!({"podAnnotations": {
            "container.apparmor.security.beta.kubernetes.io/gateway": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/other": "runtime/default",
        }}));
        let annotations = &template["metadata"]["annotations"];
        assert!(
            annotations
                .get("container.apparmor.security.beta.kubernetes.io/gateway")
                .is_none(),
            "{annotations}"
        );
        assert_eq!(
            annotations["container.apparmor.security.beta.kubernetes.io/other"],
            "runtime/default"
        );
    }

    #[test]
    fn placement_and_metadata_reach_the_pod_and_cannot_steal_the_selector() {
        let template = pod(json!({
            "nodeSelector": {"pool": "gateway"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "arch", "operator": "In", "values": ["amd64"]}]}]}}},
            "imagePullSecrets": [{"name": "registry"}],
            "priorityClassName": "high",
            "podAnnotations": {"mesh/inject": "false", "llmgateway.io/settings-checksum": "forged"},
            "podLabels": {"team": "ai", "llmgateway.io/gateway": "other"},
        }));
        let pod = &template["spec"];
        assert_eq!(pod["nodeSelector"], json!({"pool": "gateway"}));
        assert_eq!(pod["tolerations"][0]["key"], "dedicated");
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["key"],
            "arch"
        );
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry"}]));
        assert_eq!(pod["priorityClassName"], "high");
        let metadata = &template["metadata"];
        assert_eq!(metadata["annotations"]["mesh/inject"], "false");
        assert_ne!(
            metadata["annotations"]["llmgateway.io/settings-checksum"],
            "forged"
        );
        assert_eq!(metadata["labels"]["team"], "ai");
        assert_eq!(metadata["labels"][GATEWAY_LABEL], "main");
        let bare = pod_without_extras();
        for field in [
            "nodeSelector",
            "tolerations",
            "affinity",
            "imagePullSecrets",
            "priorityClassName",
        ] {
            assert!(bare.get(field).is_none(), "{field} unset by default");
        }
    }

    fn pod_without_extras() -> Value {
        pod(json!({}))["spec"].clone()
    }

    #[test]
    fn extra_env_follows_the_operator_s_and_never_replaces_it() {
        let template = pod(json!({"env": [
            {"name": "WRITE_TIMEOUT", "value": "60s"},
            {"name": "API_KEY_PEPPER", "value": "forged"},
            {"name": "LEAK", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}},
        ]}));
        let env = template["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .clone();
        let names: Vec<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(names, ["POD_NAME", "API_KEY_PEPPER", "WRITE_TIMEOUT"]);
        assert!(env[1]["valueFrom"]["secretKeyRef"].is_object());
    }

    #[test]
    fn extra_env_cannot_expand_the_operator_s_secrets_or_move_egress() {
        let template = pod(json!({
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
            "env": [
                {"name": "LEAK", "value": "$(API_KEY_PEPPER)"},
                {"name": "LEAK_REDIS", "value": "x-$(REDIS_URL)"},
                {"name": "HTTPS_PROXY", "value": "http://collector.internal:3128"},
                {"name": "http_proxy", "value": "http://collector.internal:3128"},
                {"name": "ALL_PROXY", "value": "socks5://collector.internal"},
                {"name": "NO_PROXY", "value": "*"},
                {"name": "SSL_CERT_FILE", "value": "/tmp/ca.pem"},
                {"name": "SSL_CERT_DIR", "value": "/tmp"},
                {"name": "WRITE_TIMEOUT", "value": "30s"},
                {"name": "WRITE_TIMEOUT", "value": "60s"},
            ],
        }));
        let env = template["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .clone();
        let names: Vec<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(
            names,
            ["REDIS_URL", "POD_NAME", "API_KEY_PEPPER", "WRITE_TIMEOUT"]
        );
        // A name given twice keeps its last definition, as the kubelet would.
        assert_eq!(env[3]["value"], "60s");
    }
}
