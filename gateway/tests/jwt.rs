//! JSON Web Token authentication through the running binary: the attacks a security review
//! tries (forged, expired, wrong algorithm, wrong audience…), all refused with one identical
//! body; HS256 from settings and RS256 from a JWKS URL.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Gateway, hs256, new_key};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "llm-gateway";

fn config(key: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: fake}}\nspec: {{type: fake}}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {{name: r}}\nspec:\n  routes:\n  - model: m\n    targets: [{{provider: fake}}]\n---\napiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k}}\nspec: {{secretName: k, owner: key-owner}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: k}}\nstringData: {{apiKey: {key}}}\n"
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({"sub": "user-1", "team": "search", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 300, "nbf": now() - 5})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

async fn call(gateway: &Gateway, credential: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(credential)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn hs256_tokens_from_settings_and_every_b6_attack_refused_identically() {
    let key = new_key();
    let env = [
        ("JWT_SECRET_KEY", SECRET),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCES", "other,llm-gateway"),
        ("JWT_TEAM_CLAIM", "team"),
        ("LOG_FORMAT", "json"),
    ];
    let gateway = Gateway::start(&config(&key), key.clone(), &env).await;
    let good = hs256(&claims(), SECRET.as_bytes());
    assert_eq!(call(&gateway, &good).await.0, 200);
    assert_eq!(
        call(&gateway, &key).await.0,
        200,
        "API keys keep working beside tokens"
    );
    let within_leeway = hs256(&with(claims(), "exp", json!(now() - 10)), SECRET.as_bytes());
    assert_eq!(call(&gateway, &within_leeway).await.0, 200, "30 s leeway");

    let encode_part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let parts: Vec<&str> = good.split('.').collect();
    let attacks = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                encode_part(json!({"alg": "none", "typ": "JWT"})),
                parts[1]
            ),
        ),
        (
            "wrong secret",
            hs256(&claims(), b"another-secret-another-secret-another"),
        ),
        (
            "expired",
            hs256(
                &with(claims(), "exp", json!(now() - 120)),
                SECRET.as_bytes(),
            ),
        ),
        (
            "not yet valid",
            hs256(
                &with(claims(), "nbf", json!(now() + 120)),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong audience",
            hs256(
                &with(claims(), "aud", json!("someone-else")),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong issuer",
            hs256(
                &with(claims(), "iss", json!("https://evil.test")),
                SECRET.as_bytes(),
            ),
        ),
        (
            "no exp",
            hs256(&with(claims(), "exp", Value::Null), SECRET.as_bytes()),
        ),
        (
            "no iss",
            hs256(&with(claims(), "iss", Value::Null), SECRET.as_bytes()),
        ),
        (
            "no aud",
            hs256(&with(claims(), "aud", Value::Null), SECRET.as_bytes()),
        ),
        ("stripped signature", format!("{}.{}.", parts[0], parts[1])),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                encode_part(with(claims(), "sub", json!("admin"))),
                parts[2]
            ),
        ),
        (
            "64 KiB token",
            format!("{}.{}.{}", parts[0], "A".repeat(64 * 1024), parts[2]),
        ),
        ("garbage", "not-a-token".to_owned()),
        ("bad key checksum", with_bad_checksum(&key)),
    ];
    let mut bodies = std::collections::BTreeSet::new();
    for (name, token) in attacks {
        let (status, body) = call(&gateway, &token).await;
        assert_eq!(status, 401, "{name}");
        bodies.insert(body);
    }
    assert_eq!(
        bodies.len(),
        1,
        "refusals must be indistinguishable: {bodies:?}"
    );
    let log = gateway.log_text();
    assert!(
        log.contains(r#""owner":"search""#),
        "team claim is the owner: {log}"
    );
    assert!(
        log.contains(r#""key_id":"jwt:user-1""#),
        "subject is the caller id: {log}"
    );
    assert!(!log.contains(&good) && !log.contains(SECRET));
}

/// A fresh RSA key: (private PEM, public PEM, JWK modulus in base64url).
fn rsa_key() -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is needed for RS256 tests");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    let public = run(&["pkey", "-in", private.to_str().unwrap(), "-pubout"]);
    let modulus_hex = run(&[
        "rsa",
        "-in",
        private.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]);
    let hex = modulus_hex.trim().trim_start_matches("Modulus=");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    (
        std::fs::read_to_string(&private).unwrap(),
        public,
        URL_SAFE_NO_PAD.encode(bytes),
    )
}

