//! A typed way to state a test's configuration: start from manifests (a minimal set, or any
//! YAML text), change fields by path, render. Every lookup fails loudly: a manifest that is
//! not there, or a path whose parent is missing, panics with what was available instead of
//! silently leaving the configuration unchanged (as a string `replacen` would).

use std::path::Path;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// A set of manifests (one YAML document each), edited in place.
#[derive(Clone, Debug)]
pub struct Scenario {
    documents: Vec<Value>,
}

impl Scenario {
    /// The manifests of a multi-document YAML `text`.
    pub fn parse(text: &str) -> Self {
        let documents: Vec<Value> = serde_yaml::Deserializer::from_str(text)
            .map(|document| Value::deserialize(document).expect("scenario YAML parses"))
            .filter(|document| !document.is_null())
            .collect();
        assert!(!documents.is_empty(), "scenario YAML has no documents");
        Self { documents }
    }

    /// A fake provider `fake`, a route `fake-model` to it and an ApiKey `caller` (owner
    /// `team-a`) whose secret holds `key`.
    pub fn minimal(key: &str) -> Self {
        Self::parse(&format!(
            r#"apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: fake}}
spec: {{type: fake, fake: {{}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {{name: routes}}
spec:
  routes:
  - model: fake-model
    targets: [{{provider: fake}}]
---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: caller}}
spec: {{secretName: caller-key, owner: team-a}}
---
apiVersion: v1
kind: Secret
metadata: {{name: caller-key}}
stringData: {{apiKey: {key}}}
"#
        ))
    }

    /// The manifest of `kind` named `name`; panics (listing what exists) when there is none.
    pub fn doc(&mut self, kind: &str, name: &str) -> Doc<'_> {
        let available: Vec<String> = self.documents.iter().map(describe).collect();
        let value = self
            .documents
            .iter_mut()
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name:?} in the scenario; it has {available:?}"));
        Doc {
            label: format!("{kind} {name:?}"),
            value,
        }
    }

    /// Sets `path` in the manifest of `kind` named `name` (see [`Doc::set`]).
    pub fn set(
        &mut self,
        kind: &str,
        name: &str,
        path: &str,
        value: impl serde::Serialize,
    ) -> &mut Self {
        self.doc(kind, name).set(path, value);
        self
    }

    /// Replaces the existing `path` in the manifest of `kind` named `name` (see
    /// [`Doc::replace`]).
    pub fn replace(
        &mut self,
        kind: &str,
        name: &str,
        path: &str,
        value: impl serde::Serialize,
    ) -> &mut Self {
        self.doc(kind, name).replace(path, value);
        self
    }

    /// Adds the manifests of `text` (one or more documents).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.documents.extend(Self::parse(text).documents);
        self
    }

    /// The manifests as one multi-document YAML text.
    pub fn render(&self) -> String {
        self.documents
            .iter()
            .map(|d| serde_yaml::to_string(d).expect("scenario renders"))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// Writes the manifests to `dir/gateway.yaml`.
    pub fn write_to(&self, dir: &Path) {
        std::fs::write(dir.join("gateway.yaml"), self.render()).expect("write scenario");
    }
}

/// One manifest of a [`Scenario`].
pub struct Doc<'a> {
    label: String,
    value: &'a mut Value,
}

impl Doc<'_> {
    /// Sets the dot-separated `path` (e.g. `spec.timeouts.streamIdle`; a number indexes a
    /// list, as in `spec.routes.0.model`) to `value`, adding the last key if absent. Every key before the last must already exist and hold a mapping.
    pub fn set(&mut self, path: &str, value: impl serde::Serialize) -> &mut Self {
        let (parent, key) = self.parent(path);
        parent.insert(Value::from(key), to_value(value));
        self
    }

    /// Like [`Doc::set`], but the whole `path` must already exist: for values a test means to
    /// change rather than add.
    pub fn replace(&mut self, path: &str, value: impl serde::Serialize) -> &mut Self {
        let label = self.label.clone();
        let (parent, key) = self.parent(path);
        let keys = keys_of(parent);
        let slot = parent
            .get_mut(key)
            .unwrap_or_else(|| panic!("{label}: no {path:?} to replace (the parent has {keys:?})"));
        *slot = to_value(value);
        self
    }

    /// The mapping holding the last key of `path`, and that key.
    fn parent<'p>(&mut self, path: &'p str) -> (&mut Mapping, &'p str) {
        let mut segments: Vec<&str> = path.split('.').collect();
        let key = segments
            .pop()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| panic!("{}: empty path segment in {path:?}", self.label));
        let mut node: &mut Value = self.value;
        for (depth, segment) in segments.iter().enumerate() {
            let walked = segments[..=depth].join(".");
            let label = &self.label;
            node = match node {
                Value::Sequence(items) => {
                    let length = items.len();
                    let index = segment.parse::<usize>().ok();
                    index.and_then(|i| items.get_mut(i)).unwrap_or_else(|| {
                        panic!("{label}: no {walked:?} (setting {path:?}); a list of {length}")
                    })
                }
                Value::Mapping(mapping) => {
                    let keys = keys_of(mapping);
                    mapping.get_mut(*segment).unwrap_or_else(|| {
                        panic!("{label}: no {walked:?} (setting {path:?}); the parent has {keys:?}")
                    })
                }
                _ => panic!("{label}: {walked:?} is inside a scalar"),
            };
        }
        let label = &self.label;
        let mapping = node
            .as_mapping_mut()
            .unwrap_or_else(|| panic!("{label}: the parent of {path:?} is not a mapping"));
        (mapping, key)
    }
}

fn to_value(value: impl serde::Serialize) -> Value {
    serde_yaml::to_value(value).expect("value converts to YAML")
}

fn keys_of(mapping: &Mapping) -> Vec<String> {
    mapping
        .keys()
        .map(|k| k.as_str().unwrap_or("?").to_owned())
        .collect()
}

fn describe(document: &Value) -> String {
    format!(
        "{} {}",
        document["kind"].as_str().unwrap_or("?"),
        document["metadata"]["name"].as_str().unwrap_or("?")
    )
}
