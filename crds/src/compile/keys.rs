//! ApiKey → CompiledKey, and the Secret lookups shared with providers.

use std::collections::{BTreeMap, HashMap};

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::SystemTime;

use globset::{Glob, GlobSet, GlobSetBuilder};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::{CompileInputs, ConfigError, namespace_of, object_id};
use crate::api_key::{
    ApiKey, SECRET_KEY_FIELD, SECRET_PREVIOUS_EXPIRES_FIELD, SECRET_PREVIOUS_KEY_FIELD,
};
use crate::compiled::{CompiledKey, KeyCredential};
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
    quotas: &super::quotas::QuotaPlan,
    inputs: &CompileInputs<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<CompiledKey> {
    let mut out = Vec::with_capacity(api_keys.len());
    let mut owners: BTreeMap<KeyCredential, String> = BTreeMap::new();
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
        let Some(compiled) = compile_one(api_key, secrets, quotas, inputs, &mut fail) else {
            continue;
        };
        for key in compiled {
            if let Some(other) = owners.insert(key.credential.clone(), id.clone()) {
                match key.credential {
                    KeyCredential::Hash(_) => fail(
                        "spec.secretName",
                        format!("holds the same key as ApiKey {other}"),
                    ),
                    KeyCredential::ServiceAccount(_) => fail(
                        "spec.serviceAccountRef",
                        format!("names the same ServiceAccount as ApiKey {other}"),
                    ),
                }
                continue;
            }
            out.push(key);
        }
    }
    out
}

fn compile_one(
    api_key: &ApiKey,
    secrets: &SecretIndex<'_>,
    quotas: &super::quotas::QuotaPlan,
    inputs: &CompileInputs<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<Vec<CompiledKey>> {
    let spec = &api_key.spec;
    if spec.secret_name.is_some() && spec.service_account_ref.is_some() {
        fail(
            "spec",
            "set exactly one of secretName or serviceAccountRef".to_owned(),
        );
        return None;
    }
    let (key_id, credential) = match &spec.service_account_ref {
        Some(account) => {
            let subject = account.subject(namespace_of(api_key));
            let id = subject.replacen("system:serviceaccount:", "sa:", 1);
            (id, KeyCredential::ServiceAccount(subject))
        }
        None => {
            let (key_id, hash) = key_material(api_key, secrets, inputs, fail)?;
            (key_id, KeyCredential::Hash(hash))
        }
    };
    let models = model_globs(&spec.models, "spec.models", fail)?;
    let expires_at = match &spec.expires_at {
        None => None,
        Some(text) => Some(parse_time(text, "spec.expiresAt", fail)?),
    };
    let name = object_id(api_key);
    let current = CompiledKey {
        key_id,
        credential,
        quotas: quotas.for_key(&name),
        over_quota: quotas.refusal(&name),
        name,
        owner: spec.owner.clone(),
        models,
        expires_at,
        disabled: spec.disabled,
        rotated_out: false,
        limits: spec.limits.clone(),
        budget: spec.budget.clone(),
    };
    let previous =
        previous_key(api_key, secrets, inputs, fail).map(|(key_id, hash, until)| CompiledKey {
            key_id,
            credential: KeyCredential::Hash(hash),
            expires_at: Some(expires_at.map_or(until, |e| e.min(until))),
            rotated_out: true,
            models: current.models.clone(),
            name: current.name.clone(),
            owner: current.owner.clone(),
            limits: current.limits.clone(),
            budget: current.budget.clone(),
            disabled: current.disabled,
            quotas: current.quotas.clone(),
            over_quota: current.over_quota.clone(),
        });
    Some(std::iter::once(current).chain(previous).collect())
}

/// Route-model globs; `None` (allow all) when the list is empty or holds `*`.
///
/// Compiled glob sets are shared: thousands of keys usually repeat a handful of lists, and
/// building one set per key (a regex DFA each) was most of a 10,000-key reload's time and
/// about 20 KB of memory per key in the benchmark.
pub(super) fn model_globs(
    patterns: &[String],
    field: &str,
    fail: &mut dyn FnMut(&str, String),
) -> Option<Option<Arc<GlobSet>>> {
    if patterns.is_empty() || patterns.iter().any(|p| p == "*") {
        return Some(None);
    }
    let mut cache = GLOB_SETS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(set) = cache.get(patterns) {
        return Some(Some(set.clone()));
    }
    let mut builder = GlobSetBuilder::new();
    let mut valid = true;
    for (i, pattern) in patterns.iter().enumerate() {
        match Glob::new(pattern) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(e) => {
                valid = false;
                fail(&format!("{field}[{i}]"), format!("invalid glob: {e}"));
            }
        }
    }
    let set = Arc::new(builder.build().ok()?);
    if valid {
        if cache.len() >= GLOB_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(patterns.to_vec(), set.clone());
    }
    Some(Some(set))
}

