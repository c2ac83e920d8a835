//! LlmProvider with `selfHosted` → the model server's Deployment, Service and (when
//! autoscaling) HorizontalPodAutoscaler. Model servers load weights for minutes, so pods get a
//! generous startup probe instead of a liveness probe that would kill them mid-load, and a
//! memory-backed `/dev/shm` (vLLM and PyTorch need more than the container default).
//!
//! The pods meet the restricted Pod Security Standard and get no service-account token: a
//! model server never talks to the API server, and whoever writes the provider chooses its
//! arguments (which can load code). They run as a fixed non-root user, because many server
//! images run as root by default, which `runAsNonRoot` would refuse to start; a writable
//! `$HOME` keeps the downloads those servers cache under it working.

use kube::ResourceExt;
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_crds::self_hosted::SelfHosted;
use serde_json::{Value, json};

use super::{Child, child, labels, owner_reference, resource};

/// Label naming the LlmProvider a model-server child belongs to.
pub const PROVIDER_LABEL: &str = "llmgateway.io/provider";

/// Longest a model server may take to start answering (download and load), in seconds.
const STARTUP_SECONDS: i32 = 1800;

/// User and group of the model server's processes (any non-root id would do).
const MODEL_SERVER_UID: i64 = 65532;

/// The writable home of the model server (`HOME`, unless its spec sets one).
pub const HOME_DIR: &str = "/home/model-server";

/// The children of a self-hosted provider (none when it is not self-hosted).
pub fn children(provider: &LlmProvider) -> Vec<Child> {
    let Some(hosted) = &provider.spec.self_hosted else {
        return Vec::new();
    };
    let name = SelfHosted::workload_name(&provider.name_any());
    let selector =
        json!({"app.kubernetes.io/name": "model-server", PROVIDER_LABEL: provider.name_any()});
    let metadata = json!({"name": name, "namespace": provider.namespace(),
        "labels": labels(&selector), "ownerReferences": [owner_reference(provider)]});
    let mut out = vec![
        deployment(hosted, &metadata, &selector),
        service(hosted, &metadata, &selector),
    ];
    if let Some(scaling) = &hosted.autoscaling {
        out.push(child(
            resource("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
            json!({
                "metadata": metadata,
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": scaling.min_replicas,
                    "maxReplicas": scaling.max_replicas,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization_percentage}}}],
                },
            }),
        ));
    }
    out
}

/// Kinds pruned (by [`PROVIDER_LABEL`]) when no longer wanted.
pub fn prunable() -> Vec<kube::discovery::ApiResource> {
    vec![
        resource("apps", "v1", "Deployment", "deployments"),
        resource("", "v1", "Service", "services"),
        resource(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        ),
    ]
}

fn deployment(hosted: &SelfHosted, metadata: &Value, selector: &Value) -> Child {
    let probe = |period: i32, failures: i32| json!({"httpGet": {"path": hosted.readiness_path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures});
    let mut container = json!({
        "name": "model-server",
        "image": hosted.image,
        "ports": [{"name": "http", "containerPort": hosted.port, "protocol": "TCP"}],
        "env": env(hosted),
        "startupProbe": probe(10, STARTUP_SECONDS / 10),
        "readinessProbe": probe(10, 3),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "home", "mountPath": HOME_DIR}],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if !hosted.args.is_empty() {
        container["args"] = json!(hosted.args);
    }
    if let Some(resources) = &hosted.resources {
        container["resources"] = serde_json::to_value(resources).unwrap_or_default();
    }
    let mut pod = json!({
        "automountServiceAccountToken": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": MODEL_SERVER_UID,
            "runAsGroup": MODEL_SERVER_UID,
            "fsGroup": MODEL_SERVER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "home", "emptyDir": {}},
        ],
    });
    if !hosted.node_selector.is_empty() {
        pod["nodeSelector"] = json!(hosted.node_selector);
    }
    if !hosted.tolerations.is_empty() {
        pod["tolerations"] = serde_json::to_value(&hosted.tolerations).unwrap_or_default();
    }
    let mut spec = json!({
        "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": metadata["labels"]}, "spec": pod},
    });
    if hosted.autoscaling.is_none() {
        spec["replicas"] = json!(hosted.replicas);
    }
    child(
        resource("apps", "v1", "Deployment", "deployments"),
        json!({"metadata": metadata, "spec": spec}),
    )
}

