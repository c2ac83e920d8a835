pub mod duration;
pub use duration::Duration;
pub mod api_key;
pub mod compile;
pub mod compiled;
pub mod conditions;
pub mod keys;
pub mod llm_gateway;
pub mod llm_provider;
pub mod manifest;
pub mod policy;
pub mod refs;
pub mod route_policy;

use kube::CustomResourceExt;

/// Every CRD as `(file name, YAML)`, in a stable order: the source of `crds/yaml/`.
pub fn crd_yaml_files() -> Vec<(String, String)> {
    [
        llm_provider::LlmProvider::crd(),
        route_policy::RoutePolicy::crd(),
        api_key::ApiKey::crd(),
        llm_gateway::LlmGateway::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = crd.metadata.name.clone().unwrap_or_default();
        // Serialising our own generated CRD types cannot fail.
        let yaml = serde_yaml::to_string(&crd).unwrap_or_else(|e| unreachable!("{e}"));
        (format!("{name}.yaml"), yaml)
    })
    .collect()
}
