//! The CEL rules checked once per object version. A Kubernetes-mode reload compiles every
//! object the watches hold, though an event changes one; the rules of a 1,000-route
//! RoutePolicy alone took 45 ms. An object's `resourceVersion` changes with every write, so
//! what the rules found for (kind, namespace, name, resourceVersion) holds until it changes.

use std::collections::HashMap;

use kube::{CustomResourceExt, Resource, ResourceExt};
use serde::Serialize;

use super::{ConfigError, cel};
use crate::manifest::Manifests;

type ObjectVersion = (&'static str, String, String, String);

/// Rule errors by object version, from this reload and the one before.
#[derive(Debug, Default)]
pub struct RuleCache {
    current: HashMap<ObjectVersion, Vec<ConfigError>>,
    previous: HashMap<ObjectVersion, Vec<ConfigError>>,
    /// Objects checked (not found in the cache) by the last call, for the tests.
    checked: usize,
}

impl RuleCache {
    /// [`super::rule_errors`] of `manifests`, checking only objects whose version was not
    /// seen in the previous call (an object without a `resourceVersion` is always checked).
    pub fn rule_errors(&mut self, manifests: &Manifests) -> Vec<ConfigError> {
        self.previous = std::mem::take(&mut self.current);
        self.checked = 0;
        let mut errors = Vec::new();
        self.check_all(&manifests.providers, &mut errors);
        self.check_all(&manifests.route_policies, &mut errors);
        self.check_all(&manifests.api_keys, &mut errors);
        self.check_all(&manifests.gateways, &mut errors);
        self.check_all(&manifests.quotas, &mut errors);
        errors
    }

    /// Objects the last [`RuleCache::rule_errors`] checked rather than found.
    pub fn checked(&self) -> usize {
        self.checked
    }

    fn check_all<K>(&mut self, objects: &[K], errors: &mut Vec<ConfigError>)
    where
        K: CustomResourceExt + Resource<DynamicType = ()> + Serialize,
    {
        if objects.is_empty() || !cel::has_rules_for::<K>() {
            return;
        }
        for object in objects {
            let Some(version) = object.resource_version() else {
                self.checked += 1;
                cel::check(std::slice::from_ref(object), errors);
                continue;
            };
            let key = (
                cel::kind_name::<K>(),
                super::namespace_of(object).to_owned(),
                object.name_any(),
                version,
            );
            let found = match self.previous.remove(&key) {
                Some(found) => found,
                None => {
                    self.checked += 1;
                    let mut found = Vec::new();
                    cel::check(std::slice::from_ref(object), &mut found);
                    found
                }
            };
            errors.extend(found.iter().cloned());
            self.current.insert(key, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifests(version: &str, base_url: &str) -> Manifests {
        let text = format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p, resourceVersion: \"{version}\"}}\nspec: {{type: openaiCompatible{base_url}}}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: q, resourceVersion: \"7\"}}\nspec: {{type: fake}}\n"
        );
        let mut m = Manifests::default();
        m.add_yaml("k.yaml", &text).unwrap();
        m
    }

    #[test]
    fn only_objects_with_a_new_version_are_checked_and_errors_stay_reported() {
        let mut cache = RuleCache::default();
        let broken = manifests("1", "");
        let expected = super::super::rule_errors(&broken);
        assert!(
            !expected.is_empty(),
            "an openaiCompatible provider needs a baseUrl"
        );
        assert_eq!(cache.rule_errors(&broken), expected);
        assert_eq!(cache.checked(), 2);
        assert_eq!(cache.rule_errors(&broken), expected);
        assert_eq!(cache.checked(), 0);
        let fixed = manifests("2", ", baseUrl: \"https://api.example.com/v1\"");
        assert_eq!(cache.rule_errors(&fixed), Vec::new());
        assert_eq!(cache.checked(), 1);
    }
}
