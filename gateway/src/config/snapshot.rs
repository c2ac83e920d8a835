//! `Snapshot`: a compiled configuration plus what the request path precomputes from it.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use crate::jwt::JwtVerifier;
use crate::limits::reservation::CallerLabel;
use crate::service_accounts::ServiceAccountVerifier;
use llm_gateway_crds::compiled::{
    CompiledAuth, CompiledConfig, CompiledKey, CompiledProvider, KeyCredential,
};
use llm_gateway_crds::keys;
use subtle::ConstantTimeEq;

pub use super::route::RouteRuntime;
pub use crate::providers::ProviderRuntime;
use crate::targets::TargetRegistry;
use crate::upstream_http::Transport;

/// One immutable configuration generation.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every successful reload; reported on every response.
    pub generation: u64,
    /// When this snapshot was built.
    pub loaded_at: SystemTime,
    /// Upstreams, indexed like [`CompiledTarget::provider`].
    pub providers: Vec<ProviderRuntime>,
    /// Routes by client-facing model name.
    pub routes: HashMap<String, RouteRuntime>,
    /// Accepted keys.
    pub keys: Vec<CompiledKey>,
    /// Key indexes by the 8 random characters of their key id.
    keys_by_id: HashMap<String, Vec<usize>>,
    /// Indexes of the ApiKeys naming a ServiceAccount, by token subject.
    keys_by_subject: HashMap<String, usize>,
    /// Each key's metric and record labels, indexed like `keys`.
    labels: Vec<Arc<CallerLabel>>,
    /// Accepted credentials.
    pub auth: CompiledAuth,
    /// The JWT verifier, when tokens are accepted (set by the loader, which keeps JWKS keys
    /// across reloads).
    pub jwt: Option<JwtVerifier>,
    /// The ServiceAccount token verifier, when those are accepted (set by the loader, which
    /// keeps its keys across reloads).
    pub service_accounts: Option<ServiceAccountVerifier>,
}

/// Why a presented key was refused (also the metric label).
pub type KeyRejection = &'static str;

/// A key [`Snapshot::authenticate`] accepted, with the labels its requests carry.
#[derive(Clone, Copy, Debug)]
pub struct KnownKey<'s> {
    /// The key's compiled policy.
    pub key: &'s CompiledKey,
    /// Who its requests are charged to, made once per snapshot.
    pub label: &'s Arc<CallerLabel>,
}

impl Deref for KnownKey<'_> {
    type Target = CompiledKey;

    fn deref(&self) -> &CompiledKey {
        self.key
    }
}

