//! Limits on a real Redis Cluster (three masters with a replica each, on loopback): the
//! exactness tests of `limits.rs` and `quotas.rs` (a shared rate limit and a shared budget)
//! with each account's keys in its own slot, and a failover of the master that owns a
//! caller's slot in the middle of traffic.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::manifests::{fake_provider, join, routes, upstream_provider};
use common::redis_cluster::RedisCluster;
use common::{Gateway, new_key};
use llm_gateway_mock_upstream::MockUpstream;
use serde_json::{Value, json};

/// The ApiKey `name` (`spec` appended) and its Secret.
fn key(name: &str, key: &str, spec: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\nspec: {{secretName: {name}-key, owner: {name}{spec}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key}}\nstringData: {{apiKey: {key}}}\n"
    )
}

fn month() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month()
}

/// The usage hash of `account` (`key:default/alice`, `quota:default/q`) this month.
fn usage_key(account: &str) -> String {
    format!("lgw:{{{account}}}:usage:{}", month())
}

async fn post(url: &str, credential: &str) -> u16 {
    answer(url, credential, "fake").await.0
}

/// The status and JSON body of one chat request for `model` (status 0 when none came).
async fn answer(url: &str, credential: &str, model: &str) -> (u16, Value) {
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10});
    let sent = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(credential)
        .json(&body)
        .send()
        .await;
    let Ok(response) = sent else {
        return (0, Value::Null);
    };
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A quota name whose slot a master other than `owner_of`'s serves, so an admission spans
/// masters.
fn quota_away_from(cluster: &RedisCluster, owner_of: &str) -> String {
    let master = cluster.master_and_replica_of(owner_of).0;
    (0..64)
        .map(|i| format!("shared-{i}"))
        .find(|q| {
            cluster
                .master_and_replica_of(&format!("lgw:{{quota:default/{q}}}:rpm"))
                .0
                != master
        })
        .unwrap()
}

fn quota(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: llmgateway.io/v1alpha1\nkind: LlmQuota\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

async fn gateways(text: &str, cluster: &RedisCluster) -> [Gateway; 3] {
    let url = cluster.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_CLUSTER", "true"),
        ("REDIS_TIMEOUT", "2s"),
    ];
    [
        Gateway::start(text, String::new(), &env).await,
        Gateway::start(text, String::new(), &env).await,
        Gateway::start(text, String::new(), &env).await,
    ]
}

