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

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PodSpec, PodTemplateSpec, SecurityContext, Service,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::discovery::ApiResource;
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_crds::self_hosted::SelfHosted;

use super::workload::{self, HTTP};
use super::{Child, Labels, labels, metadata, owner_reference, typed};

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
    let selector = Labels::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "model-server".to_owned(),
        ),
        (PROVIDER_LABEL.to_owned(), provider.name_any()),
    ]);
    let owner = owner_reference(provider);
    let metadata = metadata(
        &name,
        provider.namespace(),
        &labels(&selector),
        owner.as_ref(),
    );
    let mut out = vec![
        typed(&deployment(hosted, &metadata, &selector)),
        typed(&workload::service(
            metadata.clone(),
            &selector,
            hosted.port,
            None,
        )),
    ];
    if let Some(scaling) = &hosted.autoscaling {
        let cpu = workload::utilization("cpu", scaling.target_cpu_utilization_percentage);
        let replicas = (scaling.min_replicas, scaling.max_replicas);
        out.push(typed(&workload::hpa(metadata, &name, replicas, vec![cpu])));
    }
    out
}

/// Kinds pruned (by [`PROVIDER_LABEL`]) when no longer wanted.
pub fn prunable() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
    ]
}

fn deployment(hosted: &SelfHosted, metadata: &ObjectMeta, selector: &Labels) -> Deployment {
    let volume = |name: &str, medium: Option<&str>| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    };
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(workload::restricted_pod(MODEL_SERVER_UID)),
        containers: vec![container(hosted)],
        volumes: Some(vec![volume("dshm", Some("Memory")), volume("home", None)]),
        node_selector: Some(hosted.node_selector.clone()).filter(|s| !s.is_empty()),
        tolerations: Some(hosted.tolerations.clone()).filter(|t| !t.is_empty()),
        ..PodSpec::default()
    };
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: metadata.labels.clone(),
            ..ObjectMeta::default()
        }),
        spec: Some(pod),
    };
    Deployment {
        metadata: metadata.clone(),
        spec: DeploymentSpec {
            replicas: hosted.autoscaling.is_none().then_some(hosted.replicas),
            selector: workload::selector(selector),
            template,
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn container(hosted: &SelfHosted) -> Container {
    let probe = |failures: i32| workload::http_probe(&hosted.readiness_path, 10, 5, failures);
    Container {
        name: "model-server".to_owned(),
        image: Some(hosted.image.clone()),
        args: Some(hosted.args.clone()).filter(|a| !a.is_empty()),
        ports: Some(vec![workload::port(HTTP, hosted.port)]),
        env: Some(env(hosted)),
        resources: hosted.resources.clone(),
        startup_probe: Some(probe(STARTUP_SECONDS / 10)),
        readiness_probe: Some(probe(3)),
        volume_mounts: Some(vec![
            workload::mount("dshm", "/dev/shm"),
            workload::mount("home", HOME_DIR),
        ]),
        security_context: Some(SecurityContext {
            seccomp_profile: Some(workload::runtime_default()),
            ..workload::restricted_container()
        }),
        ..Container::default()
    }
}

/// The server's environment: `HOME` (unless the spec sets it), `env` as written (which the
/// policy checked reads no Secret), then `secretEnv` as Secret references.
fn env(hosted: &SelfHosted) -> Vec<EnvVar> {
    let names_home = hosted.env.iter().any(|v| v.name == "HOME")
        || hosted.secret_env.iter().any(|v| v.name == "HOME");
    let mut env = Vec::new();
    if !names_home {
        env.push(EnvVar {
            name: "HOME".to_owned(),
            value: Some(HOME_DIR.to_owned()),
            ..EnvVar::default()
        });
    }
    env.extend(hosted.env.iter().cloned());
    env.extend(hosted.secret_env.iter().map(|variable| {
        let reference = &variable.secret_key_ref;
        workload::secret_env(&variable.name, &reference.name, &reference.key)
    }));
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