/// A JWKS endpoint serving RSA key `k1` (its `modulus`) and a gateway accepting its tokens.
async fn gateway_with_jwks(modulus: &str) -> (MockUpstream, Gateway) {
    let jwks_server = MockUpstream::start().await;
    jwks_server.set_jwks(json!({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": modulus, "e": "AQAB"}]}));
    let jwks_url = jwks_server.base_url.replace("/v1", "/jwks.json");
    let key = new_key();
    let gateway_yaml = format!(
        "{}---\napiVersion: llmgateway.io/v1alpha1\nkind: LlmGateway\nmetadata: {{name: gw}}\nspec:\n  auth: {{apiKeys: true, jwt: {{issuer: \"{ISSUER}\", audiences: [{AUDIENCE}], jwksUri: \"{jwks_url}\", allowLocalAddresses: true}}}}\n",
        config(&key)
    );
    let gateway = Gateway::start(&gateway_yaml, key, &[]).await;
    (jwks_server, gateway)
}

#[tokio::test]
async fn rs256_from_jwks_with_algorithm_pinned_and_kid_only_selecting_loaded_keys() {
    llm_gateway::jwt::install_crypto_provider();
    let (private, public, modulus) = rsa_key();
    let (_jwks_server, gateway) = gateway_with_jwks(&modulus).await;
    let signing = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".to_owned());
    let good = encode(&header, &claims(), &signing).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while call(&gateway, &good).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "JWKS never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("k1".to_owned());
    let hmac_with_public_key = encode(
        &confused,
        &claims(),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    let mut traversal = header.clone();
    traversal.kid = Some("../../dev/null".to_owned());
    let (attacker_private, _, attacker_modulus) = rsa_key();
    let mut injected = header.clone();
    injected.kid = Some("attacker".to_owned());
    injected.jku = Some("http://127.0.0.1:9/attacker-jwks.json".to_owned());
    let _ = attacker_modulus;
    let attacker_signing = EncodingKey::from_rsa_pem(attacker_private.as_bytes()).unwrap();
    let attacks = [
        ("RS256 key used as an HMAC secret", hmac_with_public_key),
        (
            "kid path traversal",
            encode(&traversal, &claims(), &signing).unwrap(),
        ),
        (
            "jku injection",
            encode(&injected, &claims(), &attacker_signing).unwrap(),
        ),
        (
            "known kid, foreign key",
            encode(&header, &claims(), &attacker_signing).unwrap(),
        ),
    ];
    for (name, token) in attacks {
        assert_eq!(call(&gateway, &token).await.0, 401, "{name}");
    }
}

/// The key with its last checksum character changed (to one it certainly is not).
fn with_bad_checksum(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    format!("{head}{}", if last == "x" { "y" } else { "x" })
}

/// A configuration reload kept the JWT settings but made a new JWKS cache, empty until it
/// fetched: with the identity provider's JWKS endpoint down at that moment, every token caller
/// was refused until it came back. The keys now outlive reloads that keep the JWKS source.
#[tokio::test]
async fn a_reload_keeps_the_loaded_jwks_keys_while_the_jwks_endpoint_is_down() {
    llm_gateway::jwt::install_crypto_provider();
    let (private, _, modulus) = rsa_key();
    let (jwks_server, gateway) = gateway_with_jwks(&modulus).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".to_owned());
    let signing = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let good = encode(&header, &claims(), &signing).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while call(&gateway, &good).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "JWKS never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    jwks_server.set_jwks(json!("the identity provider is down"));
    let fetches = jwks_server.jwks_fetches();
    let generation = common::metric(&gateway.admin_url, "llm_config_generation").await;
    gateway.write_config(
        "more.yaml",
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: another}\nspec: {type: fake}\n",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while common::metric(&gateway.admin_url, "llm_config_generation").await == generation {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        call(&gateway, &good).await.0,
        200,
        "the token after the reload"
    );
    assert_eq!(
        jwks_server.jwks_fetches(),
        fetches,
        "a reload keeping the JWKS source fetches nothing"
    );
}