/// Waits until `counted` reaches `expected` (settlements land after the responses).
async fn settled(expected: i64, counted: impl Fn() -> i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = counted();
        if now >= expected || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_a_cluster_never_over_admit_and_fill_the_limits() {
    let cluster = RedisCluster::start().await;
    let quota_name = quota_away_from(&cluster, "lgw:{key:default/alice}:rpm");
    let (alice, bob) = (new_key(), new_key());
    let text = join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        key("alice", &alice, ", limits: {requestsPerMinute: 30}"),
        key("bob", &bob, ""),
        quota(
            &quota_name,
            "{callers: {owners: [alice, bob]}, limits: {requestsPerMinute: 50}}",
        ),
    ]);
    let gateways = gateways(&text, &cluster).await;
    let limit = Arc::new(tokio::sync::Semaphore::new(60));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let credential = if i % 3 == 0 {
            bob.clone()
        } else {
            alice.clone()
        };
        let (url, limit) = (gateways[i % 3].url.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            (i % 3 == 0, post(&url, &credential).await)
        }));
    }
    let (mut alice_admitted, mut bob_admitted) = (0i64, 0i64);
    for task in tasks {
        match task.await.unwrap() {
            (false, 200) => alice_admitted += 1,
            (true, 200) => bob_admitted += 1,
            (_, 429) => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // In the burst, a request refused by alice's own slot briefly holds the quota's slot until
    // its cancel lands, and a request racing that cancel may be refused too (docs/limits.md).
    // Once the burst is over nothing is held: one request at a time, bob is admitted until the
    // quota is really spent, so the quota ends exactly full.
    let mut sequential = 0;
    while post(&gateways[sequential % 3].url, &bob).await == 200 {
        sequential += 1;
        assert!(sequential <= 60, "the quota never ran out");
    }
    bob_admitted += sequential as i64;
    let refill =
        |per_minute: f64| (started.elapsed().as_secs_f64() / (60.0 / per_minute)).floor() as i64;
    let total = alice_admitted + bob_admitted;
    eprintln!(
        "alice {alice_admitted}, bob {bob_admitted} ({sequential} one at a time) in {:?}",
        started.elapsed()
    );
    assert!(
        alice_admitted <= 30 + refill(30.0),
        "alice over-admitted: {alice_admitted}"
    );
    assert!(
        (50..=50 + refill(50.0)).contains(&total),
        "the quota admitted {total} of 50"
    );
    assert!(alice_admitted > 0, "alice was served");
    // Every admitted request is counted once in each of its accounts, on their own masters.
    let quota_usage = usage_key(&format!("quota:default/{quota_name}"));
    assert_eq!(
        settled(total, || cluster.hash_field(&quota_usage, "requests")).await,
        total
    );
    let alice_usage = usage_key("key:default/alice");
    assert_eq!(
        settled(alice_admitted, || cluster
            .hash_field(&alice_usage, "requests"))
        .await,
        alice_admitted
    );
    let bob_usage = usage_key("key:default/bob");
    assert_eq!(
        settled(bob_admitted, || cluster.hash_field(&bob_usage, "requests")).await,
        bob_admitted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_budget_on_a_cluster_is_never_overspent_and_refunds_settle_back() {
    let cluster = RedisCluster::start().await;
    let upstream = MockUpstream::start().await;
    let quota_name = quota_away_from(&cluster, "lgw:{key:default/alice}:rpm");
    let (alice, bob) = (new_key(), new_key());
    let priced =
        "  models: [{name: upstream-model, inputPerMillionUsd: 1.0, outputPerMillionUsd: 2.0}]";
    let text = join(&[
        upstream_provider("upstream", &upstream.base_url, "sk-upstream-secret", priced),
        routes(&[("up", "upstream", "upstream-model")]),
        key("alice", &alice, ""),
        key("bob", &bob, ""),
        // The mock bills 9,000 nano-dollars a request; each reserves 22,000 (see quotas.rs).
        quota(
            &quota_name,
            "{callers: {owners: [alice, bob]}, budget: {usd: 0.0002, period: monthly}}",
        ),
    ]);
    let gateways = gateways(&text, &cluster).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let credential = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        let url = gateways[i % 3].url.clone();
        tasks.push(tokio::spawn(async move {
            answer(&url, &credential, "up").await
        }));
    }
    let mut admitted = 0i64;
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => admitted += 1,
            (429, body) => assert_eq!(body["error"]["code"], "insufficient_quota"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // Then one at a time, once the burst has settled: admitted while spend + 22,000 <=
    // 200,000, so exactly 20 in all.
    let quota_usage = usage_key(&format!("quota:default/{quota_name}"));
    settled(admitted, || cluster.hash_field(&quota_usage, "requests")).await;
    loop {
        let credential = if admitted % 2 == 0 { &alice } else { &bob };
        let (status, _) = answer(&gateways[admitted as usize % 3].url, credential, "up").await;
        if status != 200 {
            break;
        }
        admitted += 1;
        settled(admitted, || cluster.hash_field(&quota_usage, "requests")).await;
        assert!(admitted <= 60, "the budget never ran out");
    }
    assert_eq!(
        admitted,
        (200_000 - 22_000) / 9_000 + 1,
        "admitted {admitted}"
    );
    assert_eq!(
        settled(admitted, || cluster.hash_field(&quota_usage, "requests")).await,
        admitted
    );
    assert_eq!(
        cluster.hash_field(&quota_usage, "spend_nanos"),
        admitted * 9_000
    );
    // Every reservation was settled back, in every account, on every master.
    for account in [
        format!("quota:default/{quota_name}"),
        "key:default/alice".to_owned(),
        "key:default/bob".to_owned(),
    ] {
        let usage = usage_key(&account);
        assert_eq!(cluster.hash_field(&usage, "reserved_nanos"), 0, "{account}");
    }
    let (alice_usage, bob_usage) = (usage_key("key:default/alice"), usage_key("key:default/bob"));
    let both =
        cluster.hash_field(&alice_usage, "requests") + cluster.hash_field(&bob_usage, "requests");
    assert_eq!(
        both, admitted,
        "the keys' own accounts add up to the quota's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_callers_master_loses_no_usage() {
    let cluster = RedisCluster::start().await;
    let quota_name = quota_away_from(&cluster, "lgw:{key:default/caller}:rpm");
    let caller = new_key();
    let text = join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        key(
            "caller",
            &caller,
            ", limits: {requestsPerMinute: 100000, maxConcurrent: 50}, budget: {usd: 1000, period: monthly}",
        ),
        // A quota the caller shares, whose slot another master serves: it keeps counting.
        quota(
            &quota_name,
            "{callers: {owners: [caller]}, limits: {requestsPerMinute: 100000}, budget: {usd: 1000, period: monthly}}",
        ),
    ]);
    let gateways = gateways(&text, &cluster).await;
    let usage = usage_key("key:default/caller");
    let (done, mut served) = (Arc::new(std::sync::atomic::AtomicBool::new(false)), 0i64);
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (url, caller, done) = (
            gateways[worker % 3].url.clone(),
            caller.clone(),
            done.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut statuses: Vec<u16> = Vec::new();
            // Bounded: at most 400 requests per worker, or until told to stop.
            while statuses.len() < 400 && !done.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(post(&url, &caller).await);
            }
            statuses
        }));
    }
    // Traffic is flowing through the caller's master before it is failed over.
    settled(50, || cluster.hash_field(&usage, "requests")).await;
    let (old_master, new_master) = cluster.fail_over("lgw:{key:default/caller}:rpm").await;
    assert_eq!(cluster.master_and_replica_of(&usage).0, new_master);
    // Traffic reaches the new master too, then stops.
    let before = cluster.hash_field(&usage, "requests");
    let after = settled(before + 50, || cluster.hash_field(&usage, "requests")).await;
    assert!(
        after >= before + 50,
        "no traffic reached the new master: {before} then {after}"
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        let statuses = worker.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed across the failover: {statuses:?}"
        );
        served += statuses.len() as i64;
    }
    eprintln!("served {served}; failed over {old_master} -> {new_master}");
    let counted = settled(served, || cluster.hash_field(&usage, "requests")).await;
    assert_eq!(counted, served, "every served request is counted once");
    let shared = usage_key(&format!("quota:default/{quota_name}"));
    let shared_count = settled(served, || cluster.hash_field(&shared, "requests")).await;
    assert_eq!(shared_count, served, "and once in the shared quota");
    assert_eq!(cluster.hash_field(&shared, "reserved_nanos"), 0);
    assert_eq!(
        cluster.hash_field(&usage, "reserved_nanos"),
        0,
        "no reservation left held"
    );
}
