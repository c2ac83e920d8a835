//! Parsing multi-document YAML into typed objects: the standalone directory format.
//!
//! One entry point, [`Manifests::add_yaml`]. Each document must be one of our five kinds or a
//! core `v1` Secret; anything else is an error naming the file and document, because a typo in
//! `kind` silently ignored is a route silently missing.
//!
//! Errors name the file, the document, the object and the field, never the content: they are
//! logged and served on `/health/detailed`, and a document may be a Secret (see `redact`).

mod cache;
mod redact;

pub use cache::DocumentCache;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::api_key::ApiKey;
use crate::llm_gateway::LlmGateway;
use crate::llm_provider::LlmProvider;
use crate::quota::LlmQuota;
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
    /// Shared limits and grant caps.
    pub quotas: Vec<LlmQuota>,
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

/// One object of any kind a manifest may hold. Boxed: the reload's [`DocumentCache`] keeps
/// every document's objects, and inline they would all take the largest kind's 1.7 KB.
#[derive(Clone, Debug)]
pub enum Object {
    Provider(Box<LlmProvider>),
    RoutePolicy(Box<RoutePolicy>),
    ApiKey(Box<ApiKey>),
    Gateway(Box<LlmGateway>),
    Secret(Box<Secret>),
    Quota(Box<LlmQuota>),
}

/// Parses every document of `text` in order, handing `sink` each object (`None` for an
/// empty document); the first failure stops it, with the 0-based index of its document.
fn add_documents(
    text: &str,
    mut sink: impl FnMut(usize, Option<Object>) -> Result<(), String>,
) -> Result<(), (usize, String)> {
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        // The parser's messages may quote scalars and keys: position and reason only.
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| (index, redact::syntax(&e)))?;
        let object = if value.is_null() {
            None
        } else {
            Some(object_of(value).map_err(|e| (index, e))?)
        };
        sink(index, object).map_err(|e| (index, e))?;
    }
    Ok(())
}

impl Manifests {
    /// Parses every document of one YAML file and adds the objects.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), ManifestError> {
        add_documents(text, |_, object| {
            if let Some(object) = object {
                self.push(object);
            }
            Ok(())
        })
        .map_err(|(index, message)| ManifestError {
            source_name: source_name.to_owned(),
            document: index + 1,
            message,
        })
    }

    /// Adds one object.
    pub fn push(&mut self, object: Object) {
        match object {
            Object::Provider(o) => self.providers.push(*o),
            Object::RoutePolicy(o) => self.route_policies.push(*o),
            Object::ApiKey(o) => self.api_keys.push(*o),
            Object::Gateway(o) => self.gateways.push(*o),
            Object::Secret(o) => self.secrets.push(*o),
            Object::Quota(o) => self.quotas.push(*o),
        }
    }

    /// Adds a copy of one object (without copying its box).
    pub fn push_copy(&mut self, object: &Object) {
        match object {
            Object::Provider(o) => self.providers.push(LlmProvider::clone(o)),
            Object::RoutePolicy(o) => self.route_policies.push(RoutePolicy::clone(o)),
            Object::ApiKey(o) => self.api_keys.push(ApiKey::clone(o)),
            Object::Gateway(o) => self.gateways.push(LlmGateway::clone(o)),
            Object::Secret(o) => self.secrets.push(Secret::clone(o)),
            Object::Quota(o) => self.quotas.push(LlmQuota::clone(o)),
        }
    }

    /// Number of objects of every kind.
    pub fn len(&self) -> usize {
        self.providers.len()
            + self.route_policies.len()
            + self.api_keys.len()
            + self.gateways.len()
            + self.secrets.len()
            + self.quotas.len()
    }

    /// True when no object was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The typed object of one document.
