//! ServiceAccount callers: an in-cluster workload sends its projected ServiceAccount token as
//! `Authorization: Bearer`; the gateway verifies it offline against the cluster's
//! service-account issuer and maps its subject (`system:serviceaccount:<ns>:<name>`) to the
//! ApiKey that names the ServiceAccount.
//!
//! - The issuer and its public keys come from the API server, read with the gateway's own
//!   credentials (`/.well-known/openid-configuration`, `/openid/v1/jwks`; the operator binds
//!   `system:service-account-issuer-discovery` to the gateway's ServiceAccount), or from
//!   `spec.auth.serviceAccounts.jwksUri` for a gateway that cannot reach the API server.
//! - A background task fetches them every 5 minutes and, at most every 5 s, when a token
//!   names a key not loaded yet (the issuer rotated); verification reads no disk and no
//!   network. While the source is unreachable the keys already loaded keep verifying, so
//!   tokens keep working until they expire.
//! - The rules of [`crate::jwt`]: RS256 or ES256 pinned per key, `iss`, `aud`, `exp` and `sub`
//!   required, `nbf` checked, 30 s leeway, tokens over 8 KiB refused.
//! - The keys outlive configuration reloads ([`IssuerRegistry`]), so no reload leaves a
//!   moment without them.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Validation, decode, decode_header};
use llm_gateway_crds::compiled::CompiledServiceAccounts;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::jwt::{
    KeyMap, MAX_TOKEN_BYTES, acceptable_type, fetch_jwks, key_map, next_fetch, select,
};

const REFRESH: Duration = Duration::from_secs(300);
/// The API server serves its own keys: asking again soon after an unknown `kid` costs little.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
const LEEWAY_SECONDS: u64 = 30;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// Verifies ServiceAccount tokens for one configuration.
pub struct ServiceAccountVerifier {
    audiences: Vec<String>,
    max_lifetime: u64,
    keys: Arc<IssuerKeys>,
}

impl std::fmt::Debug for ServiceAccountVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountVerifier")
            .field("audiences", &self.audiences)
            .field("issuer", &self.keys.issuer())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    aud: Audiences,
}

/// `aud`: one string or a list (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
}

impl Audiences {
    fn all_in(&self, accepted: &[String]) -> bool {
        match self {
            Self::One(aud) => accepted.contains(aud),
            Self::Many(list) => list.iter().all(|aud| accepted.contains(aud)),
        }
    }
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

impl ServiceAccountVerifier {
    /// The issuer (`iss`) tokens must carry, once known.
    pub fn issuer(&self) -> Option<Arc<String>> {
        self.keys.issuer()
    }

    /// Number of verification keys loaded (for health reports).
    pub fn key_count(&self) -> usize {
        self.keys.keys.load().len()
    }

    /// Whether `token` says it comes from this issuer, read without verifying: only to choose
    /// between this verifier and the JWT one.
    pub fn claims_to_be_from(&self, token: &str) -> bool {
        let Some(issuer) = self.issuer() else {
            return false;
        };
        if token.len() > MAX_TOKEN_BYTES {
            return false;
        }
        let payload = token.split('.').nth(1).unwrap_or_default();
        URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<IssuerOnly>(&bytes).ok())
            .and_then(|claims| claims.iss)
            .is_some_and(|iss| iss == *issuer)
    }

    /// Verifies `token`; returns its subject (`system:serviceaccount:<ns>:<name>`). The error
    /// is a bounded reason label, never shown to the client.
    pub fn verify(&self, token: &str) -> Result<String, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("sa_too_large");
        }
        let header = decode_header(token).map_err(|_| "sa_malformed")?;
        if !acceptable_type(header.typ.as_deref()) {
            return Err("sa_type");
        }
        let Some(issuer) = self.issuer() else {
            // Discovery failed so far (the API server was unreachable): try again soon.
            self.keys.refresh.notify_one();
            return Err("sa_no_issuer");
        };
        let keys = self.keys.keys.load();
        let Some((key, algorithm)) = select(&keys, header.kid.as_deref()) else {
            self.keys.refresh.notify_one();
            return Err("sa_unknown_key");
        };
        if header.alg != *algorithm {
            return Err("sa_algorithm");
        }
        let mut validation = Validation::new(*algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&self.audiences);
        let claims = decode::<Claims>(token, key, &validation)
            .map_err(|_| "sa_invalid")?
            .claims;
        // A token also valid elsewhere (the API server among its audiences) is refused: the
        // gateway, or whoever reads its traffic, could replay it there.
        if !claims.aud.all_in(&self.audiences) {
            return Err("sa_audience");
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime {
            return Err("sa_lifetime");
        }
        if !claims.sub.starts_with(SUBJECT_PREFIX) {
            return Err("sa_subject");
        }
        Ok(claims.sub)
    }
}

/// The issuer and keys of one source, refreshed in the background.
struct IssuerKeys {
    source: Source,
    /// Whether the issuer is configured (else each discovery may change it: a cluster can
    /// migrate to a new `--service-account-issuer`).
    configured: bool,
    /// The configured issuer, else the one the discovery document names.
    issuer: ArcSwapOption<String>,
    keys: ArcSwap<KeyMap>,
    refresh: Arc<Notify>,
}

enum Source {
    /// The API server: the gateway's Kubernetes client, or the in-cluster configuration.
    ApiServer(Option<kube::Client>),
    /// A JWKS URL (the issuer is then configured).
    Url {
        jwks_uri: String,
        allow_local: bool,
        client: reqwest::Client,
    },
}

