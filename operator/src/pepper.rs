//! The API-key pepper: `API_KEY_PEPPER` when set, else one entry of a Secret in the operator's
//! namespace that the first replica to start creates (random, 256 bits) and that nothing ever
//! rotates.
//!
//! The operator creates it, not the chart: a chart keeps a random value stable only through
//! `lookup`, which is empty under `helm template` (how Argo CD renders), so every sync would
//! make a new pepper and every issued key would stop working.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use llm_gateway_crds::api_key::ApiKey;

use crate::context::Scope;

/// Where the pepper is kept.
#[derive(Clone, Debug)]
pub struct PepperSecret {
    /// The operator's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The entry holding the pepper.
    pub key: String,
}

/// Why no pepper could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    /// The API server refused or could not be reached.
    #[error("reading or creating Secret {0}: {1}")]
    Kube(String, kube::Error),
    /// The Secret exists without the entry: it is someone else's, and is never overwritten.
    #[error("Secret {0} exists but has no entry {1:?}; add it or name another Secret")]
    MissingEntry(String, String),
    /// The entry is empty.
    #[error("Secret {0} entry {1:?} is empty")]
    Empty(String, String),
    /// The system's randomness source failed.
    #[error("cannot generate a pepper: {0}")]
    Randomness(getrandom::Error),
    /// The Secret is gone while keys hashed with its pepper exist: a new pepper would reject
    /// every one of them (and roll every gateway onto it), so the operator stops instead.
    #[error(
        "Secret {0} is missing, but {1} ApiKey(s) have hashes made with the pepper it held: \
         restore it from a backup (or set API_KEY_PEPPER); the operator creates a pepper only \
         before any key is issued"
    )]
    Lost(String, usize),
}

/// Annotation on the created Secret saying what depends on it.
const KEEP_NOTE: (&str, &str) = (
    "llmgateway.io/note",
    "every API key hash depends on this pepper: never delete or change it",
);

/// The pepper in `secret`, creating the Secret when it does not exist yet. Two replicas
/// starting together both end up with the one that was created first.
/// Keys issued with a pepper (an ApiKey with `status.keyHash`) are looked for in `scopes`.
pub async fn load_or_create(
    client: &kube::Client,
    secret: &PepperSecret,
    scopes: &[Scope],
) -> Result<Vec<u8>, PepperError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
    let name = format!("{}/{}", secret.namespace, secret.name);
    let kube_error = |e| PepperError::Kube(name.clone(), e);
    if let Some(existing) = api.get_opt(&secret.name).await.map_err(kube_error)? {
        return entry(&existing, secret, &name);
    }
    let issued = issued_keys(client, scopes).await.map_err(kube_error)?;
    if issued > 0 {
        return Err(PepperError::Lost(name, issued));
    }
    let created = api
        .create(&PostParams::default(), &new_secret(secret)?)
        .await;
    match created {
        Ok(created) => {
            tracing::info!(secret = %name, "created the API-key pepper");
            entry(&created, secret, &name)
        }
        // Another replica created it first: use that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&secret.name).await.map_err(kube_error)?;
            entry(&existing, secret, &name)
        }
        Err(e) => Err(kube_error(e)),
    }
}

/// How many ApiKeys in `scopes` already carry a key hash.
async fn issued_keys(client: &kube::Client, scopes: &[Scope]) -> Result<usize, kube::Error> {
    let mut issued = 0;
    for scope in scopes {
        let keys: Api<ApiKey> = scope.api(client);
        let list = keys.list(&ListParams::default()).await?;
        issued += list
            .items
            .iter()
            .filter(|k| k.status.as_ref().is_some_and(|s| s.key_hash.is_some()))
            .count();
    }
    Ok(issued)
}

fn entry(found: &Secret, secret: &PepperSecret, name: &str) -> Result<Vec<u8>, PepperError> {
    let value = found
        .data
        .as_ref()
        .and_then(|data| data.get(&secret.key))
        .map(|bytes| bytes.0.clone())
        .ok_or_else(|| PepperError::MissingEntry(name.to_owned(), secret.key.clone()))?;
    if value.is_empty() {
        return Err(PepperError::Empty(name.to_owned(), secret.key.clone()));
    }
    Ok(value)
}

fn new_secret(secret: &PepperSecret) -> Result<Secret, PepperError> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(PepperError::Randomness)?;
    let pepper = hex::encode(random).into_bytes();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret.name.clone()),
            namespace: Some(secret.namespace.clone()),
            labels: Some(
                [crate::MANAGED_BY]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
            ),
            annotations: Some(
                [KEEP_NOTE]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some([(secret.key.clone(), k8s_openapi::ByteString(pepper))].into()),
        ..Secret::default()
    })
}

/// A fingerprint of the pepper for the gateways' pod template, so a changed pepper rolls the
/// pods (they read it once, from their environment). Salted and truncated: it identifies a
/// version of the pepper without being a hash anyone could test guesses against cheaply.
pub fn fingerprint(pepper: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"llm-gateway pepper fingerprint\0")
        .chain_update(pepper)
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_pepper_and_does_not_show_it() {
        let one = fingerprint(b"pepper-one");
        assert_eq!(one, fingerprint(b"pepper-one"));
        assert_ne!(one, fingerprint(b"pepper-two"));
        assert_eq!(one.len(), 16);
        assert!(!one.contains("pepper"));
    }
}