fn object_of(value: serde_yaml::Value) -> Result<Object, String> {
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    Ok(match (api_version, kind) {
        (API_VERSION, "LlmProvider") => Object::Provider(Box::new(typed(value)?)),
        (API_VERSION, "RoutePolicy") => Object::RoutePolicy(Box::new(typed(value)?)),
        (API_VERSION, "ApiKey") => Object::ApiKey(Box::new(typed(value)?)),
        (API_VERSION, "LlmGateway") => Object::Gateway(Box::new(typed(value)?)),
        (API_VERSION, "LlmQuota") => Object::Quota(Box::new(typed(value)?)),
        ("v1", "Secret") => Object::Secret(Box::new(typed(value)?)),
        ("", _) | (_, "") => return Err("apiVersion and kind are required".to_owned()),
        (v, k) => {
            let (v, k) = (clip(v), clip(k));
            return Err(format!(
                "unsupported object {v}/{k}: expected LlmProvider, RoutePolicy, ApiKey, \
                 LlmGateway or LlmQuota in {API_VERSION}, or a v1 Secret"
            ));
        }
    })
}

/// Trait alias for the typed objects a manifest may hold.
trait Typed: DeserializeOwned + Resource<DynamicType = ()> {}
impl<T: DeserializeOwned + Resource<DynamicType = ()>> Typed for T {}

fn typed<T: Typed>(value: serde_yaml::Value) -> Result<T, String> {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .map(clip);
    // Path tracking costs a third of the conversion, so it runs only to explain a failure.
    let object: T = match T::deserialize(&value) {
        Ok(object) => object,
        Err(_) => serde_path_to_error::deserialize(value).map_err(|e| {
            let kind = T::kind(&());
            let path = clip(&e.path().to_string());
            let name = name.as_deref().unwrap_or("<unnamed>");
            let sensitive = redact::is_sensitive(&kind, &path);
            let why = redact::describe(&e.inner().to_string(), sensitive);
            format!("{kind} {name}: field {path}: {why}")
        })?,
    };
    if object.meta().name.as_deref().is_none_or(str::is_empty) {
        return Err(format!("{} without metadata.name", T::kind(&())));
    }
    Ok(object)
}

/// A name, path or kind from a document, short and on one line.
fn clip(text: &str) -> String {
    redact::clip(text, redact::MAX_NAME_CHARS)
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

    /// Every error a document with a credential in it can produce, none quoting it.
    #[test]
    fn errors_about_secrets_and_credentials_never_quote_the_value() {
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\n";
        let provider = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: p}\nspec:\n  type: openai\n";
        let cases = [
            (
                format!("{secret}stringData: \"sk-live-SECRET123\"\n"),
                "Secret creds: field stringData: expected a map, found a string",
            ),
            (
                format!("{provider}  credentials: sk-live-SECRET456\n"),
                "LlmProvider p: field spec.credentials: expected struct Credentials, found a string",
            ),
            (
                format!("{secret}data: {{apiKey: 'sk-live-SECRET!!'}}\n"),
                "Secret creds: field data.apiKey: invalid value",
            ),
            (
                format!("{secret}stringData: {{apiKey: 4242SECRET}}\n").replace("SECRET", ""),
                "Secret creds: field stringData.apiKey: expected a string, found an integer",
            ),
            (
                format!("{secret}stringData:\n  apiKey: \"sk-live-SECRET789\" trailing\n"),
                "invalid YAML at line 5 column",
            ),
            (
                format!("{secret}stringData:\n  apiKey: !!int sk-live-SECRET789\n"),
                "invalid YAML at line 5 column",
            ),
            (
                format!(
                    "{secret}stringData: {{apiKey: sk-live-SECRET1, apiKey: sk-live-SECRET2}}\n"
                ),
                "a mapping has the same key twice",
            ),
        ];
        for (text, expected) in cases {
            let error = Manifests::default()
                .add_yaml("creds.yaml", &text)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("creds.yaml: document 1: "),
                "{error} <- {text}"
            );
            assert!(error.contains(expected), "{error} <- {text}");
            for leaked in ["SECRET", "4242", "sk-live"] {
                assert!(!error.contains(leaked), "{error} <- {text}");
            }
        }
    }

    #[test]
    fn unknown_kinds_and_names_are_clipped_to_one_short_line() {
        let long = "x".repeat(10_000);
        let text = format!("apiVersion: v9\nkind: \"{long}\\nforged\"\n");
        let error = Manifests::default()
            .add_yaml("k.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(error.len() < 400 && !error.contains('\n'), "{error}");
    }
}