/// The server's environment: `HOME` (unless the spec sets it), `env` as written (which the
/// policy checked reads no Secret), then `secretEnv` as Secret references.
fn env(hosted: &SelfHosted) -> Vec<Value> {
    let names_home = hosted.env.iter().any(|v| v.name == "HOME")
        || hosted.secret_env.iter().any(|v| v.name == "HOME");
    let mut env = Vec::new();
    if !names_home {
        env.push(json!({"name": "HOME", "value": HOME_DIR}));
    }
    env.extend(
        hosted
            .env
            .iter()
            .filter_map(|variable| serde_json::to_value(variable).ok()),
    );
    env.extend(hosted.secret_env.iter().map(|variable| {
        let reference = &variable.secret_key_ref;
        json!({"name": variable.name, "valueFrom": {"secretKeyRef": {"name": reference.name, "key": reference.key}}})
    }));
    env
}

fn service(hosted: &SelfHosted, metadata: &Value, selector: &Value) -> Child {
    child(
        resource("", "v1", "Service", "services"),
        json!({
            "metadata": metadata,
            "spec": {"selector": selector, "ports": [{"name": "http", "port": hosted.port, "targetPort": "http", "protocol": "TCP"}]},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(self_hosted: Value) -> LlmProvider {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
            "metadata": {"name": "qwen", "namespace": "ai", "uid": "u-7"},
            "spec": {"type": "openaiCompatible", "selfHosted": self_hosted}}),
        )
        .expect("valid LlmProvider")
    }

    #[test]
    fn a_model_server_gets_a_deployment_a_service_and_optionally_an_hpa() {
        let fixed = children(&provider(json!({"image": "vllm/vllm-openai:v0.8.5",
            "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct"],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})));
        let kinds: Vec<&str> = fixed.iter().map(|c| c.resource.kind.as_str()).collect();
        assert_eq!(kinds, ["Deployment", "Service"]);
        let deployment = &fixed[0].object;
        assert_eq!(deployment["metadata"]["name"], "qwen-model");
        assert_eq!(deployment["metadata"]["ownerReferences"][0]["uid"], "u-7");
        assert_eq!(deployment["spec"]["replicas"], 1);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"][1], "Qwen/Qwen2.5-0.5B-Instruct");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/v1/models");
        assert_eq!(container["startupProbe"]["failureThreshold"], 180);
        assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(fixed[1].object["spec"]["ports"][0]["port"], 8000);
        let scaled = children(&provider(json!({"image": "x", "autoscaling": {}})));
        assert_eq!(scaled.len(), 3);
        assert!(
            scaled[0].object["spec"].get("replicas").is_none(),
            "the HPA owns replicas"
        );
        assert_eq!(scaled[2].object["spec"]["maxReplicas"], 4);
    }

    #[test]
    fn secrets_arrive_only_through_secret_env_and_home_is_writable() {
        let built = children(&provider(json!({"image": "vllm/vllm-openai:v0.8.5",
            "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}],
            "secretEnv": [{"name": "HF_TOKEN", "secretKeyRef": {"name": "hf", "key": "token"}}]})));
        let pod = &built[0].object["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(
            pod["containers"][0]["env"],
            json!([
                {"name": "HOME", "value": HOME_DIR},
                {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            ])
        );
        let own_home = children(&provider(json!({"image": "x",
            "env": [{"name": "HOME", "value": "/data"}]})));
        assert_eq!(
            own_home[0].object["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "HOME", "value": "/data"}])
        );
    }
}
