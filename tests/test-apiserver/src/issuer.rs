//! The cluster's service-account token issuer, as the API server runs it
//! (`--service-account-issuer`, `--service-account-signing-key-file`): the OIDC discovery
//! document, the JWKS of its public keys, and `TokenRequest` minting audience-bound,
//! short-lived tokens for a ServiceAccount (what a projected `serviceAccountToken` volume
//! holds). Keys are RSA 2048 signing RS256, made when first needed (a test that never asks
//! pays nothing), and can be rotated.

use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::status::ApiError;

/// The issuer a kubeadm or kind cluster uses.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Shortest token `TokenRequest` mints, as the API server enforces.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// A signing key and its public half as a JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

/// The issuer: its URL and keys, newest (the one that signs) last.
pub struct Issuer {
    url: String,
    keys: Mutex<Vec<SigningKey>>,
    /// Whether discovery and the JWKS are answered (else 503, as while the API server's
    /// issuer endpoints fail).
    serving: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("url", &self.url).finish()
    }
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub name: String,
    /// The ServiceAccount's uid.
    pub uid: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
}

impl Issuer {
    /// An issuer at `url` with no key yet.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            keys: Mutex::default(),
            serving: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Makes discovery and the JWKS answer (`true`) or fail with 503 (`false`).
    pub fn set_serving(&self, serving: bool) {
        self.serving
            .store(serving, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether discovery and the JWKS answer.
    pub fn serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The issuer URL (`iss`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `/.well-known/openid-configuration`, as the API server serves it.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/openid/v1/jwks", self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// `/openid/v1/jwks`: every key's public half.
    pub fn jwks(&self) -> Value {
        let keys = self.with_keys(|keys| keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>());
        json!({ "keys": keys })
    }

    /// Adds a new signing key; with `keep_old` false the older ones leave the JWKS (tokens
    /// they signed stop verifying). Returns the new key's id.
    pub fn rotate(&self, keep_old: bool) -> String {
        let key = new_key();
        let kid = key.kid.clone();
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if !keep_old {
            keys.clear();
        }
        keys.push(key);
        kid
    }

    /// A token for `claims`, signed by the newest key, and its `exp`.
    pub fn mint(&self, claims: &TokenClaims) -> (String, i64) {
        let now = unix_now();
        let exp = now + claims.expires_in;
        let body = json!({
            "aud": claims.audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": self.url,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": {
                "namespace": claims.namespace,
                "serviceaccount": {"name": claims.name, "uid": claims.uid},
            },
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
        });
        let token = self.with_keys(|keys| {
            let key = keys.last().expect("with_keys makes a key");
            let mut header = Header::new(Algorithm::RS256);
            header.typ = None;
            header.kid = Some(key.kid.clone());
            encode(&header, &body, &key.encoding).expect("RS256 signing cannot fail")
        });
        (token, exp)
    }

    fn with_keys<T>(&self, f: impl FnOnce(&[SigningKey]) -> T) -> T {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.is_empty() {
            keys.push(new_key());
        }
        f(&keys)
    }
}

/// Answers `POST .../serviceaccounts/{name}/token` for the ServiceAccount object `account`:
/// the `TokenRequest` echoed with `status.token` and `status.expirationTimestamp`.
pub fn token_request(issuer: &Issuer, account: &Value, request: &Value) -> Result<Value, ApiError> {
    let name = account["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &request["spec"];
    let expires_in = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if expires_in < MIN_EXPIRATION_SECONDS {
        return Err(ApiError::invalid(
            "TokenRequest",
            name,
            "spec.expirationSeconds",
            &format!(
                "Invalid value: {expires_in}: may not specify a duration less than 10 minutes"
            ),
        ));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => vec![issuer.url().to_owned()],
    };
    let claims = TokenClaims {
        namespace: account["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned(),
        name: name.to_owned(),
        uid: account["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        audiences: audiences.clone(),
        expires_in,
    };
    let (token, exp) = issuer.mint(&claims);
    let expiration = jiff::Timestamp::from_second(exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": name, "namespace": claims.namespace, "creationTimestamp": null},
        "spec": {"audiences": audiences, "expirationSeconds": expires_in, "boundObjectRef": null},
        "status": {"token": token, "expirationTimestamp": expiration},
    }))
}

fn new_key() -> SigningKey {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .expect("RSA key generation cannot fail with the OS RNG");
    let der = private
        .to_pkcs1_der()
        .expect("a generated RSA key encodes as PKCS#1");
    let n = private.n().to_bytes_be();
    let e = private.e().to_bytes_be();
    // Derived from the public key, as the API server derives its key ids.
    let kid = URL_SAFE_NO_PAD.encode(&n[..16]);
    SigningKey {
        jwk: json!({
            "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e),
        }),
        kid,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
