//! `Snapshot`: a compiled configuration plus what the request path precomputes from it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use llm_gateway_crds::compiled::{
    CompiledConfig, CompiledKey, CompiledProvider, CompiledRoute, CompiledTarget,
};
use llm_gateway_crds::keys;
use subtle::ConstantTimeEq;

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
    /// Whether requests must carry an API key.
    pub require_api_key: bool,
}

/// A provider and the HTTP client that reaches it.
#[derive(Debug)]
pub struct ProviderRuntime {
    /// Compiled settings.
    pub compiled: CompiledProvider,
    /// Pooled client with this provider's connect timeout (shared across reloads).
    pub client: reqwest::Client,
    /// Requests served by the fake provider, to spread its failures deterministically.
    pub fake_sequence: AtomicU64,
}

/// A route with its precomputed weighted-pick schedule.
#[derive(Debug)]
pub struct RouteRuntime {
    /// Compiled settings.
    pub compiled: CompiledRoute,
    total_weight: u64,
    stride: u64,
    sequence: AtomicU64,
}

/// Why a presented key was refused (also the metric label).
pub type KeyRejection = &'static str;

impl Snapshot {
    /// Builds a snapshot; `client_for` returns the pooled client for a provider.
    pub fn new(
        config: CompiledConfig,
        generation: u64,
        client_for: &mut dyn FnMut(&CompiledProvider) -> reqwest::Client,
    ) -> Self {
        let CompiledConfig {
            providers,
            routes,
            keys,
            require_api_key,
        } = config;
        let providers = providers
            .into_iter()
            .map(|compiled| ProviderRuntime {
                client: client_for(&compiled),
                compiled,
                fake_sequence: AtomicU64::new(0),
            })
            .collect();
        let routes = routes
            .into_iter()
            .map(|(model, route)| (model, RouteRuntime::new(route)))
            .collect();
        let mut keys_by_id: HashMap<String, Vec<usize>> = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let short = key.key_id.trim_start_matches("lgw_").to_owned();
            keys_by_id.entry(short).or_default().push(i);
        }
        Self {
            generation,
            loaded_at: SystemTime::now(),
            providers,
            routes,
            keys,
            keys_by_id,
            require_api_key,
        }
    }

    /// Finds the key matching `presented`: format and checksum first (no lookup), then the
    /// key id, then a constant-time comparison of keyed hashes.
    pub fn authenticate(
        &self,
        presented: &str,
        pepper: &[u8],
    ) -> Result<&CompiledKey, KeyRejection> {
        match keys::check_format(presented) {
            Ok(()) => {}
            Err(keys::KeyFormatError::Malformed) => return Err("malformed"),
            Err(keys::KeyFormatError::BadChecksum) => return Err("bad_checksum"),
        }
        let short = &presented[keys::KEY_PREFIX.len()..keys::KEY_PREFIX.len() + 8];
        let candidates = self.keys_by_id.get(short).ok_or("unknown")?;
        let hash = keys::hash_bytes(pepper, presented);
        let key = candidates
            .iter()
            .map(|&i| &self.keys[i])
            .find(|k| bool::from(k.hash.ct_eq(&hash)))
            .ok_or("unknown")?;
        if key.disabled {
            return Err("disabled");
        }
        if key.expires_at.is_some_and(|t| t <= SystemTime::now()) {
            return Err("expired");
        }
        Ok(key)
    }
}

impl RouteRuntime {
    fn new(compiled: CompiledRoute) -> Self {
        let total_weight: u64 = compiled.targets.iter().map(|t| u64::from(t.weight)).sum();
        let stride = interleaving_stride(total_weight);
        Self {
            compiled,
            total_weight,
            stride,
            sequence: AtomicU64::new(0),
        }
    }

    /// Targets in the order to try them: for `weighted`, the next slot of a deterministic
    /// schedule first (each target gets `weight` of every `total` picks, interleaved rather
    /// than in runs), then the rest in list order; otherwise list order.
    pub fn pick_order(&self) -> impl Iterator<Item = &CompiledTarget> {
        let targets = &self.compiled.targets;
        let first = if self.total_weight == 0 {
            0
        } else {
            let n = self.sequence.fetch_add(1, Ordering::Relaxed);
            let slot = (n % self.total_weight) * self.stride % self.total_weight;
            let mut acc = 0;
            targets
                .iter()
                .position(|t| {
                    acc += u64::from(t.weight);
                    slot < acc
                })
                .unwrap_or(0)
        };
        let weighted = matches!(
            self.compiled.strategy,
            llm_gateway_crds::route_policy::Strategy::Weighted
        );
        let first = if weighted { first } else { 0 };
        targets[first..].iter().chain(targets[..first].iter())
    }
}

/// A step coprime with `total` near `total / golden ratio`, so consecutive picks walk the
/// weight line in a scattered but complete cycle.
fn interleaving_stride(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    let mut stride = (total as f64 / 1.618_033_988_75).round() as u64;
    while gcd(stride, total) != 1 {
        stride += 1;
    }
    stride
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_visits_every_slot_once_per_cycle() {
        for total in [1, 2, 3, 10, 100, 97, 1000] {
            let stride = interleaving_stride(total);
            let mut seen: Vec<u64> = (0..total).map(|n| n * stride % total).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..total).collect::<Vec<_>>(), "total {total}");
        }
    }
}