/// Distinct model lists kept compiled; beyond this the cache starts over.
const GLOB_CACHE_LIMIT: usize = 4096;

static GLOB_SETS: LazyLock<Mutex<HashMap<Vec<String>, Arc<GlobSet>>>> =
    LazyLock::new(Mutex::default);

/// Parses an RFC 3339 time. The error does not quote the text: it may come from a Secret
/// (`previousApiKeyExpiresAt`), and compile errors are logged and served on `/health/detailed`.
fn parse_time(text: &str, field: &str, fail: &mut dyn FnMut(&str, String)) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339(text))
        .map_err(|e| {
            fail(
                field,
                format!("not an RFC 3339 time such as 2030-01-31T00:00:00Z ({e})"),
            );
        })
        .ok()
}

/// The key being rotated out and the end of its grace period: from the Secret's plaintext
/// (standalone mode), else from the status the operator wrote. Absent when there is none.
fn previous_key(
    api_key: &ApiKey,
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<(String, [u8; 32], SystemTime)> {
    let ns = namespace_of(api_key);
    let name = api_key.spec.secret_name.as_deref()?;
    if let Ok(plaintext) = secrets.get(ns, name, SECRET_PREVIOUS_KEY_FIELD) {
        let field = "spec.secretName";
        if let Err(e) = keys::check_format(&plaintext) {
            fail(
                field,
                format!("Secret {ns}/{name} holds an invalid previous key: {e}"),
            );
            return None;
        }
        let Ok(until) = secrets.get(ns, name, SECRET_PREVIOUS_EXPIRES_FIELD) else {
            fail(
                field,
                format!(
                    "Secret {ns}/{name} has {SECRET_PREVIOUS_KEY_FIELD} without {SECRET_PREVIOUS_EXPIRES_FIELD}"
                ),
            );
            return None;
        };
        let mut in_secret = |field: &str, message: String| {
            fail(
                field,
                format!("Secret {ns}/{name} {SECRET_PREVIOUS_EXPIRES_FIELD}: {message}"),
            );
        };
        let until = parse_time(&until, field, &mut in_secret)?;
        return Some((
            keys::key_id(&plaintext),
            keys::hash_bytes(inputs.key_pepper, &plaintext),
            until,
        ));
    }
    let status = api_key.status.as_ref()?;
    let hash = keys::parse_hash(status.previous_key_hash.as_deref()?)?;
    let until = parse_time(
        status.previous_key_expires_at.as_deref()?,
        "status.previousKeyExpiresAt",
        fail,
    )?;
    Some((status.previous_key_id.clone()?, hash, until))
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
    let Some(name) = api_key.spec.secret_name.as_deref() else {
        fail(
            "spec.secretName",
            "set exactly one of secretName or serviceAccountRef".to_owned(),
        );
        return None;
    };
    match secrets.get(ns, name, SECRET_KEY_FIELD) {
        Ok(plaintext) => {
            if let Err(e) = keys::check_format(&plaintext) {
                fail(
                    "spec.secretName",
                    format!("Secret {ns}/{name} holds an invalid key: {e}"),
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
