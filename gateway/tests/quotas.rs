//! LlmQuota through the running binary: limits and a budget shared by several keys (and a
//! token team) across three gateway processes on one `redis-server`, and the caps that hold
//! back a key granting more than its namespace may.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::manifests::{fake_provider, join, routes, upstream_provider};
use common::redis_server::RedisServer;
use common::{Gateway, hs256, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

const PRICED: &str =
    "  models: [{name: upstream-model, inputPerMillionUsd: 1.0, outputPerMillionUsd: 2.0}]";

/// The ApiKey `name` (label `team: a`, created at `created`, `spec` appended) and its Secret.
fn key(name: &str, key: &str, created: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: {name}, labels: {{team: a}}, creationTimestamp: "{created}"}}
spec: {{secretName: {name}-key, owner: {name}{spec}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-key}}
stringData: {{apiKey: {key}}}
"#
    )
}

fn quota(spec: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmQuota\nmetadata: {{name: shared}}\nspec: {spec}\n"
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10})
}

async fn post(url: &str, credential: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(credential)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn three_gateways(text: &str, redis: &RedisServer, extra: &[(&str, &str)]) -> [Gateway; 3] {
    let url = redis.url();
    let mut env = vec![("REDIS_URL", url.as_str()), ("REDIS_TIMEOUT", "2s")];
    env.extend_from_slice(extra);
    [
        Gateway::start(text, String::new(), &env).await,
        Gateway::start(text, String::new(), &env).await,
        Gateway::start(text, String::new(), &env).await,
    ]
}

/// The quota's usage hash of the period starting on `first_day`.
fn quota_usage_key(first_day: jiff::civil::Date) -> String {
    format!("lgw:{{quota:default/shared}}:usage:{first_day}")
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_shared_by_two_keys_on_three_gateways_admits_exactly_its_limit() {
    let redis = RedisServer::start().await;
    let (alice, bob) = (new_key(), new_key());
    let own = ", limits: {requestsPerMinute: 1000}";
    let text = join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        key("alice", &alice, "2026-11-01T00:00:00Z", own),
        key("bob", &bob, "2026-11-02T00:00:00Z", own),
        quota(
            "{callers: {apiKeySelector: {matchLabels: {team: a}}}, limits: {requestsPerMinute: 50}}",
        ),
    ]);
    let gateways = three_gateways(&text, &redis, &[]).await;
    let limit = Arc::new(tokio::sync::Semaphore::new(100));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let credential = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        let (url, limit) = (gateways[i % 3].url.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            post(&url, &credential, &chat("fake")).await
        }));
    }
    let (mut admitted, mut refused) = (0u64, 0u64);
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => admitted += 1,
            (429, body) => {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("LlmQuota default/shared"), "{message}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // GCRA: the full bucket admits the whole limit at once, then one more every 1.2 s.
    let allowed = 50 + (started.elapsed().as_secs_f64() / 1.2).floor() as u64;
    eprintln!("admitted {admitted}, refused {refused}, allowed {allowed}");
    assert_eq!(admitted + refused, 400);
    assert!(
        (50..=allowed).contains(&admitted),
        "over-admission: {admitted} admitted, {allowed} allowed"
    );
    // Both keys were held to the one shared bucket: each key's own limit is far away.
    let usage = quota_usage_key(today().first_of_month());
    let requests = wait_for_requests(&redis, &usage, admitted).await;
    assert_eq!(
        requests, admitted,
        "the quota counts every admitted request once"
    );
}