impl IssuerKeys {
    fn issuer(&self) -> Option<Arc<String>> {
        self.issuer.load_full()
    }

    async fn fetch(&self) -> Result<usize, String> {
        let (issuer, set) = match &self.source {
            Source::ApiServer(client) => {
                let client = match client {
                    Some(client) => client.clone(),
                    None => kube::Client::try_default()
                        .await
                        .map_err(|e| format!("no Kubernetes client configuration: {e}"))?,
                };
                // The client retries a 503 with backoff on its own; a fetch still ends.
                tokio::time::timeout(FETCH_TIMEOUT, from_api_server(&client))
                    .await
                    .map_err(|_| "the API server did not answer within 10 s".to_owned())??
            }
            Source::Url {
                jwks_uri,
                allow_local,
                client,
            } => (None, fetch_jwks(client, jwks_uri, *allow_local).await?),
        };
        if !self.configured && issuer.is_some() {
            self.issuer.store(issuer.map(Arc::new));
        }
        let keys = key_map(&set);
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        Ok(count)
    }

    fn describe(&self) -> &str {
        match &self.source {
            Source::ApiServer(_) => "the Kubernetes API server",
            Source::Url { jwks_uri, .. } => jwks_uri,
        }
    }
}

/// The discovery document's issuer and the JWKS, from the API server.
async fn from_api_server(client: &kube::Client) -> Result<(Option<String>, JwkSet), String> {
    let get = |path: &'static str| async move {
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        client
            .request_text(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    };
    let discovery: serde_json::Value =
        serde_json::from_str(&get("/.well-known/openid-configuration").await?)
            .map_err(|e| format!("the OIDC discovery document is not JSON: {e}"))?;
    let issuer = discovery["issuer"].as_str().map(str::to_owned);
    let set = serde_json::from_str(&get("/openid/v1/jwks").await?)
        .map_err(|e| format!("the JWKS is not a JWK set: {e}"))?;
    Ok((issuer, set))
}

/// Fetches now and then; holds the keys only while fetching, so the task ends once no
/// configuration uses them.
async fn refresh_loop(keys: Weak<IssuerKeys>, refresh: Arc<Notify>) {
    let mut failures = 0;
    loop {
        let fetched = tokio::time::Instant::now();
        {
            let Some(keys) = keys.upgrade() else {
                return;
            };
            match keys.fetch().await {
                Ok(count) => {
                    failures = 0;
                    tracing::info!(
                        source = keys.describe(),
                        keys = count,
                        "ServiceAccount token keys loaded"
                    );
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(source = keys.describe(), %error, "ServiceAccount token keys could not be fetched; keeping the previous ones");
                }
            }
        }
        next_fetch(&refresh, fetched, retry_after(failures), MIN_INTERVAL).await;
    }
}

/// When to fetch again: [`REFRESH`] after a success; after failures, 5 s doubling up to it,
/// so a gateway that started while the API server was away does not wait 5 minutes.
fn retry_after(failures: u32) -> Duration {
    if failures == 0 {
        return REFRESH;
    }
    MIN_INTERVAL
        .saturating_mul(1 << (failures.min(7) - 1))
        .min(REFRESH)
}

/// The key sources of the configurations served so far, kept across reloads: a reload with
/// the same settings reuses the loaded keys.
#[derive(Default)]
pub struct IssuerRegistry {
    kube: OnceLock<kube::Client>,
    current: Mutex<Option<(CompiledServiceAccounts, Arc<IssuerKeys>)>>,
}

impl std::fmt::Debug for IssuerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerRegistry").finish_non_exhaustive()
    }
}

impl IssuerRegistry {
    /// The client the API server source reads with (Kubernetes mode); without one, the
    /// in-cluster configuration is tried.
    pub fn use_client(&self, client: kube::Client) {
        let _ = self.kube.set(client);
    }

    /// The verifier for `settings`, reusing the keys of the previous configuration when its
    /// source is the same.
    pub fn verifier(&self, settings: &CompiledServiceAccounts) -> ServiceAccountVerifier {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let same_source = |old: &CompiledServiceAccounts| {
            (&old.issuer, &old.jwks_uri, old.allow_local_addresses)
                == (
                    &settings.issuer,
                    &settings.jwks_uri,
                    settings.allow_local_addresses,
                )
        };
        let keys = match current.as_ref() {
            Some((old, keys)) if same_source(old) => keys.clone(),
            _ => self.start(settings),
        };
        *current = Some((settings.clone(), keys.clone()));
        ServiceAccountVerifier {
            audiences: settings.audiences.clone(),
            max_lifetime: settings.max_token_lifetime.as_secs(),
            keys,
        }
    }

    /// Drops the kept keys (ServiceAccount callers turned off): their refresh task ends.
    pub fn forget(&self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn start(&self, settings: &CompiledServiceAccounts) -> Arc<IssuerKeys> {
        crate::jwt::install_crypto_provider();
        let source = match &settings.jwks_uri {
            Some(uri) => Source::Url {
                jwks_uri: uri.clone(),
                allow_local: settings.allow_local_addresses,
                client: crate::egress::jwks_client(settings.allow_local_addresses),
            },
            None => Source::ApiServer(self.kube.get().cloned()),
        };
        let keys = Arc::new(IssuerKeys {
            source,
            configured: settings.issuer.is_some(),
            issuer: ArcSwapOption::new(settings.issuer.clone().map(Arc::new)),
            keys: ArcSwap::default(),
            refresh: Arc::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(refresh_loop(Arc::downgrade(&keys), keys.refresh.clone()));
        }
        keys
    }
}
