//! ApiKey → CompiledKey, and the Secret lookups shared with providers.

use std::collections::{BTreeMap, HashMap};

use globset::{Glob, GlobSetBuilder};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::{CompileInputs, ConfigError, namespace_of, object_id};
use crate::api_key::{ApiKey, SECRET_KEY_FIELD};
use crate::compiled::CompiledKey;
use crate::keys;

const KIND: &str = "ApiKey";

/// Secrets by namespace and name, reading both `data` and `stringData`.
#[derive(Debug)]
pub(super) struct SecretIndex<'a> {
    by_name: HashMap<(&'a str, String), &'a Secret>,
}

impl<'a> SecretIndex<'a> {
    pub(super) fn new(secrets: &'a [Secret]) -> Self {
        let by_name = secrets
            .iter()
            .map(|s| ((namespace_of(s), s.name_any()), s))
            .collect();
        Self { by_name }
    }

    /// The value of `key` in Secret `name`, or a message saying what is missing.
    pub(super) fn get(&self, namespace: &str, name: &str, key: &str) -> Result<String, String> {
        let secret = self
            .by_name
            .get(&(namespace, name.to_owned()))
            .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
        if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Ok(value.clone());
        }
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))?;
        String::from_utf8(bytes.0.clone())
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|_| format!("Secret {namespace}/{name} key {key:?} is not UTF-8"))
    }
}

/// Compiles every ApiKey; a key whose Secret is missing or malformed is an error.
pub(super) fn compile(
    api_keys: &[ApiKey],
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<CompiledKey> {
    let mut out = Vec::with_capacity(api_keys.len());
    let mut owners_of_hash: BTreeMap<[u8; 32], String> = BTreeMap::new();
    for api_key in api_keys {
        let id = object_id(api_key);
        let mut fail = |field: &str, message: String| {
            errors.push(ConfigError {
                kind: KIND,
                object: id.clone(),
                field: field.to_owned(),
                message,
            });
        };
        let Some(compiled) = compile_one(api_key, secrets, inputs, &mut fail) else {
            continue;
        };
        if let Some(other) = owners_of_hash.insert(compiled.hash, id.clone()) {
            fail(
                "spec.secretName",
                format!("holds the same key as ApiKey {other}"),
            );
            continue;
        }
        out.push(compiled);
    }
    out
}

fn compile_one(
    api_key: &ApiKey,
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<CompiledKey> {
    let spec = &api_key.spec;
    let (key_id, hash) = key_material(api_key, secrets, inputs, fail)?;
    let models = if spec.models.is_empty() {
        None
    } else {
        let mut builder = GlobSetBuilder::new();
        for (i, pattern) in spec.models.iter().enumerate() {
            match Glob::new(pattern) {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(e) => fail(&format!("spec.models[{i}]"), format!("invalid glob: {e}")),
            }
        }
        Some(builder.build().ok()?)
    };
    let expires_at = match &spec.expires_at {
        None => None,
        Some(text) => {
            match humantime::parse_rfc3339_weak(text).or_else(|_| humantime::parse_rfc3339(text)) {
                Ok(t) => Some(t),
                Err(e) => {
                    fail(
                        "spec.expiresAt",
                        format!("{text:?} is not an RFC 3339 time: {e}"),
                    );
                    return None;
                }
            }
        }
    };
    Some(CompiledKey {
        key_id,
        hash,
        name: object_id(api_key),
        owner: spec.owner.clone(),
        models,
        expires_at,
        disabled: spec.disabled,
        limits: spec.limits.clone(),
        budget: spec.budget.clone(),
    })
}

/// The key id and hash: from the Secret's plaintext when present (standalone mode), else from
/// the status the operator wrote.
fn key_material(
    api_key: &ApiKey,
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<(String, [u8; 32])> {
    let ns = namespace_of(api_key);
    match secrets.get(ns, &api_key.spec.secret_name, SECRET_KEY_FIELD) {
        Ok(plaintext) => {
            if let Err(e) = keys::check_format(&plaintext) {
                fail(
                    "spec.secretName",
                    format!(
                        "Secret {ns}/{} holds an invalid key: {e}",
                        api_key.spec.secret_name
                    ),
                );
                return None;
            }
            Some((
                keys::key_id(&plaintext),
                keys::hash_bytes(inputs.key_pepper, &plaintext),
            ))
        }
        Err(missing) => {
            let status = api_key.status.as_ref();
            let stored = status.and_then(|s| s.key_hash.as_deref().zip(s.key_id.as_deref()));
            match stored.and_then(|(hash, id)| Some((id.to_owned(), keys::parse_hash(hash)?))) {
                Some(material) => Some(material),
                None => {
                    fail("spec.secretName", missing);
                    None
                }
            }
        }
    }
}
