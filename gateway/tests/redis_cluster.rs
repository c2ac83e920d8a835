//! Limits on a real Redis Cluster (three masters with a replica each, on loopback): the
//! exactness test of `limits.rs` and `quotas.rs` with each account's keys in its own slot,
//! and a failover of the master that owns a caller's slot in the middle of traffic.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::manifests::{fake_provider, join, routes};
use common::redis_cluster::RedisCluster;
use common::{Gateway, new_key};
use serde_json::json;

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
    let body = json!({"model": "fake", "messages": [{"role": "user", "content": "hi"}]});
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(credential)
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
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
async fn three_gateways_on_a_cluster_admit_exactly_the_limits() {
    let cluster = RedisCluster::start().await;
    // A quota whose slot another master serves than alice's: the admission spans masters.
    let alice_master = cluster
        .master_and_replica_of("lgw:{key:default/alice}:rpm")
        .0;
    let quota = (0..64)
        .map(|i| format!("shared-{i}"))
        .find(|q| {
            cluster
                .master_and_replica_of(&format!("lgw:{{quota:default/{q}}}:rpm"))
                .0
                != alice_master
        })
        .unwrap();
    let (alice, bob) = (new_key(), new_key());
    let text = join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        key("alice", &alice, ", limits: {requestsPerMinute: 30}"),
        key("bob", &bob, ""),
        format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmQuota\nmetadata: {{name: {quota}}}\nspec: {{callers: {{owners: [alice, bob]}}, limits: {{requestsPerMinute: 50}}}}\n"
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
    let refill =
        |per_minute: f64| (started.elapsed().as_secs_f64() / (60.0 / per_minute)).floor() as i64;
    let total = alice_admitted + bob_admitted;
    eprintln!(
        "alice {alice_admitted}, bob {bob_admitted} in {:?}",
        started.elapsed()
    );
    assert!(
        alice_admitted <= 30 + refill(30.0),
        "alice over-admitted: {alice_admitted}"
    );
    // No lower bound: a request refused by alice's own slot cancels what the quota's slot
    // admitted for it, and a request racing that cancel may be refused too (docs/limits.md).
    assert!(
        total <= 50 + refill(50.0),
        "the quota over-admitted: {total}"
    );
    assert!(
        alice_admitted > 0 && bob_admitted > 0,
        "both keys were served"
    );
    // Every admitted request is counted once in each of its accounts, on their own masters.
    let quota_usage = usage_key(&format!("quota:default/{quota}"));
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
async fn a_failover_of_the_callers_master_loses_no_usage() {
    let cluster = RedisCluster::start().await;
    let caller = new_key();
    let text = join(&[
        fake_provider("fake"),
        routes(&[("fake", "fake", "fake")]),
        key(
            "caller",
            &caller,
            ", limits: {requestsPerMinute: 100000, maxConcurrent: 50}, budget: {usd: 1000, period: monthly}",
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
    settled(before + 50, || cluster.hash_field(&usage, "requests")).await;
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
    assert_eq!(
        cluster.hash_field(&usage, "reserved_nanos"),
        0,
        "no reservation left held"
    );
}
