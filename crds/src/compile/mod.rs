//! The one place configuration is validated: objects in, [`CompiledConfig`] or every error out.
//!
//! Pure: no IO, no clock, no randomness. The caller passes environment lookups and the key
//! pepper in [`CompileInputs`]. A configuration with any error is rejected as a whole, so a
//! gateway keeps serving its previous snapshot rather than a partial one.

mod cel;
mod keys;
mod providers;
mod quotas;
mod routes;
mod rule_cache;

pub use rule_cache::RuleCache;

use std::fmt;

use kube::ResourceExt;

use crate::compiled::{
    CallerPolicy, CompiledAuth, CompiledConfig, CompiledJwt, CompiledServiceAccounts, JwtKey,
    SecretString,
};
use crate::manifest::Manifests;

/// What compilation needs besides the objects.
pub struct CompileInputs<'a> {
    /// Reads an environment variable (standalone-mode provider credentials).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Secret mixed into API-key hashes.
    pub key_pepper: &'a [u8],
    /// Every object was admitted by a Kubernetes API server, which already enforced the CRDs'
    /// CEL rules: evaluating them again is skipped (it dominated compiling large namespaces).
    pub admitted: bool,
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
    let mut errors = if inputs.admitted {
        Vec::new()
    } else {
        rule_errors(manifests)
    };
    let secrets = keys::SecretIndex::new(&manifests.secrets);
    let providers = providers::compile(&manifests.providers, &secrets, inputs, &mut errors);
    let routes = routes::compile(&manifests.route_policies, &providers, &mut errors);
    let quotas = quotas::compile(&manifests.quotas, &manifests.api_keys, &mut errors);
    let keys = keys::compile(&manifests.api_keys, &secrets, &quotas, inputs, &mut errors);
    let mut auth = auth(manifests, &secrets, &mut errors);
    auth.jwt_policy.team_quotas = quotas.by_team;
    if errors.is_empty() {
        Ok(CompiledConfig {
            providers,
            routes,
            keys,
            auth,
            quotas: quotas.quotas,
        })
    } else {
        Err(errors)
    }
}

/// The CRDs' CEL rules over every object of `manifests`: what [`compile`] checks unless the
/// objects were `admitted` (or, for a directory reload, checked when their document was
/// first parsed).
pub fn rule_errors(manifests: &Manifests) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    cel::check(&manifests.providers, &mut errors);
    cel::check(&manifests.route_policies, &mut errors);
    cel::check(&manifests.api_keys, &mut errors);
    cel::check(&manifests.gateways, &mut errors);
    cel::check(&manifests.quotas, &mut errors);
    errors
}

fn auth(
    manifests: &Manifests,
    secrets: &keys::SecretIndex<'_>,
    errors: &mut Vec<ConfigError>,
) -> CompiledAuth {
    let gateway = match manifests.gateways.as_slice() {
        [] => return CompiledAuth::default(),
        [gateway] => gateway,
        [first, rest @ ..] => {
            for extra in rest {
                errors.push(ConfigError {
                    kind: "LlmGateway",
                    object: object_id(extra),
                    field: "metadata.name".to_owned(),
                    message: "a standalone gateway serves exactly one LlmGateway".to_owned(),
                });
            }
            first
        }
    };
    let spec = &gateway.spec.auth;
    let jwt = spec.jwt.as_ref().and_then(|jwt| {
        let key = match (&jwt.jwks_uri, &jwt.hs256_secret_ref) {
            (Some(uri), None) => {
                if !jwt.allow_local_addresses
                    && url::Url::parse(uri).is_ok_and(|u| crate::egress::is_forbidden_url_host(&u))
                {
                    errors.push(jwt_error(
                        gateway,
                        "jwksUri",
                        "points at a loopback, link-local or metadata address, or a private \
                         network; set spec.auth.jwt.allowLocalAddresses to allow it"
                            .to_owned(),
                    ));
                    return None;
                }
                JwtKey::Jwks(uri.clone())
            }
            (None, Some(r)) => match secrets.get(namespace_of(gateway), &r.name, &r.key) {
                Ok(secret) if secret.len() >= 32 => JwtKey::Hs256(SecretString::new(secret)),
                Ok(_) => {
                    errors.push(jwt_error(
                        gateway,
                        "hs256SecretRef",
                        "the HS256 secret must be at least 32 bytes".to_owned(),
                    ));
                    return None;
                }
                Err(message) => {
                    errors.push(jwt_error(gateway, "hs256SecretRef", message));
                    return None;
                }
            },
            _ => {
                errors.push(jwt_error(
                    gateway,
                    "jwksUri",
                    "set exactly one of jwksUri or hs256SecretRef".to_owned(),
                ));
                return None;
            }
        };
        Some(CompiledJwt {
            issuer: jwt.issuer.clone(),
            audiences: jwt.audiences.clone(),
            key,
            team_claim: jwt.team_claim.clone(),
            allow_local_addresses: jwt.allow_local_addresses,
        })
    });
    let jwt_policy = spec.jwt.as_ref().map_or_else(CallerPolicy::default, |jwt| {
        let mut fail = |field: &str, message: String| {
            errors.push(ConfigError {
                kind: "LlmGateway",
                object: object_id(gateway),
                field: field.to_owned(),
                message,
            });
        };
        CallerPolicy {
            models: keys::model_globs(&jwt.models, "spec.auth.jwt.models", &mut fail).flatten(),
            limits: jwt.limits.clone(),
            budget: jwt.budget.clone(),
            team_quotas: Default::default(),
        }
    });
    CompiledAuth {
        api_keys: spec.api_keys,
        jwt,
        jwt_policy,
        service_accounts: service_accounts(gateway, errors),
    }
}

/// ServiceAccount token settings; a JWKS URL pointing at a local address is refused unless
/// allowed, as for JWT.
fn service_accounts(
    gateway: &crate::llm_gateway::LlmGateway,
    errors: &mut Vec<ConfigError>,
) -> Option<CompiledServiceAccounts> {
    let sa = gateway.spec.auth.service_accounts.as_ref()?;
    let uri = sa.jwks_uri.as_deref().and_then(|u| url::Url::parse(u).ok());
    if !sa.allow_local_addresses && uri.is_some_and(|u| crate::egress::is_forbidden_url_host(&u)) {
        errors.push(ConfigError {
            kind: "LlmGateway",
            object: object_id(gateway),
            field: "spec.auth.serviceAccounts.jwksUri".to_owned(),
            message: "points at a loopback, link-local or metadata address, or a private \
                      network; set allowLocalAddresses to allow it"
                .to_owned(),
        });
        return None;
    }
    Some(CompiledServiceAccounts {
        audiences: sa.audiences.clone(),
        issuer: sa.issuer.clone(),
        jwks_uri: sa.jwks_uri.clone(),
        allow_local_addresses: sa.allow_local_addresses,
        max_token_lifetime: sa.max_token_lifetime.get(),
    })
}

fn jwt_error(
    gateway: &crate::llm_gateway::LlmGateway,
    field: &str,
    message: String,
) -> ConfigError {
    ConfigError {
        kind: "LlmGateway",
        object: object_id(gateway),
        field: format!("spec.auth.jwt.{field}"),
        message,
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