impl Snapshot {
    /// Builds a snapshot; `transport_for` returns the upstream transport of a provider.
    pub fn new(
        config: CompiledConfig,
        generation: u64,
        targets: &TargetRegistry,
        transport_for: &mut dyn FnMut(&CompiledProvider) -> Transport,
    ) -> Self {
        let CompiledConfig {
            providers,
            routes,
            keys,
            auth,
            quotas: _,
        } = config;
        let providers = providers
            .into_iter()
            .map(|compiled| {
                let transport = transport_for(&compiled);
                let bulkhead = targets.provider(&compiled.id);
                ProviderRuntime::new(compiled, transport, bulkhead)
            })
            .collect::<Vec<_>>();
        let routes = routes
            .into_iter()
            .map(|(model, route)| {
                let states = route
                    .targets
                    .iter()
                    .map(|t| {
                        let p = &providers[t.provider].compiled;
                        targets.target(&p.id, &p.name, &t.upstream_model, &t.circuit_breaker)
                    })
                    .collect();
                (model, RouteRuntime::new(route, states))
            })
            .collect();
        let mut keys_by_id: HashMap<String, Vec<usize>> = HashMap::with_capacity(keys.len());
        let mut keys_by_subject = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            match &key.credential {
                KeyCredential::Hash(_) => {
                    let short = key.key_id.trim_start_matches("lgw_").to_owned();
                    keys_by_id.entry(short).or_default().push(i);
                }
                KeyCredential::ServiceAccount(subject) => {
                    keys_by_subject.insert(subject.clone(), i);
                }
            }
        }
        let labels = keys
            .iter()
            .map(|key| Arc::new(CallerLabel::of_key(key)))
            .collect();
        Self {
            generation,
            loaded_at: SystemTime::now(),
            providers,
            routes,
            keys,
            keys_by_id,
            keys_by_subject,
            labels,
            jwt: None,
            service_accounts: None,
            auth,
        }
    }

    /// Finds the key matching `presented`: format and checksum first (no lookup), then the
    /// key id, then a constant-time comparison of keyed hashes.
    pub fn authenticate(
        &self,
        presented: &str,
        pepper: &[u8],
    ) -> Result<KnownKey<'_>, KeyRejection> {
        match keys::check_format(presented) {
            Ok(()) => {}
            Err(keys::KeyFormatError::Malformed) => return Err("malformed"),
            Err(keys::KeyFormatError::BadChecksum) => return Err("bad_checksum"),
        }
        let short = &presented[keys::KEY_PREFIX.len()..keys::KEY_PREFIX.len() + 8];
        let candidates = self.keys_by_id.get(short).ok_or("unknown")?;
        let hash = keys::hash_bytes(pepper, presented);
        let index = *candidates
            .iter()
            .find(|&&i| {
                matches!(&self.keys[i].credential, KeyCredential::Hash(h) if bool::from(h.ct_eq(&hash)))
            })
            .ok_or("unknown")?;
        self.usable(index)
    }

    /// The ApiKey naming the ServiceAccount of a verified token's `subject`.
    pub fn service_account(&self, subject: &str) -> Result<KnownKey<'_>, KeyRejection> {
        let index = *self.keys_by_subject.get(subject).ok_or("sa_no_api_key")?;
        self.usable(index)
    }

    /// The key at `index`, unless disabled or expired.
    fn usable(&self, index: usize) -> Result<KnownKey<'_>, KeyRejection> {
        let key = &self.keys[index];
        if key.disabled {
            return Err("disabled");
        }
        if key.expires_at.is_some_and(|t| t <= SystemTime::now()) {
            return Err("expired");
        }
        Ok(KnownKey {
            key,
            label: &self.labels[index],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use llm_gateway_crds::compile::{CompileInputs, compile};
    use llm_gateway_crds::manifest::Manifests;

    const PEPPER: &[u8] = b"pepper";

    fn snapshot_with_keys(keys: &[(&str, &str)]) -> Snapshot {
        let mut yaml = String::new();
        for (i, (key, extra)) in keys.iter().enumerate() {
            yaml.push_str(&format!(
                "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k{i}}}\nspec: {{secretName: s{i}, owner: o{extra}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}}}\nstringData: {{apiKey: {key}}}\n---\n"
            ));
        }
        snapshot_from(&yaml)
    }

    fn snapshot_from(yaml: &str) -> Snapshot {
        let mut manifests = Manifests::default();
        manifests.add_yaml("test.yaml", yaml).unwrap();
        let config = compile(
            &manifests,
            &CompileInputs {
                env: &|_| None,
                key_pepper: PEPPER,
                admitted: false,
            },
        )
        .unwrap();
        Snapshot::new(
            config,
            1,
            &TargetRegistry::new(Default::default()),
            &mut |_| {
                let settings = crate::upstream_http::TransportSettings::default();
                Transport::new(std::time::Duration::from_secs(1), false, settings)
            },
        )
    }

    #[test]
    fn weighted_picks_follow_weights_interleaved_and_fail_over_in_order() {
        let mut yaml = String::new();
        for name in ["a", "b", "c"] {
            yaml.push_str(&format!("apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}}}\nspec: {{type: fake}}\n---\n"));
        }
        yaml.push_str("apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: r}\nspec:\n  routes:\n  - model: m\n    targets: [{provider: a, weight: 3}, {provider: b, weight: 1}, {provider: c, weight: 0}]\n");
        let snapshot = snapshot_from(&yaml);
        let route = &snapshot.routes["m"];
        let firsts: Vec<usize> = (0..8)
            .map(|_| route.compiled.targets[route.pick_order(None)[0]].provider)
            .collect();
        let count = |p: usize| firsts.iter().filter(|&&f| f == p).count();
        assert_eq!((count(0), count(1), count(2)), (6, 2, 0), "{firsts:?}");
        assert!(
            firsts[..4].contains(&1),
            "weight-1 target must appear within each cycle: {firsts:?}"
        );
        let order: Vec<usize> = route.pick_order(None);
        assert_eq!(order.len(), 3, "every target stays available for failover");
    }

    #[test]
    fn authenticate_checks_format_hash_disabled_and_expiry() {
        let (good, disabled, expired, unknown) = (
            keys::generate().unwrap(),
            keys::generate().unwrap(),
            keys::generate().unwrap(),
            keys::generate().unwrap(),
        );
        let snapshot = snapshot_with_keys(&[
            (&good, ""),
            (&disabled, ", disabled: true"),
            (&expired, ", expiresAt: '2020-01-01T00:00:00Z'"),
        ]);
        assert_eq!(
            snapshot.authenticate(&good, PEPPER).unwrap().name,
            "default/k0"
        );
        assert_eq!(
            snapshot.authenticate(&disabled, PEPPER).unwrap_err(),
            "disabled"
        );
        assert_eq!(
            snapshot.authenticate(&expired, PEPPER).unwrap_err(),
            "expired"
        );
        assert_eq!(
            snapshot.authenticate(&unknown, PEPPER).unwrap_err(),
            "unknown"
        );
        assert_eq!(
            snapshot.authenticate(&good, b"other pepper").unwrap_err(),
            "unknown"
        );
        assert_eq!(
            snapshot.authenticate("sk-lgw-short", PEPPER).unwrap_err(),
            "malformed"
        );
        let mut tampered = good.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            snapshot.authenticate(&tampered, PEPPER).unwrap_err(),
            "bad_checksum"
        );
    }
}