/// Waits until the usage hash `key` counts `expected` requests (settlements land after the
/// responses); returns what it counts.
async fn wait_for_requests(redis: &RedisServer, key: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counted = redis.hash_field(key, "requests").await as u64;
        if counted >= expected || Instant::now() > deadline {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_budget_is_never_overspent_and_refunds_settle_back_to_it() {
    let redis = RedisServer::start().await;
    let upstream = MockUpstream::start().await;
    let (alice, bob) = (new_key(), new_key());
    let text = join(&[
        upstream_provider("upstream", &upstream.base_url, "sk-upstream-secret", PRICED),
        routes(&[("up", "upstream", "upstream-model")]),
        key("alice", &alice, "2026-11-01T00:00:00Z", ""),
        key("bob", &bob, "2026-11-02T00:00:00Z", ""),
        // The mock bills 9,000 nano-dollars a request; each reserves 22,000 (see usage.rs).
        quota("{callers: {owners: [alice, bob]}, budget: {usd: 0.0002, period: daily}}"),
    ]);
    let gateways = three_gateways(&text, &redis, &[]).await;
    // A concurrent burst from both keys on every gateway: reservations keep the spend under
    // the cap however the requests interleave.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let credential = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        let url = gateways[i % 3].url.clone();
        tasks.push(tokio::spawn(async move {
            post(&url, &credential, &chat("up")).await
        }));
    }
    let mut admitted = 0u64;
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => admitted += 1,
            (429, body) => assert_eq!(body["error"]["code"], "insufficient_quota"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let usage = quota_usage_key(today());
    assert_eq!(wait_for_requests(&redis, &usage, admitted).await, admitted);
    let spend = redis.hash_field(&usage, "spend_nanos").await;
    assert_eq!(
        spend,
        admitted as i64 * 9_000,
        "billed what the mock reported"
    );
    assert!(spend <= 200_000, "the shared budget was overspent: {spend}");
    // Every reservation was settled back: nothing stays held.
    assert_eq!(redis.hash_field(&usage, "reserved_nanos").await, 0);
    // One request at a time, it is exact: admitted while spend + 22,000 <= 200,000.
    let mut more = 0;
    let refusal = loop {
        let credential = if more % 2 == 0 { &alice } else { &bob };
        let (status, body) = post(&gateways[more % 3].url, credential, &chat("up")).await;
        if status != 200 {
            break body;
        }
        more += 1;
        wait_for_requests(&redis, &usage, admitted + more as u64).await;
        assert!(more < 30, "the budget never ran out");
    };
    let total = admitted + more as u64;
    assert_eq!(total, (200_000 - 22_000) / 9_000 + 1, "admitted {total}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("shared budget of the LlmQuota default/shared"),
        "{message}"
    );
    // Each caller sees the quota it shares, counted for everyone, at /v1/usage.
    let report: Value = reqwest::Client::new()
        .get(format!("{}/v1/usage", gateways[0].url))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shared = &report["quotas"][0];
    assert_eq!(shared["name"], "default/shared");
    assert_eq!(shared["requests"], total);
    assert_eq!(shared["budget"]["usd"], 0.0002);
    assert!((shared["spend_usd"].as_f64().unwrap() - total as f64 * 9e-6).abs() < 1e-12);
    // Each key still has its own account too, and the two add up to the quota's.
    let mut per_key = 0;
    for name in ["alice", "bob"] {
        let monthly = format!(
            "lgw:{{key:default/{name}}}:usage:{}",
            today().first_of_month()
        );
        per_key += redis.hash_field(&monthly, "requests").await;
    }
    assert_eq!(per_key as u64, total);
}

#[tokio::test]
async fn a_token_team_shares_a_quota_with_keys() {
    let redis = RedisServer::start().await;
    let alice = new_key();
    let secret = "a-test-secret-that-is-long-enough-for-hs256";
    let text = join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        key("alice", &alice, "2026-11-01T00:00:00Z", ""),
        // Listed twice, the team still counts each request once.
        quota(
            "{callers: {owners: [alice], jwtTeams: [search, search]}, limits: {requestsPerMinute: 4}}",
        ),
    ]);
    let env = [
        ("REDIS_URL", redis.url()),
        ("JWT_SECRET_KEY", secret.to_owned()),
        ("JWT_ISSUER", "https://issuer.test".to_owned()),
        ("JWT_AUDIENCES", "llm-gateway".to_owned()),
        ("JWT_TEAM_CLAIM", "team".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gateway = Gateway::start(&text, String::new(), &env).await;
    let now = jiff::Timestamp::now().as_second();
    let token = |team: &str| {
        let claims = json!({"sub": "user-1", "team": team, "iss": "https://issuer.test",
            "aud": "llm-gateway", "exp": now + 300, "nbf": now - 5});
        hs256(&claims, secret.as_bytes())
    };
    let search = token("search");
    let mut statuses = Vec::new();
    for credential in [&alice, &search, &alice, &search, &search, &alice] {
        statuses.push(post(&gateway.url, credential, &chat("fake")).await.0);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "one bucket for the key and the team"
    );
    let other_team = post(&gateway.url, &token("billing"), &chat("fake")).await.0;
    assert_eq!(
        other_team, 200,
        "a team the quota does not name is not held to it"
    );
}

#[tokio::test]
async fn a_key_over_the_namespace_caps_is_refused_and_the_others_keep_serving() {
    let (alice, bob, carol) = (new_key(), new_key(), new_key());
    let monthly = |usd: u32| format!(", models: [fake], budget: {{usd: {usd}, period: monthly}}");
    let config = |cap: u32| {
        join(&[
            fake_provider("fake"),
            routes(&[("fake", "fake", "fake")]),
            key("alice", &alice, "2026-11-01T00:00:00Z", &monthly(6)),
            key("bob", &bob, "2026-11-02T00:00:00Z", &monthly(6)),
            key(
                "carol",
                &carol,
                "2026-11-01T00:00:00Z",
                ", budget: {usd: 1, period: daily}",
            ),
            quota(&format!(
                "{{grants: {{budget: {{usd: {cap}, period: monthly}}, models: [\"fa*\"]}}}}"
            )),
        ])
    };
    let gateway = Gateway::start(&config(10), String::new(), &[]).await;
    assert_eq!(post(&gateway.url, &alice, &chat("fake")).await.0, 200);
    let (status, body) = post(&gateway.url, &bob, &chat("fake")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "key_over_quota");
    assert_eq!(body["error"]["type"], "permission_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("LlmQuota default/shared"), "{message}");
    assert!(message.contains("cap of $10.00"), "{message}");
    assert!(!message.contains(&bob), "the key is never echoed");
    let (status, body) = post(&gateway.url, &carol, &chat("fake")).await;
    assert_eq!(status, 403, "a key for every model is outside fa*");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.models")
    );
    // The platform team raises the cap: bob is served after the reload.
    gateway.write_config("gateway.yaml", &config(12));
    let deadline = Instant::now() + Duration::from_secs(20);
    while post(&gateway.url, &bob, &chat("fake")).await.0 != 200 {
        assert!(Instant::now() < deadline, "bob never got in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
