//! The gateway's Deployment: its pod template (least privilege, the settings checksum that
//! rolls pods on change), where the pods run (`spec.nodeSelector`, `tolerations`, `affinity`,
//! `topologySpreadConstraints`, spread over zones and nodes by default) and how long they may
//! take to stop (`spec.shutdown`). The container is built in `gateway_container.rs`.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapProjection, PodSpec, PodTemplateSpec, ProjectedVolumeSource,
    SecretProjection, TopologySpreadConstraint, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use llm_gateway_crds::gateway_pod::{RESERVED_POD_LABELS, Shutdown, pod_annotation_allowed};
use llm_gateway_crds::llm_gateway::{LlmGateway, LlmGatewaySpec};

use super::gateway::Base;
use super::{Child, Labels, bundle, gateway_container, rbac, typed, workload};

/// Seconds, after the drain deadline, for the streams it ended to close.
const CUT_STREAMS_SECONDS: i64 = 5;
/// Seconds, after that, for the usage of ended requests to reach Redis.
const SETTLE_SECONDS: i64 = 10;
/// Seconds of margin before the kubelet's SIGKILL.
const MARGIN_SECONDS: i64 = 5;

/// User and group of the gateway's processes (the distroless image's `nonroot`).
const GATEWAY_UID: i64 = 65532;

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
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(spec, base)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(gateway, base)),
    };
    typed(&Deployment {
        metadata: base.metadata(&base.name),
        spec: DeploymentSpec {
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: workload::selector(&base.selector),
            strategy: Some(one_at_a_time()),
            template,
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

/// Rollouts add one new pod before removing an old one, so capacity never drops.
fn one_at_a_time() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        rolling_update: Some(RollingUpdateDeployment {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(1)),
        }),
    }
}

/// `spec.podLabels` under the operator's labels, which select the pods and so always win.
fn pod_labels(spec: &LlmGatewaySpec, base: &Base) -> Labels {
    let mut labels: Labels = spec
        .pod_labels
        .iter()
        .filter(|(key, _)| !RESERVED_POD_LABELS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(base.labels.clone());
    labels
}

fn pod_spec(gateway: &LlmGateway, base: &Base) -> PodSpec {
    let spec = &gateway.spec;
    let mut pod = PodSpec {
        service_account_name: Some(base.name.clone()),
        // The token is mounted explicitly (`service-account`), for the gateway's own
        // least-privilege account only: nothing added to the pod gets one by default.
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(termination_grace_seconds(&spec.shutdown)),
        volumes: Some(vec![last_known_good_volume(gateway), rbac::token_volume()]),
        security_context: Some(workload::restricted_pod(GATEWAY_UID)),
        containers: vec![gateway_container::container(gateway, base)],
        topology_spread_constraints: spread(spec, base),
        ..PodSpec::default()
    };
    place(spec, &mut pod);
    pod
}

/// The `last-known-good` volume: the last-known-good ConfigMap and the credentials Secret,
/// both optional so a pod starts (on the API server's configuration) before they exist.
fn last_known_good_volume(gateway: &LlmGateway) -> Volume {
    let config = ConfigMapProjection {
        name: bundle::last_known_good_name(gateway),
        optional: Some(true),
        ..ConfigMapProjection::default()
    };
    let credentials = SecretProjection {
        name: bundle::credentials_name(gateway),
        optional: Some(true),
        ..SecretProjection::default()
    };
    let sources = vec![
        VolumeProjection {
            config_map: Some(config),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            secret: Some(credentials),
            ..VolumeProjection::default()
        },
    ];
    Volume {
        name: "last-known-good".to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The pods' spread: the default unless the spec sets one; `[]` turns spreading off and the
/// field is left out (the API server would drop an empty list on read, and the operator
/// would see a difference on every reconcile).
fn spread(spec: &LlmGatewaySpec, base: &Base) -> Option<Vec<TopologySpreadConstraint>> {
    match &spec.topology_spread_constraints {
        None => Some(default_spread(base)),
        Some(constraints) if constraints.is_empty() => None,
        // A pod refuses a repeated (topologyKey, whenUnsatisfiable) pair; admission refuses it
        // in the LlmGateway, and the first is kept here for an object written before that.
        Some(constraints) => Some(unique_by(constraints.iter().cloned(), |c| {
            (c.topology_key.clone(), c.when_unsatisfiable.clone())
        })),
    }
}

/// Copies the scheduling fields the spec sets onto the pod (unset or empty ones stay absent,
/// so the cluster's defaults apply, server-side apply owns nothing it did not write, and no
/// empty value the API server drops on read looks like drift).
fn place(spec: &LlmGatewaySpec, pod: &mut PodSpec) {
    pod.node_selector = Some(spec.node_selector.clone()).filter(|s| !s.is_empty());
    pod.tolerations = Some(spec.tolerations.clone()).filter(|t| !t.is_empty());
    pod.affinity = spec.affinity.clone().filter(|a| *a != Affinity::default());
    // Secrets with no name pull nothing; a name given twice is one Secret.
    let named = spec
        .image_pull_secrets
        .iter()
        .filter(|s| !s.name.is_empty())
        .cloned();
    let pull_secrets = unique_by(named, |s| s.name.clone());
    pod.image_pull_secrets = Some(pull_secrets).filter(|s| !s.is_empty());
    pod.priority_class_name = spec.priority_class_name.clone().filter(|c| !c.is_empty());
}

/// `items` without the later repeats of a key (its first occurrence is kept, in order).
pub(super) fn unique_by<T, K: Eq + Hash>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(key(item)))
        .collect()
}

/// Spread over zones, then nodes, as far as the cluster allows (`ScheduleAnyway`): a zone or
/// node outage then takes a fraction of the replicas, while a small or single-zone cluster
/// still schedules every pod.
fn default_spread(base: &Base) -> Vec<TopologySpreadConstraint> {
    let spread = |key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(workload::selector(&base.selector)),
        ..TopologySpreadConstraint::default()
    };
    vec![
        spread("topology.kubernetes.io/zone"),
        spread("kubernetes.io/hostname"),
    ]
}

#[cfg(test)]
mod tests {
    use crate::build::gateway::tests::{find, gateway, pod};
    use crate::build::gateway::{GATEWAY_LABEL, children};
    use serde_json::{Value, json};

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
}
