//! Parsing multi-document YAML into typed objects: the standalone directory format.
//!
//! One entry point, [`Manifests::add_yaml`]. Each document must be one of our four kinds or a
//! core `v1` Secret; anything else is an error naming the file and document, because a typo in
//! `kind` silently ignored is a route silently missing.

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::api_key::ApiKey;
use crate::llm_gateway::LlmGateway;
use crate::llm_provider::LlmProvider;
use crate::route_policy::RoutePolicy;

/// The API version of our kinds.
pub const API_VERSION: &str = "llmgateway.io/v1alpha1";

/// Every object a gateway's configuration is compiled from.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Upstreams.
    pub providers: Vec<LlmProvider>,
    /// Routes.
    pub route_policies: Vec<RoutePolicy>,
    /// Callers.
    pub api_keys: Vec<ApiKey>,
    /// Data-plane settings (standalone mode serves at most one).
    pub gateways: Vec<LlmGateway>,
    /// Provider credentials and API keys.
    pub secrets: Vec<Secret>,
}

/// A document that could not be turned into an object.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: document {document}: {message}")]
pub struct ManifestError {
    /// File (or other source) the document came from.
    pub source_name: String,
    /// 1-based index of the document in the file.
    pub document: usize,
    /// What is wrong, with the field path when known.
    pub message: String,
}

impl Manifests {
    /// Parses every document of one YAML file and adds the objects.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), ManifestError> {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let fail = |message: String| ManifestError {
                source_name: source_name.to_owned(),
                document: index + 1,
                message,
            };
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
                .map_err(|e| fail(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            self.add_value(value).map_err(fail)?;
        }
        Ok(())
    }

    /// Number of objects of every kind.
    pub fn len(&self) -> usize {
        self.providers.len()
            + self.route_policies.len()
            + self.api_keys.len()
            + self.gateways.len()
            + self.secrets.len()
    }

    /// True when no object was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add_value(&mut self, value: serde_yaml::Value) -> Result<(), String> {
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let kind = value
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        match (api_version, kind) {
            (API_VERSION, "LlmProvider") => self.providers.push(typed(value)?),
            (API_VERSION, "RoutePolicy") => self.route_policies.push(typed(value)?),
            (API_VERSION, "ApiKey") => self.api_keys.push(typed(value)?),
            (API_VERSION, "LlmGateway") => self.gateways.push(typed(value)?),
            ("v1", "Secret") => self.secrets.push(typed(value)?),
            ("", _) | (_, "") => return Err("apiVersion and kind are required".to_owned()),
            (v, k) => {
                return Err(format!(
                    "unsupported object {v}/{k}: expected LlmProvider, RoutePolicy, ApiKey or \
                     LlmGateway in {API_VERSION}, or a v1 Secret"
                ));
            }
        }
        Ok(())
    }
}

/// Trait alias for the typed objects a manifest may hold.
trait Object: DeserializeOwned + Resource<DynamicType = ()> {}
impl<T: DeserializeOwned + Resource<DynamicType = ()>> Object for T {}

fn typed<T: Object>(value: serde_yaml::Value) -> Result<T, String> {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    // Path tracking costs a third of the conversion, so it runs only to explain a failure.
    let object: T = match T::deserialize(&value) {
        Ok(object) => object,
        Err(_) => serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let name = name.as_deref().unwrap_or("<unnamed>");
            format!("{} {name}: field {path}: {}", T::kind(&()), e.inner())
        })?,
    };
    if object.meta().name.as_deref().is_none_or(str::is_empty) {
        return Err(format!("{} without metadata.name", T::kind(&())));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_from_one_file() {
        let text = r#"
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {name: fake}
spec: {type: fake}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: routes}
spec:
  routes:
  - model: demo
    targets: [{provider: fake}]
---
apiVersion: v1
kind: Secret
metadata: {name: key}
stringData: {apiKey: x}
---
"#;
        let mut m = Manifests::default();
        m.add_yaml("a.yaml", text).unwrap();
        assert_eq!(
            (m.providers.len(), m.route_policies.len(), m.secrets.len()),
            (1, 1, 1)
        );
    }

    #[test]
    fn names_the_file_document_and_field() {
        let text = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: p}\nspec: {type: fake}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: bad}\nspec: {type: fake, maxConcurrency: lots}\n";
        let err = Manifests::default().add_yaml("p.yaml", text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("p.yaml: document 2: LlmProvider bad: field spec.maxConcurrency"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_unknown_kinds() {
        let err = Manifests::default()
            .add_yaml(
                "x.yaml",
                "apiVersion: llmgateway.io/v1alpha1\nkind: LLMProvider\nmetadata: {name: p}\n",
            )
            .unwrap_err();
        assert!(err.to_string().contains("unsupported object"), "{err}");
    }
}
