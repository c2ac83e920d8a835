//! JSON Web Token verification (RFC 8725 rules).
//!
//! - Each key pins its algorithm: the shared secret verifies HS256 only, JWKS keys RS256 (RSA)
//!   or ES256 (P-256) only, so `none` and RSA/HMAC confusion are impossible.
//! - `exp`, `iss` and `aud` are required, `nbf` is checked, leeway is 30 s, and a token over
//!   8 KiB is refused before parsing.
//! - `kid` only selects among keys already loaded: the header's `jku`, `jwk` and `x5u` are never
//!   used. Verification reads no disk and no network; JWKS keys are fetched by a background
//!   task (every 5 minutes, and soon after an unknown `kid` shows up, at most every 30 s).
//! - `typ`, when present, must say JWT or access-token JWT (RFC 8725 §3.11): a token minted
//!   for another purpose by the same issuer (a logout token, a signed request) is refused.
//! - The JWKS fetch is held to the egress guard (`crate::egress`) unless the settings allow
//!   local addresses, and never follows a redirect.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use llm_gateway_crds::compiled::{CompiledJwt, JwtKey};
use serde_json::{Map, Value};
use tokio::sync::Notify;

/// Largest token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
const LEEWAY_SECONDS: u64 = 30;
const JWKS_REFRESH: Duration = Duration::from_secs(300);
const JWKS_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Who a verified token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim.
    pub subject: String,
    /// The team claim, or the subject.
    pub team: String,
}

/// Verifies tokens for one configuration.
pub struct JwtVerifier {
    issuer: String,
    audiences: Vec<String>,
    team_claim: Option<String>,
    keys: Keys,
}

enum Keys {
    Hs256(DecodingKey),
    Jwks(Arc<JwksCache>),
}

/// Keys of a JWKS endpoint by `kid`, each with its pinned algorithm.
pub struct JwksCache {
    url: String,
    /// Whether the URL may point at loopback, private or metadata addresses.
    allow_local: bool,
    client: reqwest::Client,
    keys: ArcSwap<KeyMap>,
    refresh: Arc<Notify>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier; a JWKS source starts its refresh task on the current runtime.
    pub fn new(config: &CompiledJwt) -> Self {
        install_crypto_provider();
        let keys = match &config.key {
            JwtKey::Hs256(secret) => {
                Keys::Hs256(DecodingKey::from_secret(secret.expose().as_bytes()))
            }
            JwtKey::Jwks(url) => {
                Keys::Jwks(JwksCache::start(url.clone(), config.allow_local_addresses))
            }
        };
        Self::with_keys(config, keys)
    }

    /// A verifier for `config` reading `keys` (a JWKS cache kept across reloads, say).
    fn with_keys(config: &CompiledJwt, keys: Keys) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            team_claim: config.team_claim.clone(),
            keys,
        }
    }

    /// Number of verification keys loaded (for health reports).
    pub fn key_count(&self) -> usize {
        match &self.keys {
            Keys::Hs256(_) => 1,
            Keys::Jwks(cache) => cache.keys.load().len(),
        }
    }

    /// Verifies `token`; the error is a bounded reason label (never shown to the client).
    pub fn verify(&self, token: &str) -> Result<Identity, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("jwt_too_large");
        }
        let header = decode_header(token).map_err(|_| "jwt_malformed")?;
        if !acceptable_type(header.typ.as_deref()) {
            return Err("jwt_type");
        }
        let jwks_keys;
        let (key, algorithm) = match &self.keys {
            Keys::Hs256(key) => (key, Algorithm::HS256),
            Keys::Jwks(cache) => {
                jwks_keys = cache.keys.load();
                let Some((key, algorithm)) = select(&jwks_keys, header.kid.as_deref()) else {
                    cache.refresh.notify_one();
                    return Err("jwt_unknown_key");
                };
                (key, *algorithm)
            }
        };
        if header.alg != algorithm {
            return Err("jwt_algorithm");
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&self.audiences);
        let data =
            decode::<Map<String, Value>>(token, key, &validation).map_err(|_| "jwt_invalid")?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or("jwt_no_subject")?
            .to_owned();
        let team = self
            .team_claim
            .as_deref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str)
            .map_or_else(|| subject.clone(), str::to_owned);
        Ok(Identity { subject, team })
    }
}

/// Whether a `typ` header names a JWT: absent, `JWT` or `at+jwt` (RFC 9068), in any case and
/// with or without the `application/` prefix a media type may drop (RFC 7515 §4.1.9).
pub(crate) fn acceptable_type(typ: Option<&str>) -> bool {
    let Some(typ) = typ else {
        return true;
    };
    let lower = typ.to_ascii_lowercase();
    let bare = lower.strip_prefix("application/").unwrap_or(&lower);
    matches!(bare, "jwt" | "at+jwt")
}

/// The JWKS cache of the configuration served last: a reload with the same JWKS source
/// reuses its keys. A new cache is empty until its first fetch, so every token was refused
/// after each reload until then, and for as long as the endpoint stayed down.
#[derive(Default)]
pub struct JwksRegistry {
    current: std::sync::Mutex<Option<(JwksSource, Arc<JwksCache>)>>,
}

/// A JWKS URL and whether it may be local.
type JwksSource = (String, bool);

impl std::fmt::Debug for JwksRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksRegistry").finish_non_exhaustive()
    }
}

