//! `LlmProvider.spec.selfHosted`: a model server (vLLM, llama.cpp server, Ollama…) the
//! operator runs next to the gateways as a Deployment, a Service and optionally an HPA. The
//! provider's `baseUrl` then defaults to that Service, so one resource both runs the model and
//! routes to it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A model server the operator runs for this provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfHosted {
    /// Container image of the server, e.g. `vllm/vllm-openai:v0.8.5`. Pin a version: a
    /// moving tag makes rollouts unpredictable.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Arguments to the image's entrypoint, e.g. `[--model, Qwen/Qwen2.5-0.5B-Instruct]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub args: Vec<String>,
    /// Environment of the server (values or references to Secrets, e.g. a Hugging Face token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
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
