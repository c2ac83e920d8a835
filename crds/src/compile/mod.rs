//! The one place configuration is validated: objects in, [`CompiledConfig`] or every error out.
//!
//! Pure: no IO, no clock, no randomness. The caller passes environment lookups and the key
//! pepper in [`CompileInputs`]. A configuration with any error is rejected as a whole, so a
//! gateway keeps serving its previous snapshot rather than a partial one.

mod cel;
mod keys;
mod providers;
mod routes;

use std::fmt;

use kube::ResourceExt;

use crate::compiled::CompiledConfig;
use crate::manifest::Manifests;

/// What compilation needs besides the objects.
pub struct CompileInputs<'a> {
    /// Reads an environment variable (standalone-mode provider credentials).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Secret mixed into API-key hashes.
    pub key_pepper: &'a [u8],
}

impl fmt::Debug for CompileInputs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompileInputs").finish_non_exhaustive()
    }
}

/// A validation failure naming the object and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {message}")]
pub struct ConfigError {
    /// Kind of the offending object.
    pub kind: &'static str,
    /// `namespace/name` of the offending object.
    pub object: String,
    /// JSON path of the offending field, e.g. `spec.routes[0].targets[1].provider`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Compiles the objects into a configuration, or returns every error found.
pub fn compile(
    manifests: &Manifests,
    inputs: &CompileInputs<'_>,
) -> Result<CompiledConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    cel::check(&manifests.providers, &mut errors);
    cel::check(&manifests.route_policies, &mut errors);
    cel::check(&manifests.api_keys, &mut errors);
    cel::check(&manifests.gateways, &mut errors);
    let secrets = keys::SecretIndex::new(&manifests.secrets);
    let providers = providers::compile(&manifests.providers, &secrets, inputs, &mut errors);
    let routes = routes::compile(&manifests.route_policies, &providers, &mut errors);
    let keys = keys::compile(&manifests.api_keys, &secrets, inputs, &mut errors);
    let require_api_key = gateway_requires_keys(manifests, &mut errors);
    if errors.is_empty() {
        Ok(CompiledConfig {
            providers,
            routes,
            keys,
            require_api_key,
        })
    } else {
        Err(errors)
    }
}

fn gateway_requires_keys(manifests: &Manifests, errors: &mut Vec<ConfigError>) -> bool {
    match manifests.gateways.as_slice() {
        [] => true,
        // JWT verification is not built yet: a gateway configured for JWT stays closed (keys only)
        // rather than open.
        [gateway] => gateway.spec.auth.api_keys || gateway.spec.auth.jwt.is_some(),
        [_, rest @ ..] => {
            for extra in rest {
                errors.push(ConfigError {
                    kind: "LlmGateway",
                    object: object_id(extra),
                    field: "metadata.name".to_owned(),
                    message: "a standalone gateway serves exactly one LlmGateway".to_owned(),
                });
            }
            true
        }
    }
}

/// `namespace/name` of an object; objects without a namespace are in `default`.
pub(crate) fn object_id<K: kube::Resource>(object: &K) -> String {
    format!("{}/{}", namespace_of(object), object.name_any())
}

/// The object's namespace, `default` when unset (standalone manifests often omit it).
pub(crate) fn namespace_of<K: kube::Resource>(object: &K) -> &str {
    object.meta().namespace.as_deref().unwrap_or("default")
}

#[cfg(test)]
mod tests;