impl JwksRegistry {
    /// Drops the kept keys (no JWKS configured any more): their refresh task ends.
    pub fn forget(&self) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The verifier for `config`, reusing the previous configuration's keys when its JWKS
    /// source is the same.
    pub fn verifier(&self, config: &CompiledJwt) -> JwtVerifier {
        let JwtKey::Jwks(url) = &config.key else {
            self.forget();
            return JwtVerifier::new(config);
        };
        let source = (url.clone(), config.allow_local_addresses);
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cache = match current.as_ref() {
            Some((kept, cache)) if *kept == source => cache.clone(),
            _ => {
                install_crypto_provider();
                JwksCache::start(url.clone(), config.allow_local_addresses)
            }
        };
        *current = Some((source, cache.clone()));
        JwtVerifier::with_keys(config, Keys::Jwks(cache))
    }
}

impl JwksCache {
    fn start(url: String, allow_local: bool) -> Arc<Self> {
        let refresh = Arc::new(Notify::new());
        let cache = Arc::new(Self {
            url,
            allow_local,
            client: crate::egress::jwks_client(allow_local),
            keys: ArcSwap::default(),
            refresh: refresh.clone(),
        });
        let weak = Arc::downgrade(&cache);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(refresh_loop(weak, refresh));
        }
        cache
    }

    async fn fetch(&self) -> Result<usize, String> {
        let set = fetch_jwks(&self.client, &self.url, self.allow_local).await?;
        let keys = key_map(&set);
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        Ok(count)
    }
}

/// The JWK set at `url`, held to the egress guard unless `allow_local`; a redirect is an error.
pub(crate) async fn fetch_jwks(
    client: &reqwest::Client,
    url: &str,
    allow_local: bool,
) -> Result<JwkSet, String> {
    // The resolver never sees an address literal: refuse a local one here.
    if !allow_local && let Some(refusal) = crate::egress::literal_refusal(url, "jwksUri") {
        return Err(refusal);
    }
    let response = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| crate::egress::refusal(&e).unwrap_or_else(|| e.to_string()))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(format!(
            "the JWKS endpoint answered {status}; redirects are not followed"
        ));
    }
    if !status.is_success() {
        return Err(format!("the JWKS endpoint answered {status}"));
    }
    response.json_set().await
}

/// Verification keys by `kid`, each with the one algorithm it may verify.
pub(crate) type KeyMap = HashMap<String, (DecodingKey, Algorithm)>;

/// The usable keys of a JWKS: RSA keys pin RS256, P-256 keys ES256; others are skipped.
pub(crate) fn key_map(set: &JwkSet) -> KeyMap {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) else {
            continue;
        };
        keys.insert(kid, (key, algorithm));
    }
    keys
}

/// The key a token's `kid` selects (the only key when there is one and no `kid`).
pub(crate) fn select<'k>(
    keys: &'k KeyMap,
    kid: Option<&str>,
) -> Option<&'k (DecodingKey, Algorithm)> {
    match kid {
        Some(kid) => keys.get(kid),
        None if keys.len() == 1 => keys.values().next(),
        None => None,
    }
}

trait JsonSet {
    async fn json_set(self) -> Result<JwkSet, String>;
}

impl JsonSet for reqwest::Response {
    async fn json_set(self) -> Result<JwkSet, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

/// Fetches the JWKS now and then; holds the cache only while fetching, so the task ends once
/// the configuration that made the cache is gone.
async fn refresh_loop(cache: Weak<JwksCache>, refresh: Arc<Notify>) {
    loop {
        let fetched = tokio::time::Instant::now();
        {
            let Some(strong) = cache.upgrade() else {
                return;
            };
            match strong.fetch().await {
                Ok(count) => tracing::info!(url = %strong.url, keys = count, "JWKS loaded"),
                Err(error) => {
                    tracing::warn!(url = %strong.url, %error, "JWKS fetch failed; keeping the previous keys")
                }
            }
        }
        next_fetch(&refresh, fetched, JWKS_REFRESH, JWKS_MIN_INTERVAL).await;
    }
}

/// Waits until the next fetch is due: `every` after the last one (at `fetched`), or when a
/// token names an unknown key, but never sooner than `min_interval` after the last one.
pub(crate) async fn next_fetch(
    refresh: &Notify,
    fetched: tokio::time::Instant,
    every: Duration,
    min_interval: Duration,
) {
    tokio::select! {
        () = tokio::time::sleep_until(fetched + every) => {}
        () = refresh.notified() => tokio::time::sleep_until(fetched + min_interval.min(every)).await,
    }
}

/// Selects the pure-Rust crypto backend for `jsonwebtoken` (idempotent).
pub fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header, encode};
    use llm_gateway_crds::compiled::SecretString;

    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&CompiledJwt {
            issuer: "https://issuer.test".to_owned(),
            audiences: vec!["gateway".to_owned()],
            key: JwtKey::Hs256(SecretString::new(SECRET)),
            team_claim: None,
            allow_local_addresses: false,
        })
    }

    fn token(typ: Option<&str>) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "sub": "user", "iss": "https://issuer.test", "aud": "gateway", "exp": now + 300
        });
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        encode(
            &header,
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn typ_must_be_absent_jwt_or_access_token_jwt_in_any_case() {
        let verifier = verifier();
        for typ in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("at+jwt"),
            Some("AT+JWT"),
            Some("application/at+jwt"),
        ] {
            assert!(verifier.verify(&token(typ)).is_ok(), "{typ:?}");
        }
        for typ in ["logout+jwt", "secevent+jwt", "dpop+jwt", "JWS", "JOSE", ""] {
            assert_eq!(verifier.verify(&token(Some(typ))), Err("jwt_type"), "{typ}");
        }
    }
}
