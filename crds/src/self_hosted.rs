//! `LlmProvider.spec.selfHosted`: a model server (vLLM, llama.cpp server, Ollama…) the
//! operator runs next to the gateways as a Deployment, a Service and optionally an HPA. The
//! provider's `baseUrl` then defaults to that Service, so one resource both runs the model and
//! routes to it.
//!
//! Whoever writes the provider chooses what runs, so the operator bounds it: the image must
//! come from a repository the operator was installed to allow, and Secrets reach the server
//! only through `secretEnv`, never through `env` (whose `valueFrom.secretKeyRef` could name
//! any Secret of the namespace, such as a gateway's credentials).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::refs::SecretKeyRef;

/// A model server the operator runs for this provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.env) || self.env.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef))").message("selfHosted.env may not read Secrets (valueFrom.secretKeyRef); name them in selfHosted.secretEnv"))]
pub struct SelfHosted {
    /// Container image of the server, e.g. `vllm/vllm-openai:v0.8.5`, from a repository the
    /// operator allows (its `ALLOWED_IMAGE_REPOSITORIES`). Pin a version: a moving tag makes
    /// rollouts unpredictable.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Arguments to the image's entrypoint, e.g. `[--model, Qwen/Qwen2.5-0.5B-Instruct]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub args: Vec<String>,
    /// Environment of the server: values, or references to ConfigMaps and the pod's fields,
    /// never to Secrets (use `secretEnv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Environment variables read from Secrets, e.g. a Hugging Face token. Each Secret must
    /// carry the label `llmgateway.io/model-server-secret: "true"`: whoever manages the Secret
    /// consents to model servers reading it, not whoever writes the provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub secret_env: Vec<SecretEnvVar>,
    /// Port the server listens on.
    #[serde(default = "SelfHosted::default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Path the kubelet probes for readiness (an OpenAI-compatible server answers
    /// `/v1/models` once the model is loaded).
    #[serde(default = "SelfHosted::default_readiness_path")]
    #[schemars(regex(pattern = r"^/"), length(max = 256))]
    pub readiness_path: String,
    /// Pods when autoscaling is off.
    #[serde(default = "SelfHosted::default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// CPU, memory and accelerators (e.g. `nvidia.com/gpu: 1`) of each pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scale on CPU between these bounds (an HPA owned by the provider).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<ModelAutoscaling>,
    /// Nodes the server may run on (e.g. GPU nodes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the server tolerates (e.g. of GPU nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl SelfHosted {
    fn default_port() -> i32 {
        8000
    }
    fn default_readiness_path() -> String {
        "/v1/models".to_owned()
    }
    fn default_replicas() -> i32 {
        1
    }

    /// Name of the Deployment, Service and HPA of the provider `provider`.
    pub fn workload_name(provider: &str) -> String {
        format!("{provider}-model")
    }

    /// The in-cluster URL of the server's OpenAI API: the default `baseUrl`.
    pub fn base_url(&self, provider: &str, namespace: &str) -> String {
        format!(
            "http://{}.{namespace}.svc.cluster.local:{}/v1",
            Self::workload_name(provider),
            self.port
        )
    }
}

/// An environment variable of a model server whose value is one key of a Secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnvVar {
    /// Name of the variable, e.g. `HF_TOKEN`.
    #[schemars(
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        length(min = 1, max = 256)
    )]
    pub name: String,
    /// The Secret (in the provider's namespace) and key its value comes from.
    pub secret_key_ref: SecretKeyRef,
}

/// Horizontal autoscaling of a model server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct ModelAutoscaling {
    /// Fewest pods.
    #[serde(default = "ModelAutoscaling::default_min")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    /// Most pods.
    #[serde(default = "ModelAutoscaling::default_max")]
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Average CPU utilisation the autoscaler aims for.
    #[serde(default = "ModelAutoscaling::default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

impl ModelAutoscaling {
    fn default_min() -> i32 {
        1
    }
    fn default_max() -> i32 {
        4
    }
    fn default_cpu() -> i32 {
        70
    }
}
