//! Callers beyond a single key: rotation with a grace period, token subjects with their own
//! models and limits, and logs that never show a key, a token, a credential or a prompt.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::manifests::{fake_provider, join, routes, upstream_provider};
use common::{Gateway, hs256, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn config_routes(upstream: &str) -> String {
    join(&[
        fake_provider("fake"),
        upstream_provider(
            "upstream",
            upstream,
            "sk-upstream-credential-never-logged",
            "",
        ),
        routes(&[
            ("fake", "fake", "fake"),
            ("other", "fake", "fake"),
            ("up", "upstream", "upstream-model"),
        ]),
    ])
}

fn rotated_key(current: &str, previous: &str, grace_until: u64) -> String {
    format!(
        r#"apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: caller}}
spec: {{secretName: caller-key, owner: team-a}}
---
apiVersion: v1
kind: Secret
metadata: {{name: caller-key}}
stringData:
  apiKey: {current}
  previousApiKey: {previous}
  previousApiKeyExpiresAt: "{}"
"#,
        rfc3339(grace_until)
    )
}

async fn call(gateway: &Gateway, credential: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(credential)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn usage(gateway: &Gateway, credential: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/usage", gateway.url))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn both_keys_work_during_the_grace_period_and_share_one_account() {
    let (old, new) = (new_key(), new_key());
    let text = format!(
        "{}---\n{}",
        config_routes("http://127.0.0.1:9"),
        rotated_key(&new, &old, now() + 3600)
    );
    let gateway = Gateway::start(&text, new.clone(), &[]).await;
    for key in [&old, &new] {
        let response = call(&gateway, key, "fake").await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (by_old, by_new) = (usage(&gateway, &old).await, usage(&gateway, &new).await);
    assert_eq!(by_new["requests"], 2, "one account for both keys");
    assert_eq!(by_old["requests"], by_new["requests"]);
    assert_ne!(by_old["key_id"], by_new["key_id"]);

    gateway.write_config("gateway.yaml", &{
        let ended = rotated_key(&new, &old, now() - 1);
        format!("{}---\n{ended}", config_routes("http://127.0.0.1:9"))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while call(&gateway, &old, "fake").await.status() != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "old key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(&gateway, &new, "fake").await.status(), 200);
}

#[tokio::test]
async fn token_subjects_get_the_gateway_s_models_and_limits() {
    let key = new_key();
    let gateway_manifest = r#"
apiVersion: llmgateway.io/v1alpha1
kind: LlmGateway
metadata: {name: gateway}
spec:
  auth:
    jwt:
      issuer: https://issuer.test
      audiences: [llm-gateway]
      hs256SecretRef: {name: jwt, key: secret}
      models: [fake]
      limits: {requestsPerMinute: 2}
---
apiVersion: v1
kind: Secret
metadata: {name: jwt}
stringData: {secret: a-test-secret-that-is-long-enough-for-hs256}
"#;
    let text = format!(
        "{}---{gateway_manifest}",
        config_routes("http://127.0.0.1:9")
    );
    let gateway = Gateway::start(&text, key, &[]).await;
    let token = |subject: &str| {
        let claims = json!({"sub": subject, "iss": "https://issuer.test", "aud": "llm-gateway", "exp": now() + 300});
        hs256(&claims, SECRET.as_bytes())
    };
    let alice = token("alice");
    assert_eq!(call(&gateway, &alice, "other").await.status(), 403);
    assert_eq!(call(&gateway, &alice, "fake").await.status(), 200);
    assert_eq!(call(&gateway, &alice, "fake").await.status(), 200);
    let third = call(&gateway, &alice, "fake").await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(
        call(&gateway, &token("bob"), "fake").await.status(),
        200,
        "limits are per subject"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = usage(&gateway, &alice).await;
    assert_eq!(report["key_id"], "jwt:alice");
    assert_eq!(report["requests"], 2);
}

#[tokio::test]
async fn logs_never_show_keys_tokens_credentials_or_prompts() {
    let upstream = MockUpstream::start().await;
    let key = new_key();
    let text = format!(
        "{}---\n{}",
        config_routes(&upstream.base_url),
        rotated_key(&key, &new_key(), now() + 60)
    );
    let env = [
        ("LOG_LEVEL", "debug"),
        ("JWT_SECRET_KEY", SECRET),
        ("JWT_ISSUER", "https://issuer.test"),
        ("JWT_AUDIENCES", "llm-gateway"),
    ];
    let gateway = Gateway::start(&text, key.clone(), &env).await;
    let token = hs256(
        &json!({"sub": "carol", "iss": "https://issuer.test", "aud": "llm-gateway", "exp": now() + 300}),
        SECRET.as_bytes(),
    );
    let prompt = "a-confidential-prompt-text";
    let wrong_key = new_key();
    for credential in [key.as_str(), token.as_str(), wrong_key.as_str(), "garbage"] {
        for stream in [false, true] {
            let body = json!({"model": "up", "stream": stream,
                "messages": [{"role": "user", "content": prompt}]});
            reqwest::Client::new()
                .post(format!("{}/v1/chat/completions", gateway.url))
                .bearer_auth(credential)
                .json(&body)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }
    }
    let log = gateway.log_text();
    assert!(
        log.contains(&llm_gateway_crds::keys::key_id(&key)),
        "key ids are logged"
    );
    for secret in [
        key.as_str(),
        &key[7..],
        token.as_str(),
        wrong_key.as_str(),
        SECRET,
        "sk-upstream-credential-never-logged",
        prompt,
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}
